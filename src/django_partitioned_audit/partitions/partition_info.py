"""1.0.4's ``PartitionInfo`` and ``TimeRange``, over the engine's
(:mod:`partitioned_audit.partitioning.ranges`)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from partitioned_audit.partitioning import ranges
from partitioned_audit.partitioning.ranges import TimeRange

from ..compat import deprecated

#: 1.0.4's pattern for a partition name: ``<table>_<YYYYMMDD>_<YYYYMMDD>``.
PARTITION_PARSER = re.compile(
    r"^(?P<partitioned_table>.+)_(?P<from_year>\d{4})(?P<from_month>\d{2})(?P<from_day>\d{2})"
    r"_(?P<to_year>\d{4})(?P<to_month>\d{2})(?P<to_day>\d{2})$"
)


class PartitionInfo(ranges.PartitionInfo):
    """The engine's partition, with 1.0.4's ``parse`` and ``generate_create_partition``."""

    @classmethod
    def of_engine(cls, info: ranges.PartitionInfo) -> PartitionInfo:
        return cls(info.partition, info.from_date, info.to_date, info.partitioned_table)

    @classmethod
    def create(cls, partitioned_table: str, from_date: dt.date, to_date: dt.date) -> PartitionInfo:
        return cls.of_engine(ranges.PartitionInfo.create(partitioned_table, from_date, to_date))

    @classmethod
    def parse(cls, table_name: str) -> PartitionInfo | None:
        """None for a name that is not a partition's; ValueError when its range is empty."""
        match = PARTITION_PARSER.fullmatch(table_name)
        if not match:
            return None
        start, end = (
            dt.date(int(match[f"{side}_year"]), int(match[f"{side}_month"]), int(match[f"{side}_day"]))
            for side in ("from", "to")
        )
        if start >= end:
            raise ValueError(f"from_date {start} must be before to_date {end}")
        return cls(table_name, start, end, match["partitioned_table"])

    def generate_create_partition(self) -> tuple[str, list[Any]]:
        """``CREATE TABLE ... PARTITION OF ...`` and its bounds, from the configured manager."""
        deprecated(
            "PartitionInfo.generate_create_partition()",
            "django_partitioned_audit.maintenance.maintainer().create([info])",
        )
        from ..audit_table.audit_table_manager import AuditTableManager

        return AuditTableManager.get_implementation()._create_partition_sql(  # noqa: SLF001
            self.partition, self.partitioned_table, self.from_date, self.to_date
        )


__all__ = ["PARTITION_PARSER", "PartitionInfo", "TimeRange"]
