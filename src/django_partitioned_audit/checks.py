"""System checks: registration mistakes and bad settings surface at start-up, with an id and a hint."""

from __future__ import annotations

import sys
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
        conf.admin_enabled,
        conf.excluded_columns,
        conf.masked_columns,
        conf.skip_unchanged_updates,
        conf.capture_level,
        conf.time_range_generator_name,
        conf.min_coverage_days,
        conf.request_id_header,
        conf.audit_context_extra_setting,
        conf.archive_url,
    ):
        try:
            accessor()
        except ImproperlyConfigured as exc:
            errors.append(checks.Error(str(exc), id="partitioned_audit.E010"))
    return errors


def check_context_extra(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E011: an entry of ``DPA_AUDIT_CONTEXT_EXTRA`` that can never give a value: a path whose
    first step no request has, a dotted path that cannot be imported or is not a callable.
    A key that a given request lacks is only known at run time: the middleware logs it."""
    try:
        extra = conf.audit_context_extra_setting()
    except ImproperlyConfigured:
        return []  # reported by check_settings
    errors: list[checks.CheckMessage] = []
    for key, source in extra.items():
        try:
            conf.context_extra_source(key, source)
        except conf.UnusableContextExtra as exc:
            errors.append(checks.Error(str(exc), hint=conf.CONTEXT_EXTRA_HINT, id="partitioned_audit.E011"))
    return errors


def _audited_databases(databases: Any) -> list[str]:
    from django.db import connections, router

    from .sync import APP_LABEL

    return [
        using
        for using in databases or ()
        if connections[using].vendor == "postgresql" and router.allow_migrate(using, APP_LABEL)
    ]


def running_migrate() -> bool:
    """Whether these checks run from the ``migrate`` command (or a subclass of it).

    Django runs the database checks before ``migrate``. What ``migrate`` itself repairs (a
    missing, outdated or disabled capture trigger) must not stop it: that would leave
    ``--skip-checks`` as the only way to apply a new registration or a newly masked column,
    while the old triggers keep recording in clear. Django passes the checks no word of the
    command that runs them, so the call stack is asked.
    """
    from django.core.management.commands.migrate import Command as Migrate

    frame = sys._getframe(1)
    while frame is not None:
        if isinstance(frame.f_locals.get("self"), Migrate):
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def check_capture_triggers(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """E021: a registered model's table lacks a capture trigger, or one is disabled, or a capture
    function was replaced; W022: no guard; W024: indexes an upgrade declared wait to be built
    (database check).

    Silent while ``migrate`` runs, which repairs exactly this (see :func:`running_migrate`);
    ``check --database`` still reports it and exits non-zero.
    """
    from django.db import connections, router

    from partitioned_audit import catalog, objects

    from .registry import split_table, table_spec

    if running_migrate():
        return []
    try:
        layout, schema = conf.layout(), conf.audit_schema()
        enabled = registration().enabled
    except ImproperlyConfigured:
        return []  # reported by check_settings / check_registration
    errors: list[checks.CheckMessage] = []
    for using in _audited_databases(databases):
        models = [m for m in enabled if router.allow_migrate_model(using, m)]
        with connections[using].cursor() as cursor:
            if objects.layout_status(cursor, layout, schema).status is objects.Status.MISSING:
                continue  # not installed on this database yet: migrate will
            if not objects.guard_state(cursor)[1]:
                errors.append(
                    checks.Warning(
                        f"Database {using!r}: no event trigger guards the capture objects, so the "
                        "owner of an audited table can drop or disable its capture triggers "
                        "unnoticed until this check runs.",
                        hint="Run `python manage.py migrate` once as a superuser to install the "
                        "guard (CREATE EVENT TRIGGER needs one); see docs/security.md.",
                        id="partitioned_audit.W022",
                    )
                )
            pending = objects.indexes_pending(cursor, layout, schema)
            if pending:
                errors.append(
                    checks.Warning(
                        f"Database {using!r}: index(es) {', '.join(pending)} of the audit table are "
                        "not built on every partition yet (an upgrade declared them); reads that need "
                        "them scan the partitions that lack them.",
                        hint="Run `python manage.py migrate`, which builds them partition by partition "
                        "without blocking audited writes; see docs/upgrading.md.",
                        id="partitioned_audit.W024",
                    )
                )
            changed = objects.function_problems(cursor, layout, schema)
            for name in sorted(objects.capture_functions(layout) & set(changed)):
                errors.append(
                    checks.Error(
                        f"Database {using!r}: capture function {schema}.{name} is not the one this "
                        f"version installs: {changed[name]}; audited writes run it, so they can "
                        "escape the audit trail.",
                        hint="Run `python manage.py migrate`, which reinstalls the audit functions.",
                        id="partitioned_audit.E021",
                    )
                )
            existing = catalog.existing_tables(cursor, [split_table(m._meta.db_table) for m in models])
            specs = {table_spec(m): m for m in models if split_table(m._meta.db_table) in existing}
            for spec, problem in objects.trigger_problems(cursor, layout, schema, specs):
                errors.append(
                    checks.Error(
                        f"Table {spec.schema}.{spec.table} on database {using!r}: {problem}; "
                        "its writes can escape the audit trail.",
                        hint="Run `python manage.py migrate`, which reinstalls and re-enables the "
                        "capture triggers of every registered model.",
                        obj=specs[spec],
                        id="partitioned_audit.E021",
                    )
                )
    return errors


def check_read_views(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """E024: a read view of the audit table is missing, was replaced, or lost the trigger
    refusing writes; W025: partitions of the context table lack the setting that keeps
    context searches from parallel workers (database check).

    The admin reads the read and keys views, ``filter_context()`` the context view: the one
    named fails until ``migrate`` creates it again. Silent while ``migrate`` runs, which
    repairs exactly this.
    """
    from django.db import connections

    from partitioned_audit import objects

    if running_migrate():
        return []
    try:
        layout, schema = conf.layout(), conf.audit_schema()
    except ImproperlyConfigured:
        return []  # reported by check_settings
    errors: list[checks.CheckMessage] = []
    for using in _audited_databases(databases):
        with connections[using].cursor() as cursor:
            if objects.layout_status(cursor, layout, schema).status is objects.Status.MISSING:
                continue  # not installed on this database yet: migrate will
            for name, problem in sorted(objects.view_problems(cursor, layout, schema).items()):
                what = "read function" if name in {f for f, _, _ in layout.read_functions} else "read view"
                errors.append(
                    checks.Error(
                        f"Database {using!r}: {what} {schema}.{name} is not the one this version "
                        f"installs: {problem}; the audit reads that use it fail or show other rows.",
                        hint="Run `python manage.py migrate`, which creates the read views again "
                        "and keeps the roles granted SELECT on them.",
                        id="partitioned_audit.E024",
                    )
                )
            serial = objects.context_storage_problems(cursor, layout, schema)
            if serial:
                errors.append(
                    checks.Warning(
                        f"Database {using!r}: partition(s) {', '.join(serial)} of the context table "
                        "lack parallel_workers = 0 (made by an earlier version); searches by context "
                        "may start parallel workers over them and take many times longer.",
                        hint="Run `python manage.py migrate`, which sets it on every context partition "
                        "without blocking audited writes; see docs/context.md.",
                        id="partitioned_audit.W025",
                    )
                )
    return errors


def check_unregistered_triggers(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """W023: a table keeps capture triggers though no model registers it (database check).

    Taking a model out of ``trigger_audit_models`` leaves its triggers in place: its writes
    are still audited, but nothing repairs the triggers any more. Putting it in
    ``audit_disabled`` is how auditing is turned off.
    """
    from django.db import connections

    from partitioned_audit import catalog

    from .registry import split_table

    try:
        reg = registration()
    except ImproperlyConfigured:
        return []
    registered = {split_table(m._meta.db_table) for m in reg.enabled}
    disabled = {split_table(m._meta.db_table) for m in reg.disabled}
    warnings: list[checks.CheckMessage] = []
    for using in _audited_databases(databases):
        with connections[using].cursor() as cursor:
            found = {(t.schema, t.table) for t in catalog.audit_triggers(cursor)}
            # A partitioned table's triggers are on each of its partitions as well.
            covered = {p for parts in catalog.partitions_of(cursor, registered).values() for p in parts}
        for schema, table in sorted(found - registered - covered):
            if (schema, table) in disabled:
                hint = "Run `python manage.py migrate`, which drops the triggers of audit_disabled models."
            else:
                hint = (
                    "Put the model in its app's audit_disabled and run `python manage.py migrate` to "
                    "stop auditing it, or back in trigger_audit_models to keep it; a table audited "
                    "outside Django can silence this check with SILENCED_SYSTEM_CHECKS."
                )
            warnings.append(
                checks.Warning(
                    f"Table {schema}.{table} on database {using!r} has capture triggers, but no "
                    "model lists it in trigger_audit_models: its writes are still audited, and "
                    "nothing repairs its triggers any more.",
                    hint=hint,
                    id="partitioned_audit.W023",
                )
            )
    return warnings


def check_partition_coverage(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """W020: partitions cover fewer than ``DPA_MIN_COVERAGE_DAYS`` days ahead (database check)."""
    from partitioned_audit.errors import AuditError

    from .maintenance import maintainer

    warnings: list[checks.CheckMessage] = []
    try:
        days = conf.min_coverage_days()
        conf.layout()
        conf.audit_schema()
    except ImproperlyConfigured:
        return []  # reported by check_settings as E010, without a traceback
    for using in _audited_databases(databases):
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
