"""The application role puts its own functions and operators first on its search_path.

The capture functions run with the audit owner's rights (SECURITY DEFINER). If one of them
resolved a name through the caller's search_path, a function or operator of the caller's,
shadowing the built-in one, would run as the owner and could rewrite the trail. Every name
they use is schema-qualified instead, operators and types included. Each shadow records
``current_user`` when it runs: a row naming the owner would mean the capture called it.
"""

from __future__ import annotations

import pytest

from tests.attacks.conftest import TwoRoles

#: (name, argument types, result, body calling the built-in): every function the capture
#: functions and their helpers call, with the signatures they use.
FUNCTIONS = [
    ("to_jsonb", "anyelement", "jsonb", "pg_catalog.to_jsonb($1)"),
    ("txid_current", "", "bigint", "pg_catalog.txid_current()"),
    ("left", "text, integer", "text", "pg_catalog.left($1, $2)"),
    ("cardinality", "anyarray", "integer", "pg_catalog.cardinality($1)"),
    ("current_setting", "text", "text", "pg_catalog.current_setting($1)"),
    ("current_setting", "text, boolean", "text", "pg_catalog.current_setting($1, $2)"),
    ("jsonb_typeof", "jsonb", "text", "pg_catalog.jsonb_typeof($1)"),
    ("statement_timestamp", "", "timestamptz", "pg_catalog.statement_timestamp()"),
    ("clock_timestamp", "", "timestamptz", "pg_catalog.clock_timestamp()"),
    ("inet_client_addr", "", "inet", "pg_catalog.inet_client_addr()"),
    ("inet_client_port", "", "integer", "pg_catalog.inet_client_port()"),
    ("current_query", "", "text", "pg_catalog.current_query()"),
    ("nextval", "regclass", "bigint", "pg_catalog.nextval($1)"),
    ("unnest", "anyarray", "SETOF anyelement", "pg_catalog.unnest($1)"),
]
#: (operator, left type, right type, result, the built-in's call).
OPERATORS = [
    ("=", "text", "text", "boolean", "pg_catalog.texteq($1, $2)"),
    ("=", "integer", "integer", "boolean", "pg_catalog.int4eq($1, $2)"),
    ("=", "bigint", "bigint", "boolean", "pg_catalog.int8eq($1, $2)"),
    ("=", "jsonb", "jsonb", "boolean", "pg_catalog.jsonb_eq($1, $2)"),
    ("=", "timestamptz", "timestamptz", "boolean", "pg_catalog.timestamptz_eq($1, $2)"),
    ("<>", "jsonb", "jsonb", "boolean", "pg_catalog.jsonb_ne($1, $2)"),
    ("->>", "jsonb", "text", "text", "pg_catalog.jsonb_object_field_text($1, $2)"),
    ("->", "jsonb", "text", "jsonb", "pg_catalog.jsonb_object_field($1, $2)"),
    ("-", "jsonb", "text[]", "jsonb", "pg_catalog.jsonb_delete($1, VARIADIC $2)"),
    ("||", "jsonb", "jsonb", "jsonb", "pg_catalog.jsonb_concat($1, $2)"),
    ("?", "jsonb", "text", "boolean", "pg_catalog.jsonb_exists($1, $2)"),
]

RECORD = "INSERT INTO shadow.ran (who, what) VALUES (current_user, {what!r});"


def shadow_objects(app: str) -> list[str]:
    statements = [
        "CREATE TABLE shadow.ran (who text, what text)",
        "GRANT USAGE ON SCHEMA shadow TO PUBLIC",
        "GRANT INSERT, SELECT ON shadow.ran TO PUBLIC",
    ]
    for name, args, result, call in FUNCTIONS:
        params = ", ".join(f"${i + 1}" for i, _ in enumerate(args.split(", "))) if args else ""
        assert call.endswith(f"({params})")
        select = f"SELECT {call}" if not result.startswith("SETOF") else f"SELECT * FROM {call}"
        statements.append(
            f"CREATE FUNCTION shadow.{name}({args}) RETURNS {result} LANGUAGE sql VOLATILE AS $$"
            f" {RECORD.format(what=name)} {select} $$"
        )
    for n, (op, left, right, result, call) in enumerate(OPERATORS):
        statements += [
            f"CREATE FUNCTION shadow.op_{n}({left}, {right}) RETURNS {result} LANGUAGE sql VOLATILE AS $$"
            f" {RECORD.format(what=op)} SELECT {call} $$",
            f"CREATE OPERATOR shadow.{op} (LEFTARG = {left}, RIGHTARG = {right}, FUNCTION = shadow.op_{n})",
        ]
    return statements


@pytest.mark.parametrize("masked", [False, True], ids=["plain", "masked"])
def test_the_capture_never_resolves_a_name_through_the_callers_search_path(two_roles: TwoRoles, masked):
    setup = two_roles
    if masked:  # the redaction helpers run too
        from partitioned_audit import enable

        conn = setup.session(setup.owner)
        enable(conn.cursor(), setup.layout, setup.spec(masked=("amount",)))
        conn.commit()
        conn.close()
    setup.run(None, f"CREATE SCHEMA shadow AUTHORIZATION {setup.app}")
    setup.run(setup.app, *shadow_objects(setup.app))
    before = setup.trail()
    rows = setup.run(
        setup.app,
        "SET search_path = shadow, pg_catalog, public",
        """SET partitioned_audit.context = '{"user_id": 1}'""",
        "INSERT INTO public.invoice VALUES (2, 20), (3, 30)",
        "UPDATE public.invoice SET amount = 21 WHERE id OPERATOR(pg_catalog.=) 2",
        "UPDATE public.invoice SET id = 4 WHERE id OPERATOR(pg_catalog.=) 3",  # a key change
        "DELETE FROM public.invoice WHERE id OPERATOR(pg_catalog.=) 4",
        "TRUNCATE public.invoice",
        "SELECT who, what FROM shadow.ran ORDER BY 1, 2",
    )
    assert [row for row in rows if row[0] == setup.owner] == []
    trail = setup.trail()
    assert trail[: len(before)] == before
    # 2 inserts, 1 update, the key change under both keys, 1 delete, 1 truncate.
    assert len(trail) - len(before) == 7
