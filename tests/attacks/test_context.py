"""The context table against the application role: what a writer declares about itself is
a claim, the login role beside it is recorded by the capture, and the context rows are as
closed to the application as the audit rows.

Each test runs in both layouts, as real logins (see conftest.py).
"""

from __future__ import annotations

import json

from tests.attacks.conftest import TwoRoles, refused


def view_rows(setup: TwoRoles, role: str) -> list[tuple[object, ...]]:
    """(audit_context, session_user_name, audit_context_id) of every row, through the read
    view, as ``role`` reads it."""
    key = "id" if setup.layout.name == "simple" else "event_id"
    return setup.run(
        role,
        f"SELECT audit_context::text, session_user_name, audit_context_id FROM {setup.layout.view}"  # noqa: S608
        f" ORDER BY {key}",
    )


def test_a_context_naming_another_user_still_shows_the_real_login_role(two_roles: TwoRoles):
    """F10: any writer can SET LOCAL a context claiming to be someone else, even through a
    role it may SET ROLE to; the trail records the role that logged in beside it."""
    setup = two_roles
    other = f"{setup.app}_other"
    setup.run(
        None,
        f'CREATE ROLE "{other}"',
        f'GRANT "{other}" TO "{setup.app}"',
        f'GRANT INSERT ON invoice TO "{other}"',
    )
    claimed = {"user_id": 1, "username": "admin"}
    setup.run(
        setup.app,
        f"SET LOCAL partitioned_audit.context = '{json.dumps(claimed)}'",
        f'SET LOCAL ROLE "{other}"',
        "INSERT INTO invoice VALUES (2, 20)",
    )
    *_, (context, role, _) = view_rows(setup, setup.app)
    assert json.loads(context) == claimed  # recorded as declared ...
    assert role == setup.app  # ... beside the role that logged in, neither admin nor the SET ROLE
    # The first write, outside any context, has the role too.
    assert view_rows(setup, setup.owner)[0][:2] == (None, setup.app)


def test_a_write_outside_any_context_records_the_real_login_role_on_the_audit_row(two_roles: TwoRoles):
    """F10 outside any context: no context row is made, and the audit row's own
    ``session_user_name``, written by the capture from ``session_user``, is the role that
    logged in, whatever role the writer SET ROLE to (for the transaction or the session).
    SET SESSION AUTHORIZATION, which would change ``session_user``, is refused to a role
    that is no superuser, and the column cannot be written around the capture."""
    setup = two_roles
    layout = setup.layout
    other = f"{setup.app}_other"
    setup.run(
        None,
        f'CREATE ROLE "{other}"',
        f'GRANT "{other}" TO "{setup.app}"',
        f'GRANT SELECT, INSERT, UPDATE, DELETE ON invoice TO "{other}"',
    )
    setup.run(setup.app, f'SET LOCAL ROLE "{other}"', "INSERT INTO invoice VALUES (2, 20)")
    setup.run(setup.app, f'SET ROLE "{other}"', "UPDATE invoice SET amount = 21 WHERE id = 2")
    setup.run(setup.app, f'SET SESSION ROLE "{other}"', "DELETE FROM invoice WHERE id = 2")
    conn = setup.session(setup.app)
    try:
        for role in (setup.owner, other):
            assert "permission denied to set session authorization" in refused(
                conn, f'SET SESSION AUTHORIZATION "{role}"'
            )
        for statement in (
            f"UPDATE {layout.table} SET session_user_name = 'admin'",  # noqa: S608
            f"INSERT INTO {layout.table} (session_user_name) VALUES ('admin')",  # noqa: S608
        ):
            assert "permission denied" in refused(conn, statement)
    finally:
        conn.close()
    rows = setup.run(
        setup.owner,
        f"SELECT session_user_name, audit_context_id FROM {layout.table} ORDER BY {layout.event_column}",  # noqa: S608
    )
    # (the set-up's own first write, then these three)
    assert rows == [(setup.app, None)] * 4
    assert setup.run(setup.owner, f"SELECT count(*) FROM {layout.context_table}") == [(0,)]  # noqa: S608
    assert view_rows(setup, setup.owner) == [(None, setup.app, None)] * 4


def test_the_app_role_cannot_write_or_read_the_context_table(two_roles: TwoRoles):
    setup = two_roles
    layout = setup.layout
    trail_before = setup.trail()
    contexts_before = setup.run(setup.owner, f"SELECT * FROM {layout.context_table} ORDER BY context_id")  # noqa: S608
    conn = setup.session(setup.app)
    try:
        for table in (layout.context_table, layout.context_default_partition):
            for statement in (
                f"INSERT INTO {table} (created, txid, session_user_name, context)"  # noqa: S608
                " VALUES (now(), txid_current(), 'admin', '{\"user_id\": 1}')",
                f"UPDATE {table} SET session_user_name = 'admin'",  # noqa: S608
                f"DELETE FROM {table}",  # noqa: S608
                f"TRUNCATE {table}",
                f"SELECT * FROM {table}",  # noqa: S608
            ):
                assert "permission denied" in refused(conn, statement)
        assert "permission denied" in refused(conn, f"SELECT nextval('{layout.context_sequence}')")
    finally:
        conn.close()
    assert setup.trail() == trail_before
    after = setup.run(setup.owner, f"SELECT * FROM {layout.context_table} ORDER BY context_id")  # noqa: S608
    assert after == contexts_before


def test_the_context_rows_stay_as_written_even_for_their_owner(two_roles: TwoRoles):
    """Only the engine's maintenance moves them, with their partition; an UPDATE, a DELETE
    or a TRUNCATE is refused, whoever runs it."""
    setup = two_roles
    table = setup.layout.context_table
    # A context row to change (a write outside any context makes none in the advanced layout).
    setup.run(
        setup.app,
        "SET LOCAL partitioned_audit.context = '{\"user_id\": 1}'",
        "INSERT INTO invoice VALUES (9, 90)",
    )
    before = setup.run(setup.owner, f"SELECT * FROM {table} ORDER BY context_id")  # noqa: S608
    assert before
    conn = setup.owner_session()
    try:
        for statement in (
            f"UPDATE {table} SET session_user_name = 'admin'",  # noqa: S608
            f"DELETE FROM {table}",  # noqa: S608
            f"TRUNCATE {table}",
        ):
            assert "are never changed nor removed" in refused(conn, statement)
    finally:
        conn.close()
    assert setup.run(setup.owner, f"SELECT * FROM {table} ORDER BY context_id") == before  # noqa: S608


def test_the_capture_never_points_a_row_at_another_transactions_context(two_roles: TwoRoles):
    """The capture picks the context row by txid_current(): a writer repeating another
    transaction's context, or setting a reference of its own, gets a row of its own."""
    setup = two_roles
    context = '{"user_id": 7, "request_id": "r-1"}'
    setup.run(
        setup.app, f"SET LOCAL partitioned_audit.context = '{context}'", "INSERT INTO invoice VALUES (2, 20)"
    )
    (first,) = setup.run(setup.owner, f"SELECT max(context_id) FROM {setup.layout.context_table}")  # noqa: S608
    setup.run(
        setup.app,
        f"SET LOCAL partitioned_audit.context = '{context}'",
        # settings a writer might hope the capture reads: it reads none of them
        f"SET LOCAL partitioned_audit.context_id = '{first[0]}'",
        f"SET LOCAL partitioned_audit.audit_context_id = '{first[0]}'",
        "INSERT INTO invoice VALUES (3, 30)",
    )
    layout = setup.layout
    rows = setup.run(
        setup.owner,
        f"SELECT a.{layout.txid_column}, c.txid, c.context_id FROM {layout.table} AS a"  # noqa: S608 - constants
        f" JOIN {layout.context_table} AS c ON c.context_id = a.audit_context_id ORDER BY a.{layout.event_column}",
    )
    assert all(row_txid == context_txid for row_txid, context_txid, _ in rows), rows
    assert rows[-1][2] != first[0] and rows[-2][2] == first[0]


def test_a_read_only_role_searches_by_context_through_the_view(two_roles: TwoRoles):
    """``audit_privileges --read`` grants the views only: a search by context goes through
    them (before the context table, filter_context() queried the audit table)."""
    setup = two_roles
    setup.run(
        setup.app,
        """SET LOCAL partitioned_audit.context = '{"user_id": 7}'""",
        "INSERT INTO invoice VALUES (2, 20)",
    )
    found = setup.run(
        setup.app,
        f"""SELECT count(*) FROM {setup.layout.view} WHERE audit_context @> '{{"user_id": 7}}'"""  # noqa: S608
        f""" AND (audit_context ->> 'user_id') = '7'""",
    )
    assert found == [(1,)]


def test_the_setting_that_saves_the_lookup_points_no_row_at_another_transactions_context(
    two_roles: TwoRoles,
):
    """The capture skips the context lookup until its transaction has made a context row,
    and remembers that in a setting any writer can set. Setting it to the transaction's own
    id before the first write, to an earlier transaction's id, or clearing it after a write,
    must still leave every audit row pointing at a context row of its own transaction,
    with the login role and the context in force."""
    setup = two_roles
    layout = setup.layout
    txid = "audit_txid_current" if layout.name == "simple" else "transaction_id"
    earlier = setup.run(
        setup.app,
        "SET LOCAL partitioned_audit.context = '{\"user_id\": 1}'",
        "INSERT INTO invoice VALUES (2, 20)",
        "SELECT txid_current()::text",
    )[0][0]
    conn = setup.session(setup.app)
    try:
        cur = conn.cursor()
        for statement in (
            # Claims this transaction made its context row already: the capture looks it up.
            "SELECT set_config('partitioned_audit.context_made', txid_current()::text, true)",
            "SET LOCAL partitioned_audit.context = '{\"user_id\": 2}'",
            "INSERT INTO invoice VALUES (3, 30)",
            # Claims the earlier transaction's id: no lookup, a row of its own is made.
            f"SET LOCAL partitioned_audit.context_made = '{earlier}'",
            "INSERT INTO invoice VALUES (4, 40)",
            # Forgets the row made: a second one for the same transaction and context.
            "RESET partitioned_audit.context_made",
            "INSERT INTO invoice VALUES (5, 50)",
        ):
            cur.execute(statement)
        cur.execute("SELECT txid_current()")
        (current,) = cur.fetchone()
        conn.commit()
    finally:
        conn.close()
    rows = setup.run(
        setup.owner,
        f"SELECT a.{txid}, c.txid, c.session_user_name, c.context ->> 'user_id'"  # noqa: S608
        f" FROM {layout.table} a JOIN {layout.context_table} c ON c.context_id = a.audit_context_id"
        f" WHERE a.{txid} = {int(current)}",
    )
    assert len(rows) == 3  # every row of the transaction found its context row
    assert {row[1:] for row in rows} == {(current, setup.app, "2")}
    made = setup.run(
        setup.owner,
        f"SELECT count(*) FROM {layout.context_table} WHERE txid = {int(current)}",  # noqa: S608
    )[0][0]
    # The forged claim cost a lookup that found nothing; the other two each cost a context
    # row of the transaction's own: more rows, never a row of another transaction.
    assert made == 3
