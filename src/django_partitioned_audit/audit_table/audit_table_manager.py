"""1.0.4's ``AuditTableManager``, now a thin facade over the engine."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, ClassVar

from partitioned_audit import catalog, layouts, objects
from partitioned_audit.layouts import Layout, TableSpec
from partitioned_audit.partitioning.ranges import TimeRange
from partitioned_audit.sql import quote_ident

from ..compat import deprecated

logger = logging.getLogger("django_partitioned_audit")

DEFAULT_IMPL = "django_partitioned_audit.audit_table.simple_audit_table_manager.SimpleAuditTableManager"


class AuditTableManager:
    """Chooses the layout. Subclass it and set :attr:`layout` to plug in another one."""

    layout: ClassVar[Layout]
    model_name: ClassVar[str]

    @property
    def partitioned_table_name(self) -> str:
        return self.layout.table

    @property
    def model(self) -> Any:
        from django.apps import apps

        return apps.get_model("django_partitioned_audit", self.model_name)

    @classmethod
    def get_implementation(cls) -> AuditTableManager:
        """Return an instance of the class named by ``DPA_AUDIT_TABLE_MANAGER``."""
        from ..conf import audit_table_manager_class

        return audit_table_manager_class()()  # type: ignore[no-any-return]

    def create_partitioned_table(self, cursor: Any) -> None:
        from .. import conf

        deprecated(
            "AuditTableManager.create_partitioned_table()", "partitioned_audit.install(cursor, layout)"
        )

        objects.install(cursor, self.layout, conf.audit_schema(), conf.payload_gin_index())

    def enable_audit_for_table(self, cursor: Any, table_name: str, schema: str = "public") -> None:
        from .. import conf

        deprecated(
            "AuditTableManager.enable_audit_for_table()", "partitioned_audit.enable(cursor, layout, spec)"
        )

        pk = catalog.primary_key(cursor, schema, table_name)
        objects.enable(cursor, self.layout, TableSpec(schema, table_name, pk), schema=conf.audit_schema())

    def disable_audit_for_table(self, cursor: Any, table_name: str, schema: str = "public") -> None:
        deprecated(
            "AuditTableManager.disable_audit_for_table()", "partitioned_audit.disable(cursor, schema, table)"
        )
        objects.disable(cursor, schema, table_name)

    def generate_create_partition(
        self, partition_name: str, partitioned_table: str, from_date: dt.date, to_date: dt.date
    ) -> tuple[str, list[Any]]:
        """``CREATE TABLE <partition> PARTITION OF <table>`` for ``[from_date, to_date)``, and
        its bounds as parameters: 00:00 UTC of each day, whatever the session's time zone.

        When existing partitions already hold the whole range (a 1.0.4 test fixture creating
        ``[today, today + 2 days)`` after ``migrate`` made this month's), the statement
        creates an empty table of that name that is not a partition, so the fixture's own
        ``DROP TABLE`` afterwards still works, and rows keep going to the covering partition.

        Raises:
            PartitionError: existing partitions hold only part of the range.
        """
        deprecated(
            "AuditTableManager.generate_create_partition()",
            "django_partitioned_audit.maintenance.maintainer().create([PartitionInfo])",
        )
        return self._create_partition_sql(partition_name, partitioned_table, from_date, to_date)

    def _create_partition_sql(
        self, partition_name: str, partitioned_table: str, from_date: dt.date, to_date: dt.date
    ) -> tuple[str, list[Any]]:
        bounds = TimeRange(from_date, to_date)
        partition, parent = quote_ident(partition_name), quote_ident(partitioned_table)
        holders = _covering_partitions(partition_name, partitioned_table, bounds)
        if holders:
            logger.warning(
                "%s: not created, its range is covered by %s; an empty table of that name stands in",
                partition_name,
                ", ".join(holders),
            )
            return f"CREATE TABLE IF NOT EXISTS {partition} (LIKE {parent});", []
        return f"CREATE TABLE {partition} PARTITION OF {parent} FOR VALUES FROM (%s) TO (%s);", [
            bounds.lower,
            bounds.upper,
        ]

    def drop_all(self, cursor: Any) -> None:
        """Remove the layout: every capture trigger, the functions, the view, the table with
        its partitions and its seals. Its rows are lost."""
        from .. import conf

        deprecated(
            "AuditTableManager.drop_all()", "partitioned_audit.uninstall(cursor, layout, drop_data=True)"
        )
        objects.uninstall(cursor, self.layout, conf.audit_schema(), drop_data=True)

    def get_triggers(self, cursor: Any) -> list[list[str]]:
        """Table and name of every audit trigger."""
        return [[t.table, t.name] for t in catalog.audit_triggers(cursor)]


__all__ = ["DEFAULT_IMPL", "AuditTableManager", "layouts"]


def _covering_partitions(partition: str, partitioned_table: str, bounds: TimeRange) -> list[str]:
    """The partitions of ``partitioned_table`` (on the search path) holding all of ``bounds``.

    Raises:
        PartitionError: some partition holds only part of it.
    """
    from django.db import connection

    from partitioned_audit.errors import PartitionError
    from partitioned_audit.partitioning.maintenance import covering, overlapping

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT n.nspname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
            "ON n.oid = c.relnamespace WHERE c.oid = pg_catalog.to_regclass(%s)",
            [quote_ident(partitioned_table)],
        )
        found = cursor.fetchone()
        if found is None:
            return []  # CREATE TABLE ... PARTITION OF says the table does not exist
        # A partition of that very name is not a cover: creating it again must fail as before.
        rows = [r for r in catalog.partitions(cursor, found[0], partitioned_table) if r.name != partition]
    holders = covering(bounds.lower, bounds.upper, rows)
    clash = overlapping(bounds.lower, bounds.upper, rows)
    if clash and not holders:
        raise PartitionError(
            f"{partition} ({bounds.lower} .. {bounds.upper}) would overlap partition {clash[0].name} "
            f"({clash[0].bound}), which holds part of its range"
        )
    return [row.name for row in holders]
