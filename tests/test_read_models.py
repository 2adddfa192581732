"""The read models take every view and column name from the engine's layout, and those
names are the views' columns in the database and the models' fields."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from django_partitioned_audit import conf
from django_partitioned_audit.models import Operation, read_models
from partitioned_audit.layouts import get_layout

#: Each name a read model (and its queryset) uses, and the Layout attribute holding it.
NAMES = {
    "_view": "view",
    "_key": "view_key_column",
    "_time": "time_column",
    "_statement_time": "statement_time_column",
    "_operation": "operation_column",
    "_txid": "txid_column",
    "_schema_field": "schema_column",
    "_table_field": "table_column",
}
COLUMNS = [name for name in NAMES if name != "_view"]
#: The names the querysets use: their model's.
QUERYSET_NAMES = ("_time", "_operation", "_txid", "_schema_field", "_table_field")


def view_columns(view: str) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
            [conf.audit_schema(), view],
        )
        return {row[0] for row in cursor.fetchall()}


def test_the_read_models_names_come_from_the_layout_and_exist_in_its_views(
    layout: str, read_model: Any
) -> None:
    spec = get_layout(layout)
    assert read_models()[layout] is read_model and read_model._layout == spec.name
    queryset = read_model.objects.all()
    for name, attribute in NAMES.items():
        assert getattr(read_model, name) == getattr(spec, attribute), name
        if name in QUERYSET_NAMES:
            assert getattr(queryset, name) == getattr(spec, attribute), name
    assert read_model._meta.db_table == conf.read_model_table(spec.view)
    assert read_model._meta.ordering == (spec.view_key_column,)
    assert read_model._meta.pk.name == spec.view_key_column
    fields = {f.name: f.column for f in read_model._meta.concrete_fields}
    # The context view serves the same queries (see _on_view): it has every column too.
    for view in (spec.view, spec.context_view):
        columns = view_columns(view)
        assert columns, f"{view} is missing from the database"
        for name in COLUMNS:
            column = getattr(read_model, name)
            assert column in columns, f"{read_model.__name__}.{name} = {column!r} is not a column of {view}"
            assert fields.get(column) == column, f"{read_model.__name__} has no field {column!r}"
        missing = set(fields.values()) - columns
        assert not missing, f"{read_model.__name__}'s fields {missing} are not columns of {view}"


@pytest.mark.parametrize("operation", list(Operation))
def test_the_operation_tests_and_filter_read_the_layouts_operation_column(
    layout: str, read_model: Any, operation: Operation
) -> None:
    codes = {Operation.INSERT: "I", Operation.UPDATE: "U", Operation.DELETE: "D", Operation.TRUNCATE: "T"}
    entry = read_model(**{get_layout(layout).operation_column: codes[operation]})
    tests = {
        Operation.INSERT: entry.is_insert,
        Operation.UPDATE: entry.is_update,
        Operation.DELETE: entry.is_delete,
        Operation.TRUNCATE: entry.is_truncate,
    }
    assert [op for op, test in tests.items() if test()] == [operation]
    assert entry.get_operation() is operation
    sql = str(read_model.objects.filter_operation(operation).query)
    assert f'"{get_layout(layout).operation_column}" = {codes[operation]}' in sql
    with pytest.raises(ValueError, match="Invalid operation"):
        read_model.objects.filter_operation("I")
