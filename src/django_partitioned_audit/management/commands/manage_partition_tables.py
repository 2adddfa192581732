"""``manage_partition_tables``: 1.0.4's actions and output, plus check, detach, drop and --json."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, Error

from partitioned_audit import actions
from partitioned_audit.errors import AuditError, one_line
from partitioned_audit.layouts import LAYOUTS

from ... import conf
from ...maintenance import maintainer


class Command(BaseCommand):
    help = (
        "Lists, plans, creates, checks and retires the partitions of the audit table; seals and verifies it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions.add_arguments(parser)
        parser.set_defaults(
            time_range_generator=conf.time_range_generator_name(), archive_url=conf.archive_url()
        )
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)
        parser.add_argument(
            "--layout",
            choices=sorted(LAYOUTS),
            help="the table of this layout instead of the active one: one kept after a switch of "
            "DPA_AUDIT_TABLE_MANAGER, to list, verify or retire its partitions",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Exit status: 0 done (intact, covered), 1 ``check`` or ``verify`` found a problem,
        2 could not tell (bad arguments, not installed, no privilege, no connection)."""
        try:
            layout = LAYOUTS[options["layout"]] if options.get("layout") else None
            if layout is not None and layout is not conf.layout() and "create" in options["actions"]:
                raise CommandError(
                    f"create: nothing writes to the {layout.name} layout's table any more; "
                    "it needs no new partition",
                    returncode=2,
                )
            manager = maintainer(options["database"], actions.lock_policy(options), layout)
            actions.run(manager, options, self.stdout, self.stderr)
        except actions.ActionFailed as exc:
            raise CommandError(f"{exc.action} failed: {exc}", returncode=1) from exc
        except (AuditError, ImproperlyConfigured) as exc:
            raise CommandError(str(exc), returncode=2) from exc
        except Error as exc:  # Django's wrapper of a driver error, e.g. the server is down
            raise CommandError(f"database {options['database']!r}: {one_line(exc)}", returncode=2) from exc
