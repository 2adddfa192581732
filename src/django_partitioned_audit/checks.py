"""System checks: registration mistakes and bad settings surface at start-up, with an id and a hint."""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from . import conf
from .registry import registration


def check_registration(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    try:
        problems = registration().problems
    except ImproperlyConfigured:
        return []  # reported by check_settings
    return [checks.Error(p.message, hint=p.hint, obj=p.obj, id=p.id) for p in problems]


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    for accessor in (
        conf.layout,
        conf.audit_schema,
        conf.payload_gin_index,
        conf.excluded_columns,
        conf.masked_columns,
        conf.time_range_generator_name,
        conf.min_coverage_days,
    ):
        try:
            accessor()
        except ImproperlyConfigured as exc:
            errors.append(checks.Error(str(exc), id="partitioned_audit.E010"))
    return errors


def check_partition_coverage(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """W020: partitions cover fewer than ``DPA_MIN_COVERAGE_DAYS`` days ahead (database check)."""
    from django.db import connections, router

    from partitioned_audit.errors import AuditError

    from .maintenance import maintainer
    from .sync import APP_LABEL

    warnings: list[checks.CheckMessage] = []
    try:
        days = conf.min_coverage_days()
        conf.layout()
        conf.audit_schema()
    except ImproperlyConfigured:
        return []  # reported by check_settings as E010, without a traceback
    for using in databases or ():
        if connections[using].vendor != "postgresql" or not router.allow_migrate(using, APP_LABEL):
            continue
        try:
            result = maintainer(using).check(days)
        except AuditError:
            continue  # not installed on this database yet: migrate will create the partitions
        if not result.ok:
            warnings.append(
                checks.Warning(
                    f"Audit partitions on database {using!r}: {result.reason}.",
                    hint="Run `python manage.py manage_partition_tables create` from cron or a "
                    "scheduler; see docs/partitions.md.",
                    id="partitioned_audit.W020",
                )
            )
    return warnings
