"""``manage_partition_tables``: 1.0.4's actions and output, over the engine's planner."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections, transaction

from partitioned_audit.errors import AuditError
from partitioned_audit.partitioning import maintenance
from partitioned_audit.partitioning.plan import Plan, Status
from partitioned_audit.partitioning.ranges import GENERATORS

from ... import conf

ACTION_NAMES = ["list", "list-all", "simulate", "create"]
DEFAULT_EXTRA_DAYS = 30


def render_table(header: list[str], rows: list[list[str]]) -> str:
    """A bordered table with two spaces of padding, as 1.0.4 printed."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    rule = "+" + "+".join("-" * (w + 4) for w in widths) + "+"

    def line(cells: list[str]) -> str:
        return "|" + "|".join(f"  {str(c).ljust(w)}  " for c, w in zip(cells, widths, strict=False)) + "|"

    return "\n".join([rule, line(header), rule, *(line(r) for r in rows), rule])


class Command(BaseCommand):
    help = "Lists, plans and creates the partitions of the audit table."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("actions", nargs="+", choices=ACTION_NAMES)
        parser.add_argument("--extra-days", type=int, default=DEFAULT_EXTRA_DAYS)
        parser.add_argument(
            "--time-range-generator", default="MonthlyTimeRangeGenerator", choices=list(GENERATORS)
        )
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["extra_days"] < 0:
            raise CommandError(f"--extra-days must be zero or more, got {options['extra_days']}")
        self.layout, self.schema = conf.layout(), conf.audit_schema()
        self.generator = GENERATORS[options["time_range_generator"]]()
        self.using = options["database"]
        try:
            for action in options["actions"]:
                if action in ("list", "list-all"):
                    self._list(list_all=action == "list-all")
                else:
                    self._plan(options["extra_days"], apply=action == "create")
        except AuditError as exc:
            raise CommandError(str(exc)) from exc

    def _list(self, list_all: bool) -> None:
        from partitioned_audit import catalog
        from partitioned_audit.partitioning.ranges import PartitionInfo

        with connections[self.using].cursor() as cursor:
            found = catalog.partitions(cursor, self.schema, self.layout.table)
        rows = []
        for part in found:
            info = PartitionInfo.parse(part.name)
            if info is not None:
                rows.append([info.partition, str(info.from_date), str(info.to_date)])
            elif list_all:
                rows.append([part.name, "", ""])
        self.stdout.write(render_table(["table_name", "from_date", "to_date"], sorted(rows)))

    def _show(self, plan: Plan) -> None:
        prefix = "⚠" if plan.status is Status.MISSING_CURRENT else "❌"
        rows = [[p.partition, str(p.from_date), str(p.to_date), "✓ exists"] for p in plan.existing_partitions]
        rows += [
            [p.partition, str(p.from_date), str(p.to_date), f"{prefix} to create"]
            for p in plan.partitions_to_create
        ]
        self.stdout.write(render_table(["table_name", "from_date", "to_date", "status"], sorted(rows)))
        for problem in plan.problems:
            self.stderr.write(f"warning: {problem}")

    def _plan(self, extra_days: int, apply: bool) -> None:
        with transaction.atomic(self.using), connections[self.using].cursor() as cursor:
            plan = maintenance.make_plan(cursor, self.layout, self.generator, extra_days, self.schema)
            self._show(plan)
            if apply and plan.partitions_to_create:
                moved = maintenance.create(cursor, self.layout, plan.partitions_to_create, self.schema)
                self.stdout.write(
                    f"Created {len(plan.partitions_to_create)} partition(s); moved {moved} row(s) out of the default partition."
                )
            elif apply:
                self.stdout.write("All required partitions exist.")
