"""The application role tries to change, erase, read or bypass the trail through every object.

The set-up (see conftest) granted the application role ALL on every table, sequence and
function of the schema and in default privileges, then ran ``privileges --app-role --read``.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from partitioned_audit.layouts import SIMPLE, functions
from partitioned_audit.partitioning.maintenance import Maintainer
from partitioned_audit.partitioning.ranges import PartitionInfo
from tests.attacks.conftest import TwoRoles, refused

FORGED_ROW = {
    "simple": "(object_table, object_payload, audit_txid_current, audit_operation) VALUES ('invoice', '{}', 1, 'I')",
    "advanced": "(schema_name, table_name, relid, action_tstamp_tx, action_tstamp_stm, action_tstamp_clk,"
    " action, statement_only) VALUES ('public', 'invoice', 1, now(), now(), now(), 'I', false)",
}


def make_partitions(setup: TwoRoles) -> tuple[list[str], str]:
    """Create this month's partitions (after the privileges were set) and a detached old one."""
    assert setup.cli("create") == 0
    conn = setup.session(setup.owner)
    conn.autocommit = True
    try:
        maintainer = Maintainer(conn, setup.layout)
        old = PartitionInfo.create(setup.layout.table, dt.date(2020, 1, 1), dt.date(2020, 2, 1))
        maintainer.create([old])
        maintainer.detach([old])
        attached = [p.partition for p in maintainer.existing()]
    finally:
        conn.close()
    assert attached and old.partition not in attached
    return attached, old.partition


def attempts_on(setup: TwoRoles, relation: str, read_allowed: bool) -> list[str]:
    layout = setup.layout
    target = f'public."{relation}"'
    statements = [
        f"INSERT INTO {target} {FORGED_ROW[layout.name]}",
        f"UPDATE {target} SET {layout.table_column} = 'forged'",
        f"DELETE FROM {target}",
    ]
    if relation != layout.view:
        statements.append(f"TRUNCATE {target}")
    if not read_allowed:
        statements.append(f"SELECT * FROM {target}")
    return statements


def test_the_app_role_cannot_write_or_read_audit_rows_through_any_relation(two_roles: TwoRoles):
    layout = two_roles.layout
    attached, detached = make_partitions(two_roles)
    before = two_roles.trail()
    relations = [layout.table, layout.default_partition, *attached, detached]
    app = two_roles.session(two_roles.app)
    try:
        for relation in relations:
            for statement in attempts_on(two_roles, relation, read_allowed=False):
                assert refused(app, statement).startswith("permission denied for table "), statement
        for statement in attempts_on(two_roles, layout.view, read_allowed=True):
            assert refused(app, statement).startswith("permission denied for view "), statement
        # --read: the view, and nothing else, answers.
        cur = app.cursor()
        cur.execute(f"SELECT count(*) FROM public.{layout.view}")
        assert cur.fetchone()[0] == len(before) == 1
        app.rollback()
        for call in (f"nextval('public.{layout.sequence}')", f"setval('public.{layout.sequence}', 1)"):
            assert refused(app, f"SELECT {call}").startswith("permission denied for sequence ")
        for call in (
            "dpa_pk_text('{}'::jsonb, '{}')",
            "dpa_redact('{}', '{}', '{}')",
            "dpa_check_json_casts(0)",
        ):
            assert refused(app, f"SELECT public.{call}").startswith("permission denied for function ")
    finally:
        app.close()
    for name, args in functions(layout):
        check = f"SELECT has_function_privilege('{two_roles.app}', 'public.{name}({args})', 'EXECUTE')"
        assert two_roles.run(None, check) == [(False,)], name
    assert two_roles.trail() == before


def test_the_view_refuses_writes_even_from_roles_granted_them(two_roles: TwoRoles):
    layout = two_roles.layout
    before = two_roles.trail()
    two_roles.run(two_roles.owner, f"GRANT INSERT, UPDATE, DELETE ON public.{layout.view} TO {two_roles.app}")
    for role in (two_roles.app, two_roles.owner):
        conn = two_roles.session(role)
        try:
            for statement in attempts_on(two_roles, layout.view, read_allowed=True):
                error = refused(conn, statement)
                # UPDATE/DELETE of rows: refused per row by the INSTEAD OF trigger.
                assert f"{layout.view} is read-only" in error, (role, statement, error)
        finally:
            conn.close()
    assert two_roles.trail() == before


def test_the_search_views_are_granted_with_the_read_view_and_refuse_writes(two_roles: TwoRoles):
    """The context view (``filter_context()``) and the keys view (the admin's bounds) show
    what the read view shows: ``--read`` grants them with it, and a write through them is
    refused, without a grant by the privileges, with one by their INSTEAD OF trigger."""
    layout = two_roles.layout
    two_roles.run(
        two_roles.app,
        "SET LOCAL partitioned_audit.context = '{\"user_id\": 1}'",
        "INSERT INTO invoice VALUES (2, 20)",
    )
    before = two_roles.trail()
    searches = [view for view in layout.views if view != layout.view]
    assert len(searches) == 2
    # The keys view shows every entry; the context view those with a context row (not the
    # fixture's write outside any context).
    (in_context,) = two_roles.run(
        two_roles.owner,
        f"SELECT count(*) FROM {layout.table} WHERE audit_context_id IS NOT NULL",  # noqa: S608
    )[0]
    shown = {layout.keys_view: len(before), layout.context_view: in_context}
    assert len(before) == 2 and in_context == 1

    def writes(view: str) -> list[str]:
        return [f"UPDATE public.{view} SET {layout.table_column} = 'forged'", f"DELETE FROM public.{view}"]

    app = two_roles.session(two_roles.app)
    try:
        for view in searches:
            cur = app.cursor()
            cur.execute(f"SELECT count(*) FROM public.{view}")  # noqa: S608 - the layout's names
            assert cur.fetchone()[0] == shown[view]
            app.rollback()
            for statement in writes(view):
                assert refused(app, statement).startswith("permission denied for view "), statement
    finally:
        app.close()
    grant = f"GRANT INSERT, UPDATE, DELETE ON {', '.join(f'public.{v}' for v in searches)} TO {two_roles.app}"
    two_roles.run(two_roles.owner, grant)
    for role in (two_roles.app, two_roles.owner):
        conn = two_roles.session(role)
        try:
            for view in searches:
                for statement in writes(view):
                    error = refused(conn, statement)
                    assert f"{view} is read-only" in error, (role, statement, error)
        finally:
            conn.close()
    assert two_roles.trail() == before


def test_a_partition_created_later_is_never_more_open_than_its_parent(two_roles: TwoRoles):
    """Default privileges grant the app ALL on new tables; the partition must not keep them."""
    auditor = f"{two_roles.app}_auditor"
    two_roles.run(None, f"CREATE ROLE {auditor}")
    two_roles.run(two_roles.owner, f"GRANT SELECT ON public.{two_roles.layout.table} TO {auditor}")
    attached, _ = make_partitions(two_roles)
    grants = two_roles.run(
        two_roles.owner,
        "SELECT c.relname, coalesce(g.rolname, 'PUBLIC'), a.privilege_type FROM pg_class c"
        " CROSS JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a"
        " LEFT JOIN pg_roles g ON g.oid = a.grantee"
        f" WHERE c.relname = ANY (ARRAY{attached!r}) AND a.grantee <> c.relowner ORDER BY 1, 2, 3",
    )
    assert grants == [(name, auditor, "SELECT") for name in sorted(attached)]
    two_roles.run(None, "DROP OWNED BY " + auditor)


def privileges_json(setup: TwoRoles, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    capsys.readouterr()
    assert setup.cli("privileges", "--app-role", setup.app, "--json", *extra) == 0
    return json.loads(capsys.readouterr().out)


def test_privileges_is_idempotent_and_says_what_it_changed(two_roles: TwoRoles, capsys):
    layout = two_roles.layout
    assert privileges_json(two_roles, capsys, "--read")["changes"] == []
    two_roles.run(two_roles.owner, f"GRANT INSERT, TRIGGER ON public.{layout.table} TO {two_roles.app}")
    changes = privileges_json(two_roles, capsys, "--read")["changes"]
    assert changes == [f"revoked INSERT, TRIGGER on table public.{layout.table} from {two_roles.app}"]
    # Without --read the views close too, and the functions reading them.
    changes = privileges_json(two_roles, capsys)["changes"]
    assert changes == [
        f"revoked EXECUTE on function public.{layout.object_function}(text, text, text) from {two_roles.app}",
        f"revoked EXECUTE on function public.{layout.context_function}(jsonb) from {two_roles.app}",
        *(f"revoked SELECT on view public.{view} from {two_roles.app}" for view in sorted(layout.views)),
    ]
    calls = [
        f"SELECT * FROM public.{layout.object_function}('invoice', 'public', '1')",
        f"SELECT * FROM public.{layout.context_function}('[{{\"user_id\": 1}}]')",
    ]
    app = two_roles.session(two_roles.app)
    try:
        for view in layout.views:
            assert refused(app, f"SELECT * FROM public.{view}").startswith("permission denied")
        for call in calls:
            assert refused(app, call).startswith("permission denied for function")
    finally:
        app.close()
    # EXECUTE alone reads nothing: the read functions run with the caller's rights, and the
    # caller may not read the views.
    two_roles.run(
        two_roles.owner,
        *(
            f"GRANT EXECUTE ON FUNCTION public.{name}({args}) TO {two_roles.app}"
            for name, args, _ in layout.read_functions
        ),
    )
    app = two_roles.session(two_roles.app)
    try:
        for call in calls:
            assert refused(app, call).startswith("permission denied for view")
    finally:
        app.close()


@pytest.mark.parametrize("who", ["unknown", "superuser", "owner", "member of a granted role", "table owner"])
def test_privileges_refuses_roles_it_cannot_restrict_and_changes_nothing(two_roles: TwoRoles, capsys, who):
    layout, app = two_roles.layout, two_roles.app
    role = {"unknown": "no_such_role_x", "superuser": "postgres", "owner": two_roles.owner}.get(who, app)
    if who == "member of a granted role":
        two_roles.run(None, f"CREATE ROLE {app}_writers", f"GRANT {app}_writers TO {app}")
        two_roles.run(
            two_roles.owner,
            f"GRANT DELETE ON public.{layout.table} TO {app}_writers",
            f"GRANT UPDATE ON public.{layout.table} TO {app}",
        )
    if who == "table owner":
        two_roles.run(None, f"GRANT {app} TO {two_roles.owner}", f"GRANT CREATE ON SCHEMA public TO {app}")
        two_roles.run(two_roles.owner, f"ALTER TABLE invoice OWNER TO {app}")
    capsys.readouterr()
    assert two_roles.cli("privileges", "--app-role", role) == 2
    error = capsys.readouterr().err
    expected = {
        "unknown": "role 'no_such_role_x' does not exist",
        "superuser": "role 'postgres' is a superuser",
        "owner": f"role {two_roles.owner!r} owns the audit objects",
        "member of a granted role": f"still has DELETE on table public.{layout.table}",
        "table owner": "owns the audited table(s) public.invoice",
    }[who]
    assert expected in error
    if who == "member of a granted role":
        # One transaction: the direct UPDATE grant it revoked first is back, nothing half-done.
        check = f"SELECT has_table_privilege('{app}', 'public.{layout.table}', 'UPDATE')"
        assert two_roles.run(two_roles.owner, check) == [(True,)]
        two_roles.run(None, f"DROP OWNED BY {app}_writers")


def test_the_app_role_writes_are_recorded(two_roles: TwoRoles):
    app = two_roles.session(two_roles.app)
    try:
        app.cursor().execute("UPDATE invoice SET amount = 11 WHERE id = 1")
        app.cursor().execute("DELETE FROM invoice")
        app.cursor().execute("TRUNCATE invoice")
        app.commit()
    finally:
        app.close()
    operation = "audit_operation" if two_roles.layout is SIMPLE else "action"
    rows = two_roles.run(
        two_roles.owner,
        f"SELECT {operation} FROM {two_roles.layout.table} ORDER BY {two_roles.layout.event_column}",
    )
    assert [row[0] for row in rows] == ["I", "U", "D", "T"]


def test_privileges_quotes_the_role_name(two_roles: TwoRoles, capsys):
    """A role name that needs quoting is revoked from as itself."""
    odd = f'{two_roles.app} "odd"'
    quoted = '"' + odd.replace('"', '""') + '"'
    two_roles.run(None, f"CREATE ROLE {quoted}")
    two_roles.run(two_roles.owner, f"GRANT SELECT ON public.{two_roles.layout.table} TO {quoted}")
    capsys.readouterr()
    assert two_roles.cli("privileges", "--app-role", odd, "--json") == 0
    changes = json.loads(capsys.readouterr().out)["changes"]
    assert changes == [f"revoked SELECT on table public.{two_roles.layout.table} from {odd}"]
    two_roles.run(None, f"DROP OWNED BY {quoted}")


OWNER_ONLY = ("must be owner of table invoice", "must be owner of relation invoice")


def test_the_app_role_cannot_disable_or_drop_a_capture_trigger(two_roles: TwoRoles):
    app = two_roles.session(two_roles.app)
    try:
        for name in two_roles.layout.triggers().values():
            for statement in (
                f"ALTER TABLE invoice DISABLE TRIGGER {name}",
                f"DROP TRIGGER {name} ON invoice",
                "ALTER TABLE invoice DISABLE TRIGGER ALL",
                f"ALTER TRIGGER {name} ON invoice RENAME TO x",
            ):
                # "table" or "relation", as PostgreSQL words it for the statement
                assert refused(app, statement) in OWNER_ONLY, statement
        assert refused(app, "SET session_replication_role = replica").startswith(
            "permission denied to set parameter"
        )
    finally:
        app.close()
