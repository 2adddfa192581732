"""1.0.4's ``AuditTableManager``, now a thin facade over the engine."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from partitioned_audit import catalog, layouts, objects
from partitioned_audit.layouts import Layout, TableSpec
from partitioned_audit.partitioning.ranges import TimeRange
from partitioned_audit.sql import quote_ident

from ..compat import deprecated

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
        its bounds as parameters: 00:00 UTC of each day, whatever the session's time zone."""
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
