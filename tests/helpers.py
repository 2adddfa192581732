"""Small helpers for reading what the triggers recorded."""

from __future__ import annotations

from typing import Any

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
