"""``audit_privileges --app-role ROLE [--read]``: close the audit objects to the application role."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS

from partitioned_audit import actions
from partitioned_audit.errors import AuditError
from partitioned_audit.partitioning.maintenance import LockPolicy

from ...maintenance import maintainer


class Command(BaseCommand):
    help = (
        "Revokes every privilege ROLE and PUBLIC hold on the audit objects (tables, partitions, "
        "views, sequences, functions); with --read, grants SELECT on the views. Run it as the "
        "role that ran migrate. Idempotent."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions.add_privilege_arguments(parser, required=True)
        parser.add_argument("--json", action="store_true", help="print the changes as one JSON document")
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)

    def handle(self, *args: Any, **options: Any) -> None:
        options = {
            **options,
            "actions": ["privileges"],
            "extra_days": actions.DEFAULT_EXTRA_DAYS,
            "time_range_generator": "MonthlyTimeRangeGenerator",
        }
        try:
            actions.run(maintainer(options["database"], LockPolicy()), options, self.stdout, self.stderr)
        except AuditError as exc:
            raise CommandError(str(exc), returncode=2) from exc
