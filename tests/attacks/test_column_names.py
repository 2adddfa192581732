"""Whatever its columns are called, an audited row's payload is the row.

The capture SQL names aliases, variables and helpers; a user's column with one of those names
must not be resolved in their place (a column called ``t`` once replaced the whole payload by
its own value). Every word of the deployed functions is tried as a column name, then
arbitrary names from hypothesis.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from partitioned_audit import ADVANCED, SIMPLE, TableSpec, enable, install
from partitioned_audit.ddl import create_functions
from partitioned_audit.layouts import Layout
from partitioned_audit.sql import SQL, Composed, execute, ident, literal, render
from tests.engine_db import connect, scratch_database


@pytest.fixture(scope="module")
def conn() -> Iterator[Any]:
    with scratch_database() as name:
        connection = connect(name, autocommit=True)
        yield connection
        connection.close()


def words_of_the_capture_sql(layout: Layout, cursor: Any) -> list[str]:
    text = render(create_functions(layout, "public", "public.seq"), cursor)
    return sorted({w for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text) if w.lower() != "id"})


def payloads(conn: Any, layout: Layout, columns: list[str], row_level: bool) -> list[tuple[str, Any, Any]]:
    """Create table ``victim`` with ``columns``, audit it, write I/U/D; return what was stored."""
    cur = conn.cursor()
    cur.execute("DROP TABLE IF EXISTS victim")
    definitions = [SQL("{} text").format(ident(c)) for c in columns]
    execute(cur, SQL("CREATE TABLE victim (id int PRIMARY KEY, {})").format(SQL(", ").join(definitions)))
    install(cur, layout)
    enable(cur, layout, TableSpec("public", "victim", ("id",), row_level=row_level))
    cur.execute(f"TRUNCATE {layout.table}")
    values = [literal(f"v{i}") for i in range(len(columns))]
    execute(cur, Composed([SQL("INSERT INTO victim VALUES (1, "), SQL(", ").join(values), SQL(")")]))
    execute(cur, SQL("UPDATE victim SET {} = 'changed'").format(ident(columns[0])))
    cur.execute("DELETE FROM victim")
    if layout is SIMPLE:
        cur.execute("SELECT audit_operation, object_payload, NULL FROM audit_simple ORDER BY audit_event_id")
    else:
        cur.execute("SELECT action, row_data, changed_fields FROM logged_actions ORDER BY event_id")
    return list(cur.fetchall())


def expected(layout: Layout, columns: list[str]) -> list[tuple[str, Any, Any]]:
    row = {"id": 1, **{c: f"v{i}" for i, c in enumerate(columns)}}
    updated = {**row, columns[0]: "changed"}
    if layout is SIMPLE:
        return [("I", row, None), ("U", updated, None), ("D", updated, None)]
    return [("I", row, None), ("U", row, {columns[0]: "changed"}), ("D", updated, None)]


@pytest.mark.parametrize("row_level", [False, True], ids=["statement", "row"])
@pytest.mark.parametrize("layout", [SIMPLE, ADVANCED], ids=lambda layout: layout.name)
def test_every_word_of_the_capture_sql_as_a_column_name(conn, layout, row_level):
    columns = words_of_the_capture_sql(layout, conn.cursor())
    assert {"t", "j", "r", "dpa_new", "dpa_old", "_pk", "_op", "_plain"} <= set(columns)
    assert "_key" in columns  # a variable of the row captures
    assert payloads(conn, layout, columns, row_level) == expected(layout, columns)
    # Upper-case twins are other columns to PostgreSQL once quoted.
    twins = sorted({c.upper() for c in columns} - set(columns))
    assert payloads(conn, layout, columns + twins, row_level) == expected(layout, columns + twins)


names = st.text(min_size=1, max_size=40).filter(
    lambda s: "\x00" not in s and len(s.encode()) <= 63 and s != "id"
)
hostile = st.sampled_from(["t", "T", "a.b", 'q"uote', "sp ace", "select", "t.*", "dpa_new", "ключ", "🙂"])


@pytest.mark.parametrize("row_level", [False, True], ids=["statement", "row"])
@pytest.mark.parametrize("layout", [SIMPLE, ADVANCED], ids=lambda layout: layout.name)
def test_arbitrary_column_names_keep_the_whole_row(conn, layout, row_level):
    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(st.one_of(hostile, names), min_size=1, max_size=6, unique=True))
    def check(columns: list[str]) -> None:
        assert payloads(conn, layout, columns, row_level) == expected(layout, columns)

    check()
