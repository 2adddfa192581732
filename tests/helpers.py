"""Small helpers for reading what the triggers recorded."""

from __future__ import annotations

import io
from typing import Any

from django.core.management import call_command
from django.db import connections


def trail(read_model: Any, model: Any = None) -> list[tuple[str, str | None, dict[str, Any]]]:
    """(operation, object_pk, row data) of every entry, oldest first."""
    qs = read_model.objects.all()
    if model is not None:
        qs = qs.filter_model(model)
    out = []
    for entry in qs:
        op = getattr(entry, "audit_operation", None) or entry.action
        out.append((op, entry.object_pk, entry.get_row_data()))
    return out


def sql(statement: str, params: Any = None, using: str = "default") -> list[tuple[Any, ...]]:
    with connections[using].cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def attached_partitions(table: str = "audit_simple", using: str = "default") -> list[str]:
    """Names of the partitions attached to ``table``, the DEFAULT one included, sorted."""
    statement = (
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = %s::regclass ORDER BY 1"
    )
    return [name for (name,) in sql(statement, [table], using)]


def partition_command(*args: str) -> str:
    """What ``manage_partition_tables ARGS`` prints on stdout."""
    out = io.StringIO()
    call_command("manage_partition_tables", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def detach_all_dated_partitions() -> None:
    """Drop every dated partition of ``audit_simple``, leaving only the DEFAULT one."""
    for name in attached_partitions():
        if name != "audit_simple_default":
            sql(f'ALTER TABLE audit_simple DETACH PARTITION "{name}"')
            sql(f'DROP TABLE "{name}"')


def past_the_guard(statement: str, using: str = "default") -> None:
    """Run ``statement`` as a superuser who deliberately steps past the event-trigger guard
    of the capture objects, to create the broken states the checks must find."""
    sql("SELECT set_config('partitioned_audit.maintenance', 'on', false)", using=using)
    try:
        sql(statement, using=using)
    finally:
        sql("SELECT set_config('partitioned_audit.maintenance', '', false)", using=using)


def empty_trails(using: str = "default") -> None:
    """Remove every audit row, committed: transactional tests leave theirs behind."""
    from django_partitioned_audit.conf import ADVANCED_MANAGER  # noqa: F401 - the app is loaded
    from partitioned_audit import ADVANCED, SIMPLE

    with connections[using].cursor() as cursor:
        for layout in (SIMPLE, ADVANCED):
            cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [layout.table])
            if cursor.fetchone()[0]:
                cursor.execute(f"TRUNCATE {layout.table}")
