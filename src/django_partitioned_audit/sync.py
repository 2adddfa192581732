"""Bring the database in line with the settings and registrations: run after every ``migrate``."""

from __future__ import annotations

from typing import TextIO

from django.core.exceptions import ImproperlyConfigured
from django.db import connections, router, transaction

from partitioned_audit import catalog, objects
from partitioned_audit.errors import PartitionError
from partitioned_audit.partitioning.maintenance import LockPolicy

from . import conf
from .maintenance import ensure_current_and_next
from .registry import registration, split_table, table_spec

APP_LABEL = "django_partitioned_audit"

#: How long ``migrate`` tries to create partitions behind a reader of the audit table.
MIGRATE_LOCK_POLICY = LockPolicy()


def install_objects(using: str) -> objects.Status:
    """Create or upgrade the audit table, view and functions of the configured layout."""
    with transaction.atomic(using), connections[using].cursor() as cursor:
        return objects.install(cursor, conf.layout(), conf.audit_schema(), conf.payload_gin_index())


def _migrated(using: str) -> bool:
    """Whether this app's first migration is applied: after ``migrate <app> zero`` nothing is installed."""
    from django.db.migrations.recorder import MigrationRecorder

    recorder = MigrationRecorder(connections[using])
    return recorder.has_table() and recorder.migration_qs.filter(app=APP_LABEL, name="0001_initial").exists()


def sync(using: str, verbosity: int = 1, stdout: TextIO | None = None) -> None:
    """Install the audit objects and the triggers of registered models in one transaction,
    then, in transactions of their own, the current and next partitions.

    Trigger repairs never wait for partition maintenance: a long reader of the audit table
    can hold up a partition (whose rows meanwhile land in the DEFAULT partition, so nothing
    is lost), but not the triggers. Only models that may migrate on ``using`` and whose table exists are touched; a model
    whose table a later migration creates is picked up by that later ``migrate``.
    """
    if not router.allow_migrate(using, APP_LABEL) or not _migrated(using):
        return
    reg = registration()
    if reg.problems:
        lines = "\n".join(f"  {p.id}: {p.message} {p.hint}" for p in reg.problems)
        raise ImproperlyConfigured(f"django-partitioned-audit cannot install triggers:\n{lines}")

    def say(text: str) -> None:
        if stdout is not None and verbosity >= 1:
            stdout.write(text + "\n")

    layout, schema = conf.layout(), conf.audit_schema()
    enabled = [m for m in reg.enabled if router.allow_migrate_model(using, m)]
    disabled = [m for m in reg.disabled if router.allow_migrate_model(using, m)]
    with transaction.atomic(using), connections[using].cursor() as cursor:
        status = objects.install(cursor, layout, schema, conf.payload_gin_index())
        if status is not objects.Status.INSTALLED:
            say(f"  Audit objects ({layout.name} layout, schema {schema}): {status.value}, now installed")
        changed = False
        tables = [split_table(m._meta.db_table) for m in (*enabled, *disabled)]
        existing_tables = catalog.existing_tables(cursor, tables)
        facts = objects.table_facts(cursor, layout, schema, existing_tables)
        for model in enabled:
            spec = table_spec(model)
            if (spec.schema, spec.table) not in existing_tables:
                say(f"  Auditing {model._meta.label} postponed: table {spec.table!r} does not exist yet")
                continue
            if objects.enable(cursor, layout, spec, schema, facts):
                changed = True
                say(f"  Enabled auditing for {model._meta.label} (table {spec.table!r})")
        for model in disabled:
            table_schema, table = split_table(model._meta.db_table)
            if objects.disable(cursor, table_schema, table, facts):
                say(f"  Disabled auditing for {model._meta.label} (table {table!r})")
        if status is not objects.Status.INSTALLED or changed:
            for kept in objects.kept_tables(cursor, layout, schema):
                say(_kept_message(kept, using))
    with connections[using].cursor() as cursor:
        pending = objects.backfill_pending(cursor, layout, schema)
    if pending:  # a 1.0.4 table: number its rows in batches, writers going on meanwhile
        numbered = objects.backfill(connections[using].connection, layout, schema)
        say(f"  Numbered {numbered} audit row(s) kept from 1.0.4")
    with connections[using].cursor() as cursor:
        indexes = objects.indexes_pending(cursor, layout, schema)
    if indexes and connections[using].in_atomic_block:
        if stdout is not None:
            stdout.write(
                f"  Warning: index(es) {', '.join(indexes)} wait to be built partition by partition, "
                "which cannot run inside a transaction; run `python manage.py migrate` outside one.\n"
            )
    elif indexes:  # an upgrade declared them: built partition by partition, writers going on
        say(f"  Building index(es) {', '.join(indexes)} partition by partition (CONCURRENTLY)...")
        built = objects.build_indexes(connections[using].connection, layout, schema, MIGRATE_LOCK_POLICY)
        say(f"  Built {len(built.built)} partition index(es), {len(built.rebuilt)} after a stopped build")
        unfinished = sorted(set(indexes) - set(built.completed))
        if stdout is not None and unfinished:  # whatever the verbosity: reads may be slow meanwhile
            stdout.write(
                f"  Warning: index(es) {', '.join(unfinished)} not finished (another `migrate` may be "
                "building them); run `python manage.py migrate` again to finish them.\n"
            )
    try:
        created = ensure_current_and_next(using, policy=MIGRATE_LOCK_POLICY)
    except PartitionError as exc:
        if stdout is not None:  # whatever the verbosity: coverage is short until it is done
            stdout.write(
                f"  Warning: partitions not created now: {exc}. Audited writes go to the DEFAULT "
                "partition meanwhile; run `manage_partition_tables create` later.\n"
            )
        return
    for info in created.partitions:
        say(f"  Created partition {info.partition}")


def _kept_message(kept: objects.KeptTable, using: str) -> str:
    """What became of the table of the layout ``migrate`` switched away from."""
    from .models import read_models

    name = kept.layout.name
    model = read_models()[name].__name__
    rows = "its rows" if kept.has_rows else "no rows"
    writing = (
        "nothing writes to it any more"
        if kept.writers == 0
        else f"{kept.writers} trigger(s) still write to it until their tables are registered again"
    )
    return (
        f"  The {name} layout's table {kept.schema}.{kept.layout.table} is kept, with {rows} in "
        f"{kept.partitions} partition(s); {writing}. Read it with {model} (or "
        f"history(obj, all_layouts=True)); retire it with `manage_partition_tables drop --layout {name} "
        f"--older-than DAYS --yes`{'' if using == 'default' else f' --database {using}'}. "
        "See docs/upgrading.md, switching layouts."
    )
