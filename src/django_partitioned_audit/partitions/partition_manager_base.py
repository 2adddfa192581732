"""1.0.4's ``BasePartitionManager``: partitions of one partitioned table, found by name.

It plans without touching the database (``today``, ``get_existing_partitions()`` are the
only inputs, and tests patch them); creating goes through the engine's maintainer for the
audit table (locks, the DEFAULT partition's rows, the comment that marks partitions as
ours) and through the configured manager's statement for any other table.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from partitioned_audit.partitioning.plan import today_utc
from partitioned_audit.partitioning.ranges import TimeRangeGenerator

from ..compat import deprecated
from .partition_info import PartitionInfo

DEFAULT_EXTRA_DAYS = 30


class BasePartitionManager:
    default_extra_days = DEFAULT_EXTRA_DAYS
    postgresql_table_name_limit = 63
    partition_suffix_len = len("_YYYYMMDD_YYYYMMDD")

    def __init__(
        self,
        time_range_generator: TimeRangeGenerator,
        extra_days: int = DEFAULT_EXTRA_DAYS,
        audit_manager: Any = None,
        using: str = "default",
        now: dt.datetime | None = None,
    ) -> None:
        from ..audit_table.audit_table_manager import AuditTableManager

        deprecated("PartitionManager", "django_partitioned_audit.maintenance.maintainer(using)")
        if extra_days < 0:
            raise ValueError(f"extra_days must be zero or more, got {extra_days}")
        self._time_range_generator = time_range_generator
        self._extra_days = extra_days
        self._audit_manager = audit_manager or AuditTableManager.get_implementation()
        self._using = using
        self._now = now
        self._validate_partitioned_table()

    @property
    def audit_manager(self) -> Any:
        return self._audit_manager

    @property
    def _partitioned_table(self) -> str:
        return str(self._audit_manager.partitioned_table_name)

    def _validate_partitioned_table(self) -> None:
        """Its partitions' names must fit PostgreSQL's 63 bytes."""
        longest = self.postgresql_table_name_limit - self.partition_suffix_len
        if len(self._partitioned_table.encode()) > longest:
            raise ValueError(
                f"partitioned table name {self._partitioned_table!r} is longer than {longest} bytes: "
                "its partitions' names would be truncated"
            )

    @property
    def today(self) -> dt.date:
        """Today in UTC, the time zone of every partition bound (1.0.4 took the local day)."""
        return today_utc(self._now)

    def _cursor(self) -> Any:
        from django.db import connections

        return connections[self._using].cursor()

    def get_tables(self) -> list[str]:
        """The names of every table the connection can see, sorted."""
        with self._cursor() as cursor:
            cursor.execute("SELECT table_name FROM information_schema.tables ORDER BY table_name")
            return [row[0] for row in cursor.fetchall()]

    def get_existing_partitions(self, include_other: bool = False) -> Iterator[PartitionInfo]:
        """Tables named as partitions of the partitioned table (of any, with ``include_other``)."""
        for name in self.get_tables():
            info = PartitionInfo.parse(name)
            if info is not None and (include_other or info.partitioned_table == self._partitioned_table):
                yield info

    def create_partitions(self, partitions: list[PartitionInfo]) -> None:
        from partitioned_audit.partitioning import ranges

        from .. import conf
        from ..maintenance import maintainer

        if not partitions:
            raise ValueError("no partition to create")
        tables = {p.partitioned_table for p in partitions}
        if tables != {self._partitioned_table}:
            raise ValueError(f"partitions of {sorted(tables)}, not of {self._partitioned_table!r}")
        if self._partitioned_table not in self.get_tables():
            raise ValueError(f"Partitioned table {self._partitioned_table!r} not found")
        if self._partitioned_table == conf.layout().table:
            engine = [
                ranges.PartitionInfo.create(p.partitioned_table, p.from_date, p.to_date) for p in partitions
            ]
            maintainer(self._using).create(engine)
            return
        with self._cursor() as cursor:
            for info in partitions:
                cursor.execute(
                    *self._audit_manager._create_partition_sql(  # noqa: SLF001
                        info.partition, info.partitioned_table, info.from_date, info.to_date
                    )
                )


__all__ = ["BasePartitionManager"]
