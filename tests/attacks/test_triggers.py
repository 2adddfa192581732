"""Roles that may touch an audited table's triggers try to switch its capture off.

F1: the application role, granted ALL on every table (TRIGGER included), replaces a capture
trigger with one that records nothing. F2: the owner of the audited table, where a superuser
installed the guard, replaces a capture trigger, rewrites values with ``ALTER COLUMN ...
TYPE ... USING``, or changes a row's key in a BEFORE trigger. Each attack is run by a real
login, and the trail is compared before and after.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from partitioned_audit import enable, install, objects
from partitioned_audit.layouts import SIMPLE
from tests.attacks.conftest import TwoRoles, refused
from tests.engine_db import connect

NOOP = "CREATE FUNCTION {schema}.noop() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END'"


def operations(setup: TwoRoles) -> list[tuple[str, str | None]]:
    """(operation, object_pk) of every audit row, in event order."""
    layout = setup.layout
    operation = "audit_operation" if layout is SIMPLE else "action"
    return [
        (row[0], row[1])
        for row in setup.run(
            setup.owner, f"SELECT {operation}, object_pk FROM {layout.table} ORDER BY {layout.event_column}"
        )
    ]


def guarded(setup: TwoRoles) -> None:
    """Install the guard as a superuser does with its first ``migrate``, which then
    recomputes the capture triggers' arguments (they depend on the guard)."""
    conn = connect(setup.dbname)
    try:
        install(conn.cursor(), setup.layout)
        enable(conn.cursor(), setup.layout, setup.spec())
        conn.commit()
        assert objects.guard_state(conn.cursor()) == (True, True)
    finally:
        conn.close()


def problems(setup: TwoRoles) -> list[str]:
    conn = setup.session(setup.owner)
    try:
        return [
            text
            for _, text in objects.trigger_problems(conn.cursor(), setup.layout, "public", [setup.spec()])
        ]
    finally:
        conn.close()


# --- F1: the application role ---------------------------------------------------------


def test_the_app_role_cannot_replace_a_capture_trigger(two_roles: TwoRoles):
    before = operations(two_roles)
    app = two_roles.session(two_roles.app)
    try:
        app.cursor().execute(NOOP.format(schema="pg_temp"))
        error = refused(
            app,
            "CREATE OR REPLACE TRIGGER dpa_audit_del AFTER DELETE ON invoice FOR EACH STATEMENT"
            " EXECUTE FUNCTION pg_temp.noop()",
        )
        assert error == "permission denied for table invoice"
        app.cursor().execute("DELETE FROM invoice")
        app.commit()
    finally:
        app.close()
    assert operations(two_roles) == [*before, ("D", "1")]
    assert problems(two_roles) == []


def privileges_run(setup: TwoRoles, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any] | str]:
    capsys.readouterr()
    code = setup.cli("privileges", "--app-role", setup.app, "--read", "--json")
    out = capsys.readouterr()
    return code, json.loads(out.out) if code == 0 else out.err


def test_privileges_takes_trigger_and_references_on_audited_tables_and_says_so(two_roles: TwoRoles, capsys):
    app = two_roles.app
    two_roles.run(two_roles.owner, f"GRANT TRIGGER, REFERENCES ON invoice TO {app}, PUBLIC")
    code, outcome = privileges_run(two_roles, capsys)
    assert code == 0 and isinstance(outcome, dict)
    assert outcome["changes"] == [
        f"revoked REFERENCES, TRIGGER on table public.invoice from {app}",
        "revoked REFERENCES, TRIGGER on table public.invoice from PUBLIC",
    ]
    assert privileges_run(two_roles, capsys) == (0, {**outcome, "changes": []})
    check = (
        f"SELECT privilege, has_table_privilege('{app}', 'invoice', privilege)"
        " FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'TRIGGER', 'REFERENCES'])"
        " AS privilege"
    )
    assert dict(two_roles.run(two_roles.owner, check)) == {
        "SELECT": True,
        "INSERT": True,
        "UPDATE": True,
        "DELETE": True,
        "TRUNCATE": True,
        "TRIGGER": False,
        "REFERENCES": False,
    }


def test_privileges_fails_where_trigger_comes_through_a_membership(two_roles: TwoRoles, capsys):
    app = two_roles.app
    two_roles.run(None, f"CREATE ROLE {app}_team", f"GRANT {app}_team TO {app}")
    two_roles.run(two_roles.owner, f"GRANT TRIGGER ON invoice TO {app}_team")
    try:
        assert privileges_run(two_roles, capsys) == (
            2,
            f"partitioned-audit: role {app!r} still has TRIGGER on table public.invoice through"
            " a role it is a member of (see \\du and \\dp); revoke those grants from that role\n",
        )
    finally:
        two_roles.run(None, f"DROP OWNED BY {app}_team")


def test_a_table_audited_later_never_hands_its_triggers_to_the_app_role(two_roles: TwoRoles):
    """Default privileges (conftest) grant the app ALL on the new table, TRIGGER included."""
    app = two_roles.app
    conn = two_roles.session(two_roles.owner)
    try:
        conn.cursor().execute("CREATE TABLE credit (id int PRIMARY KEY, amount numeric)")
        assert enable(conn.cursor(), two_roles.layout, two_roles.spec("credit"))
        conn.commit()
    finally:
        conn.close()
    before = operations(two_roles)
    session = two_roles.session(app)
    try:
        session.cursor().execute(NOOP.format(schema="pg_temp"))
        error = refused(
            session,
            "CREATE OR REPLACE TRIGGER dpa_audit_ins AFTER INSERT ON credit FOR EACH STATEMENT"
            " EXECUTE FUNCTION pg_temp.noop()",
        )
        assert error == "permission denied for table credit"
        session.cursor().execute("INSERT INTO credit VALUES (7, 1)")
        session.commit()
    finally:
        session.close()
    assert operations(two_roles) == [*before, ("I", "7")]


# --- a replaced trigger is recognised by its definition, not its name ------------------


@pytest.mark.parametrize(
    ("replacement", "reported"),
    [
        (
            "CREATE OR REPLACE TRIGGER dpa_audit_del AFTER DELETE ON invoice FOR EACH STATEMENT"
            " EXECUTE FUNCTION public.noop()",
            "capture trigger dpa_audit_del is replaced: it executes public.noop() instead of"
            " public.{function}()",
        ),
        (
            "CREATE OR REPLACE TRIGGER dpa_audit_key AFTER UPDATE ON invoice FOR EACH ROW"
            " WHEN (false) EXECUTE FUNCTION public.{key_function}('{{\"id\"}}', '{{}}', '{{}}', 'o', 'f',"
            " 'public', 'invoice')",
            "capture trigger dpa_audit_key is replaced: its WHEN condition is false instead of"
            " (old.id IS DISTINCT FROM new.id)",
        ),
    ],
    ids=["function", "condition"],
)
def test_a_replaced_capture_trigger_is_reported_and_enable_repairs_it(
    two_roles: TwoRoles, replacement, reported
):
    layout = two_roles.layout
    # The DELETE trigger runs the row capture at row level.
    function = layout.row_function if two_roles.row_level else layout.function
    names = {"function": function, "key_function": layout.key_function}
    trigger = replacement.split()[4]
    two_roles.run(
        two_roles.owner,
        NOOP.format(schema="public"),
        replacement.format(**names),
        f"ALTER TABLE invoice ENABLE ALWAYS TRIGGER {trigger}",
    )
    assert problems(two_roles) == [reported.format(**names)]
    conn = two_roles.session(two_roles.owner)
    try:
        assert enable(conn.cursor(), layout, two_roles.spec())
        conn.commit()
    finally:
        conn.close()
    assert problems(two_roles) == []
    before = operations(two_roles)
    two_roles.run(two_roles.app, "UPDATE invoice SET id = 2", "DELETE FROM invoice")
    assert operations(two_roles) == [*before, ("U", "1"), ("U", "2"), ("D", "2")]


# --- F2: the owner of the audited table, the guard installed ---------------------------


@pytest.mark.parametrize(
    "replacement",
    [
        "CREATE OR REPLACE TRIGGER dpa_audit_upd AFTER UPDATE ON invoice FOR EACH STATEMENT"
        " EXECUTE FUNCTION public.noop()",
        # the capture function itself, told to leave the amount out
        "CREATE OR REPLACE TRIGGER dpa_audit_upd AFTER UPDATE ON invoice REFERENCING OLD TABLE AS dpa_old"
        " NEW TABLE AS dpa_new FOR EACH STATEMENT EXECUTE FUNCTION public.{function}('{{id}}', '{{amount}}',"
        " '{{}}', 't', 'f')",
        "CREATE TRIGGER dpa_audit_other AFTER UPDATE ON invoice FOR EACH STATEMENT EXECUTE FUNCTION public.noop()",
    ],
    ids=["other function", "other arguments", "new name like ours"],
)
def test_the_guard_refuses_a_trigger_named_like_ours(two_roles: TwoRoles, replacement):
    guarded(two_roles)
    two_roles.run(two_roles.owner, NOOP.format(schema="public"))
    before = operations(two_roles)
    statement = replacement.format(function=two_roles.layout.function)
    owner = two_roles.session(two_roles.owner)
    try:
        name = statement.split()[4] if "OR REPLACE" in statement else statement.split()[2]
        assert refused(owner, statement) == (
            f"partitioned_audit: refusing CREATE TRIGGER on {name} on public.invoice: the audit trail depends on it"
        )
    finally:
        owner.close()
    two_roles.run(two_roles.app, "UPDATE invoice SET amount = 12")
    assert operations(two_roles) == [*before, ("U", "1")]
    assert problems(two_roles) == []


REWRITE_REFUSED = (
    "partitioned_audit: refusing ALTER TABLE on public.invoice: a USING expression that is not a plain cast of the"
    " altered column (column::type) would change audited values without an audit row"
)


@pytest.mark.parametrize(
    "statement",
    [
        "ALTER TABLE invoice ALTER COLUMN amount TYPE numeric USING (CASE WHEN id = 1 THEN 999999 ELSE amount END)",
        "ALTER TABLE invoice ALTER COLUMN amount TYPE numeric USING amount::numeric + 1",
        "ALTER TABLE invoice ALTER COLUMN amount TYPE numeric USING id::numeric",
        "ALTER TABLE invoice ALTER COLUMN amount SET DATA TYPE int USING amount::int * 2",
        # a plain cast in the text, the real rewrite elsewhere
        "ALTER TABLE invoice ALTER COLUMN amount TYPE numeric(12, 2) USING amount::numeric(12, 2); "
        "ALTER TABLE invoice ALTER COLUMN amount TYPE numeric USING 999999",
        "DO $$ BEGIN EXECUTE 'ALTER TABLE invoice ALTER COLUMN amount TYPE numeric USING 999999'; END $$",
    ],
    ids=["case", "arithmetic", "other column", "set data type", "two statements", "from a function"],
)
def test_the_guard_refuses_a_type_change_that_rewrites_values(two_roles: TwoRoles, statement):
    guarded(two_roles)
    before = operations(two_roles)
    owner = two_roles.session(two_roles.owner)
    try:
        assert refused(owner, statement) == REWRITE_REFUSED
    finally:
        owner.close()
    assert two_roles.run(two_roles.owner, "SELECT id, amount::text FROM invoice") == [(1, "10")]
    assert operations(two_roles) == before


@pytest.mark.parametrize(
    "statement",
    [
        # as Django's AlterField writes it
        'ALTER TABLE "invoice" ALTER COLUMN "amount" TYPE numeric(12, 2) USING "amount"::numeric(12, 2)',
        "alter table invoice alter amount type text using amount::text",
        "ALTER TABLE invoice ALTER COLUMN amount TYPE bigint",
    ],
    ids=["django", "lower case", "no using"],
)
def test_a_plain_cast_type_change_passes_the_guard_and_capture_goes_on(two_roles: TwoRoles, statement):
    guarded(two_roles)
    before = operations(two_roles)
    two_roles.run(two_roles.owner, statement)
    assert two_roles.run(two_roles.owner, "SELECT id, amount::text FROM invoice") in (
        [(1, "10.00")],
        [(1, "10")],
    )
    assert operations(two_roles) == before
    conn = connect(two_roles.dbname)  # the superuser's migrate brings the triggers up to date
    try:
        enable(conn.cursor(), two_roles.layout, two_roles.spec())
        conn.commit()
    finally:
        conn.close()
    two_roles.run(two_roles.app, "UPDATE invoice SET amount = '11'")
    assert operations(two_roles) == [*before, ("U", "1")]


def test_a_before_trigger_changing_the_key_is_recorded_as_a_key_change(two_roles: TwoRoles):
    two_roles.run(
        two_roles.owner,
        "CREATE FUNCTION public.rekey() RETURNS trigger LANGUAGE plpgsql AS"
        " 'BEGIN NEW.id := NEW.id + 100; RETURN NEW; END'",
        "CREATE TRIGGER rekey BEFORE UPDATE ON invoice FOR EACH ROW EXECUTE FUNCTION public.rekey()",
    )
    before = operations(two_roles)
    two_roles.run(two_roles.app, "UPDATE invoice SET amount = 5 WHERE id = 1")
    assert two_roles.run(two_roles.owner, "SELECT id FROM invoice") == [(101,)]
    # filed under the old key (the key trigger) and under the new one (the statement's)
    assert sorted(operations(two_roles)[len(before) :]) == [("U", "1"), ("U", "101")]
