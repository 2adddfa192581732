"""``manage_partition_tables``: 1.0.4's actions and output, plus check, detach, drop and --json."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS

from partitioned_audit import actions
from partitioned_audit.errors import AuditError

from ... import conf
from ...maintenance import maintainer


class Command(BaseCommand):
    help = (
        "Lists, plans, creates, checks and retires the partitions of the audit table; seals and verifies it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions.add_arguments(parser)
        parser.set_defaults(time_range_generator=conf.time_range_generator_name())
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            manager = maintainer(options["database"], actions.lock_policy(options))
            actions.run(manager, options, self.stdout, self.stderr)
        except actions.ActionFailed as exc:
            raise CommandError(f"{exc.action} failed: {exc}", returncode=1) from exc
        except AuditError as exc:
            raise CommandError(str(exc), returncode=2) from exc
