from __future__ import annotations

import sys
from typing import Any

from django.apps import AppConfig, apps
from django.core import checks
from django.db import connections
from django.db.backends.signals import connection_created
from django.db.models.signals import post_migrate


class DjangoPartitionedAuditConfig(AppConfig):
    name = "django_partitioned_audit"
    verbose_name = "Audit log"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from .checks import (
            check_capture_triggers,
            check_context_extra,
            check_partition_coverage,
            check_read_views,
            check_registration,
            check_settings,
            check_unregistered_triggers,
        )

        checks.register(check_settings)
        checks.register(check_context_extra)
        checks.register(check_registration)
        # Reads the database, so it runs with `check --database` and `migrate`, not at every start.
        checks.register(check_partition_coverage, checks.Tags.database)
        checks.register(check_capture_triggers, checks.Tags.database)
        checks.register(check_unregistered_triggers, checks.Tags.database)
        checks.register(check_read_views, checks.Tags.database)
        # Sent once per migrated app; sender=self runs the sync once per `migrate`, after
        # every migration of every app has been applied.
        post_migrate.connect(_post_migrate, sender=self, dispatch_uid="django_partitioned_audit.sync")
        from . import context

        # Statements run inside an audit_context block, on any connection, send its values;
        # the others are left alone. Connections opened before now (by an app readied
        # earlier) are covered too.
        connection_created.connect(context.install, dispatch_uid="django_partitioned_audit.context")
        for connection in connections.all(initialized_only=True):
            if connection.connection is not None:
                context.install(connection)
        self.is_ready = True
        if apps.is_installed("django.contrib.admin") and "django_partitioned_audit.admin" in sys.modules:
            # Autodiscovery ran first and imported every admin module: see register_default().
            from .admin import register_default

            register_default()


def _post_migrate(
    sender: AppConfig, using: str = "default", verbosity: int = 1, stdout: Any = None, **kwargs: Any
) -> None:
    from .sync import sync

    sync(using, verbosity=verbosity, stdout=stdout)


class SimpleTriggerAuditAppConfig(DjangoPartitionedAuditConfig):
    """1.0.4's name, for INSTALLED_APPS entries that spell the class out."""

    default = False
