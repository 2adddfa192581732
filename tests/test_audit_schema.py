"""Every action and read path with the audit objects in a schema of their own.

docs/security.md recommends ``DPA_AUDIT_SCHEMA = "audit"``; here the audit objects live in
such a schema and the audited tables in two others (``public`` and ``sales`` for the engine,
``public`` and ``library_ext`` for the test project), in a two-role set-up on a scratch
database: an owner that is no superuser installs and maintains, an application login that
owns nothing writes. Both faces are run: the ``partitioned-audit`` command line (with
``--schema``) and the Django management commands, in a process of their own whose settings
say ``DPA_AUDIT_SCHEMA`` from the start, as a deployment's do. The clock is frozen (rows get
the server's time, which no partition of 2001 covers, so they wait in the DEFAULT partition).
Everything runs again on a schema named ``Audit "Trail"; x``.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import time_machine
from django.conf import settings

from partitioned_audit import ADVANCED, SIMPLE, TableSpec, cli, enable, install, objects
from partitioned_audit.layouts import Layout, functions
from partitioned_audit.partitioning.maintenance import Maintainer
from partitioned_audit.partitioning.ranges import PartitionInfo
from partitioned_audit.sql import SQL, execute, ident, literal
from tests.conftest import MANAGERS
from tests.engine_db import connect, scratch_database
from tests.frozen_manage import run_frozen

PASSWORD = "audit-schema-suite"  # a login secret for scratch roles only; trust auth ignores it
#: Mid-January 2001: ``create --extra-days 40`` makes January and February.
NOW = dt.datetime(2001, 1, 15, 9, tzinfo=dt.UTC)
#: Late April 2001: January ended 79 days ago, February 51.
LATER = dt.datetime(2001, 4, 21, 9, tzinfo=dt.UTC)
LAYOUTS = pytest.mark.parametrize("layout", [SIMPLE, ADVANCED], ids=lambda layout: layout.name)


@dataclass
class Roles:
    dbname: str
    owner: str
    app: str

    def session(self, role: str | None, autocommit: bool = False) -> Any:
        """A new connection as ``role`` (None: the superuser)."""
        return connect(self.dbname, autocommit, None if role is None else (role, PASSWORD))

    def run(self, role: str | None, *statements: Any, params: Any = None) -> list[tuple[Any, ...]]:
        """Run ``statements`` as ``role`` and commit; the rows of the last one (given ``params``)."""
        conn = self.session(role)
        try:
            cur = conn.cursor()
            for statement in statements[:-1]:
                execute(cur, statement)
            execute(cur, statements[-1], params)
            found = list(cur.fetchall()) if cur.description else []
            conn.commit()
            return found
        finally:
            conn.close()

    def refused(self, role: str, statement: Any) -> str:
        """The first line of the server's refusal of ``statement`` run as ``role``."""
        conn = self.session(role)
        try:
            execute(conn.cursor(), statement)
        except Exception as exc:  # noqa: BLE001 - whichever driver's error class
            return str(exc).splitlines()[0]
        finally:
            conn.rollback()
            conn.close()
        raise AssertionError(f"the server accepted, as {role}: {statement}")

    def dsn(self, role: str) -> str:
        return settings.SERVER.dsn(self.dbname, (role, PASSWORD))

    def url(self, role: str) -> str:
        """The server's URL logged in as ``role`` on this database, for a Django process's
        DATABASE_URL (the host may be a socket directory, kept in the query)."""
        parts = urlsplit(settings.SERVER.url)
        where = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{role}:{PASSWORD}@{where}", path=f"/{self.dbname}"))


@pytest.fixture
def roles() -> Iterator[Roles]:
    """A scratch database, an owner role that may create schemas in it, an application login."""
    tag = uuid.uuid4().hex[:8]
    owner, app = f"dpa_sch_owner_{tag}", f"dpa_sch_app_{tag}"
    admin = connect("postgres", autocommit=True)
    for role in (owner, app):
        execute(
            admin.cursor(), SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(ident(role), literal(PASSWORD))
        )
    try:
        with scratch_database() as dbname:
            setup = Roles(dbname, owner, app)
            setup.run(
                None,
                SQL("GRANT CREATE ON DATABASE {} TO {}").format(ident(dbname), ident(owner)),
                SQL("GRANT CREATE ON SCHEMA public TO {}").format(ident(owner)),
            )
            yield setup
    finally:
        for role in (app, owner):
            execute(admin.cursor(), SQL("DROP ROLE IF EXISTS {}").format(ident(role)))
        admin.close()


def careless_grants(app: str, *schemas: str) -> list[Any]:
    """What docs/security.md's set-up starts with: everything on every schema, now and later."""
    statements = []
    for schema in schemas:
        for grant in (
            "GRANT USAGE, CREATE ON SCHEMA {schema} TO {app}",
            "GRANT ALL ON ALL TABLES IN SCHEMA {schema} TO {app}",
            "GRANT ALL ON ALL SEQUENCES IN SCHEMA {schema} TO {app}",
            "GRANT ALL ON ALL FUNCTIONS IN SCHEMA {schema} TO {app}",
            "ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT ALL ON TABLES TO {app}",
        ):
            statements.append(SQL(grant).format(schema=ident(schema), app=ident(app)))
    return statements


def table_privileges(roles: Roles) -> list[str]:
    """What ``GRANT ALL ON ALL TABLES`` gives on this server, in the order revocations name it."""
    every = ["DELETE", "INSERT", "MAINTAIN", "REFERENCES", "SELECT", "TRIGGER", "TRUNCATE", "UPDATE"]
    if roles.run(None, "SELECT current_setting('server_version_num')::int < 170000") == [(True,)]:
        every.remove("MAINTAIN")  # MAINTAIN came with PostgreSQL 17
    return every


# ---------------------------------------------------------------------------------------
# The engine and ``partitioned-audit --schema audit``
# ---------------------------------------------------------------------------------------


class Engine:
    """The audit objects of ``layout`` in ``schema``; ``public.invoice`` and ``sales.orders`` audited."""

    def __init__(self, roles: Roles, layout: Layout, schema: str) -> None:
        self.roles, self.layout, self.schema = roles, layout, schema
        conn = roles.session(roles.owner)
        cur = conn.cursor()
        cur.execute("CREATE SCHEMA sales")
        cur.execute("CREATE TABLE public.invoice (id int PRIMARY KEY, amount numeric)")
        cur.execute("CREATE TABLE sales.orders (id int PRIMARY KEY, item text)")
        install(cur, layout, schema=schema)
        enable(cur, layout, TableSpec("public", "invoice", ("id",)), schema=schema)
        enable(cur, layout, TableSpec("sales", "orders", ("id",)), schema=schema)
        for statement in careless_grants(roles.app, "public", "sales", schema):
            execute(cur, statement)
        conn.commit()
        conn.close()

    def cli(self, *args: str, capsys: Any, role: str | None = None) -> tuple[int, str, str]:
        """``partitioned-audit --schema SCHEMA ARGS`` as ``role`` (default: the owner):
        (exit status, stdout, stderr)."""
        dsn = self.roles.dsn(role or self.roles.owner)
        status = cli.main(["--dsn", dsn, "--layout", self.layout.name, "--schema", self.schema, *args])
        out, err = capsys.readouterr()
        return status, out, err

    def json(self, *args: str, capsys: Any) -> list[dict[str, Any]]:
        status, out, err = self.cli(*args, "--json", capsys=capsys)
        assert (status, err) == (0, "")
        return [json.loads(line) for line in out.splitlines()]

    def name(self, relation: str) -> Any:
        return ident(self.schema, relation)

    def exists(self, relation: str) -> bool:
        statement = "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text)) IS NOT NULL"
        return bool(self.roles.run(None, statement, params=[self.schema, relation])[0][0])

    def trail(self) -> list[tuple[Any, ...]]:
        """(schema, table, key, operation) of every audit row, read as the owner."""
        layout = self.layout
        columns = (
            ("object_schema", "object_table", "object_pk", "audit_operation")
            if layout is SIMPLE
            else ("schema_name", "table_name", "object_pk", "action")
        )
        statement = SQL("SELECT {} FROM {} ORDER BY {}").format(
            SQL(", ").join(ident(c) for c in columns), self.name(layout.table), ident(layout.event_column)
        )
        return self.roles.run(self.roles.owner, statement)


def partition_names(docs: list[dict[str, Any]]) -> list[str]:
    return [p["name"] for p in docs]


@LAYOUTS
@pytest.mark.parametrize("schema", ["audit", 'Audit "Trail"; x'], ids=["audit", "hostile"])
def test_every_command_line_action_works_on_a_dedicated_audit_schema(roles, layout, schema, capsys):
    e = Engine(roles, layout, schema)
    table = layout.table
    jan, feb = f"{table}_20010101_20010201", f"{table}_20010201_20010301"
    qualified = f"{schema}.{table}"

    # Partitions: plan, create, list and check, at a frozen date.
    with time_machine.travel(NOW, tick=False):
        (simulate,) = e.json("simulate", "--extra-days=40", capsys=capsys)
        assert (simulate["status"], partition_names(simulate["to_create"])) == ("MISSING_CURRENT", [jan, feb])
        created, listed, listed_all, check = e.json(
            "create", "list", "list-all", "check", "--extra-days=40", capsys=capsys
        )
        assert (partition_names(created["created"]), created["moved_rows"]) == ([jan, feb], 0)
        assert partition_names(listed["partitions"]) == [jan, feb]
        assert [(p["name"], p["default"]) for p in listed_all["partitions"]] == [
            (jan, False),
            (feb, False),
            (layout.default_partition, True),
        ]
        assert check == {
            "action": "check",
            "ok": True,
            "reason": f"{qualified} is covered from 2001-01-15 until 2001-03-01; the default partition is empty",
            "covered_until": "2001-03-01",
            "default_rows": 0,
            "holders": [],
        }

    # Privileges: every grant the careless set-up gave on the audit objects is taken back.
    status, out, err = e.cli("privileges", "--app-role", roles.app, "--read", capsys=capsys)
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[-1] == f"Role {roles.app} has no privilege on the audit objects and may read the views."
    assert f"revoked CREATE on schema {schema} from {roles.app}" in lines
    assert f"revoked SELECT, UPDATE, USAGE on sequence {schema}.{layout.sequence} from {roles.app}" in lines
    every = ", ".join(table_privileges(roles))
    for relation in (table, jan, feb, layout.default_partition, layout.seal_table):
        assert f"revoked {every} on table {schema}.{relation} from {roles.app}" in lines, relation
    assert e.json("privileges", "--app-role", roles.app, "--read", capsys=capsys) == [
        {"action": "privileges", "role": roles.app, "read": True, "changes": []}
    ]

    # The application login writes both audited tables, in both schemas, and is recorded.
    statements = [
        "INSERT INTO public.invoice VALUES (1, 10), (2, 20)",
        "UPDATE public.invoice SET amount = 11 WHERE id = 1",
        "DELETE FROM public.invoice WHERE id = 2",
        "INSERT INTO sales.orders VALUES (7, 'pen')",
        "UPDATE sales.orders SET item = 'ink'",
        "DELETE FROM sales.orders",
        "TRUNCATE public.invoice",
    ]
    roles.run(roles.app, *statements)
    found = e.trail()
    recorded = [
        ("public", "invoice", "1", "I"),
        ("public", "invoice", "2", "I"),
        ("public", "invoice", "1", "U"),
        ("public", "invoice", "2", "D"),
        ("sales", "orders", "7", "I"),
        ("sales", "orders", "7", "U"),
        ("sales", "orders", "7", "D"),
    ]
    assert found == [*recorded, ("public", "invoice", None, "T")]
    # ... reads them through the view it was granted ...
    view_count = SQL("SELECT count(*) FROM {}").format(e.name(layout.view))
    assert roles.run(roles.app, view_count) == [(len(found),)]
    # ... and can do nothing else to the trail.
    forged = SQL("INSERT INTO {} DEFAULT VALUES")
    for relation in (table, jan, layout.default_partition, layout.seal_table):
        for statement in (
            forged.format(e.name(relation)),
            SQL("DELETE FROM {}").format(e.name(relation)),
            SQL("TRUNCATE {}").format(e.name(relation)),
            SQL("SELECT * FROM {}").format(e.name(relation)),
        ):
            assert roles.refused(roles.app, statement).startswith(
                f"permission denied for table {relation}"
            ), (relation, statement)
    nextval = SQL("SELECT nextval(format('%I.%I', {}, {}))").format(literal(schema), literal(layout.sequence))
    assert roles.refused(roles.app, nextval) == f"permission denied for sequence {layout.sequence}"
    assert roles.refused(
        roles.app, SQL("CREATE TABLE {} ()").format(e.name(f"{table}_20010301_20010401"))
    ) == (f"permission denied for schema {schema}")
    for name, args in functions(layout):
        statement = SQL("GRANT EXECUTE ON FUNCTION {}({}) TO PUBLIC").format(e.name(name), SQL(args))
        assert roles.refused(roles.app, statement).startswith("permission denied for function"), name
    assert e.trail() == found

    # Maintenance is the owner's: the server's refusal of the application is one line.
    with time_machine.travel(NOW, tick=False):
        refusal = e.cli("check", capsys=capsys, role=roles.app)
    assert refusal == (
        2,
        "",
        f"partitioned-audit: check: permission denied for table {layout.default_partition}\n",
    )

    # Rows the server dated today wait in the DEFAULT partition: check says so.
    with time_machine.travel(NOW, tick=False):
        status, out, err = e.cli("check", "--extra-days=40", capsys=capsys)
    reason = f"the default partition of {qualified} holds {len(found)} row(s); run create to move them"
    assert (status, out, err) == (1, "", f"partitioned-audit: check failed: {reason}\n")  # said once

    # Seal and verify, then retire January (detach) and February (drop) under the seals.
    (sealed,) = e.json("seal", capsys=capsys)
    assert sealed["rows"] == len(found) and sealed["head"]
    head = sealed["head"]
    with time_machine.travel(LATER, tick=False):
        (plan,) = e.json("detach", "--older-than=60", capsys=capsys)
        assert (plan["applied"], partition_names(plan["partitions"])) == (False, [jan])
        (detached,) = e.json("detach", "--older-than=60", "--yes", capsys=capsys)
        dropped, verified = e.json(
            "drop", "verify", "--older-than=30", "--yes", "--expect", head, capsys=capsys
        )
    assert (detached["applied"], partition_names(detached["partitions"])) == (True, [jan])
    assert (dropped["applied"], partition_names(dropped["partitions"])) == (True, [feb])
    assert (verified["ok"], verified["rows"], verified["head"]) == (True, len(found), head)
    # The detached partition stays closed to the application; privileges has nothing to do.
    assert roles.refused(roles.app, SQL("SELECT * FROM {}").format(e.name(jan))) == (
        f"permission denied for table {jan}"
    )
    assert e.json("privileges", "--app-role", roles.app, "--read", capsys=capsys)[0]["changes"] == []
    # Without --read the application keeps nothing in the audit schema, and is still recorded.
    (closed,) = e.json("privileges", "--app-role", roles.app, capsys=capsys)
    assert closed["changes"] == [
        f"revoked EXECUTE on function {schema}.{layout.object_function}(text, text, text) from {roles.app}",
        f"revoked EXECUTE on function {schema}.{layout.context_function}(jsonb) from {roles.app}",
        *(f"revoked SELECT on view {schema}.{view} from {roles.app}" for view in sorted(layout.views)),
        f"revoked USAGE on schema {schema} from {roles.app}",
    ]
    assert roles.refused(roles.app, view_count) == f"permission denied for schema {schema}"
    roles.run(roles.app, "INSERT INTO sales.orders VALUES (9, 'nib')")
    found.append(("sales", "orders", "9", "I"))
    assert e.trail() == found
    assert e.exists(feb) is False

    # Uninstall: the triggers go, writes keep working unrecorded, the rows stay until asked.
    conn = roles.session(roles.owner)
    objects.uninstall(conn.cursor(), layout, schema)
    conn.commit()
    roles.run(roles.app, "INSERT INTO sales.orders VALUES (8, 'cap')")
    assert e.trail() == found
    objects.uninstall(conn.cursor(), layout, schema, drop_data=True)  # a detached partition stays
    conn.commit()
    conn.close()
    assert (e.exists(table), e.exists(jan)) == (False, True)  # a detached partition is a table of its own


# ---------------------------------------------------------------------------------------
# The test project with DPA_AUDIT_SCHEMA: migrate, the commands, the read models, the admin
# ---------------------------------------------------------------------------------------


def manage(
    roles: Roles, role: str, layout: Layout, schema: str, now: dt.datetime, *args: str, status: int = 0
) -> str:
    """``manage.py ARGS`` in a process of its own, logged in as ``role``, with
    ``DPA_AUDIT_SCHEMA=schema``, the clock at ``now``."""
    result = run_frozen(
        now,
        *args,
        DATABASE_URL=roles.url(role),
        DPA_DB_NAME=roles.dbname,
        DPA_AUDIT_TABLE_MANAGER=MANAGERS[layout.name],
        DPA_AUDIT_SCHEMA=schema,
    )
    assert result.returncode == status, (result.stdout[-2000:], result.stderr[-6000:])
    return result.stdout if status == 0 else result.stderr


def documents(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


@LAYOUTS
@pytest.mark.parametrize("schema", ["audit", 'Audit "Trail"; x'], ids=["audit", "hostile"])
def test_every_management_command_and_read_path_with_dpa_audit_schema(roles, layout, schema):
    owner, app = roles.owner, roles.app
    table = layout.table
    jan, feb = f"{table}_20010101_20010201", f"{table}_20010201_20010301"

    out = manage(roles, owner, layout, schema, NOW, "migrate")
    assert f"Created partition {jan}" in out and f"Created partition {feb}" in out
    assert roles.run(
        None,
        "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = %s",
        params=[table],
    ) == [(schema,)]
    roles.run(owner, *careless_grants(app, "public", "library_ext", schema))

    simulate, create, listed, listed_all, check = documents(
        manage(
            roles, owner, layout, schema, NOW, "manage_partition_tables",
            "simulate", "create", "list", "list-all", "check", "--extra-days=40", "--json",
        )
    )  # fmt: skip
    assert (simulate["status"], simulate["to_create"], create["created"]) == ("OK", [], [])
    assert partition_names(listed["partitions"]) == [jan, feb]
    assert partition_names(listed_all["partitions"]) == [jan, feb, layout.default_partition]
    assert check["reason"] == (
        f"{schema}.{table} is covered from 2001-01-15 until 2001-03-01; the default partition is empty"
    )

    lines = manage(
        roles, owner, layout, schema, NOW, "audit_privileges", "--app-role", app, "--read"
    ).splitlines()
    assert lines[-1] == f"Role {app} has no privilege on the audit objects and may read the views."
    assert f"revoked CREATE on schema {schema} from {app}" in lines
    all_but_select = ", ".join(p for p in table_privileges(roles) if p != "SELECT")
    assert f"revoked {all_but_select} on view {schema}.{layout.view} from {app}" in lines

    # The application, logged in as its own role, writes and reads through Django.
    shell = "import audit_schema_app; audit_schema_app."
    written = json.loads(
        manage(roles, app, layout, schema, NOW, "shell", "-c", shell + "write()").splitlines()[-1]
    )
    shelf = written["shelf"]
    found = json.loads(
        manage(roles, app, layout, schema, NOW, "shell", "-c", shell + f"read({shelf})").splitlines()[-1]
    )
    both = [["INSERT", "1"], ["UPDATE", "1"], ["INSERT", "2"], ["DELETE", "2"]]
    assert (
        found
        == {
            "book": [["INSERT", "111"], ["UPDATE", "111"]],
            "shelved": both,  # library_ext.shelved
            "shelf": both[:2],
            "payload": [["UPDATE", "1"]],
            "deletes": [["DELETE", "2"]],
            "history": [
                ["INSERT", {"id": [None, 1], "name": [None, "top"]}],
                ["UPDATE", {"name": ["top", "bottom"]}],
            ],
            "merged": [
                ["INSERT", {"isbn": [None, "111"], "title": [None, "Dune"]}],
                ["UPDATE", {"title": ["Dune", "Dune Messiah"]}],
            ],
            "as_of": "top",
            "instance": "bottom",
            "changes": both,
            "customer": ["[masked]"],
            "admin": [200, 200, 200],
            "admin_history_rows": 2,
        }
    )
    bob = manage(roles, owner, layout, schema, NOW, "shell", "-c", shell + "context()").splitlines()[-1]
    assert json.loads(bob) == [["UPDATE", "111"], ["UPDATE", "1"]]
    # ... and cannot touch the trail.
    for relation in (table, jan, layout.default_partition, layout.seal_table):
        for statement in ("DELETE FROM {}", "TRUNCATE {}", "SELECT * FROM {}"):
            assert roles.refused(app, SQL(statement).format(ident(schema, relation))) == (
                f"permission denied for table {relation}"
            )
    assert roles.refused(
        app, SQL("CREATE TABLE {} ()").format(ident(schema, f"{table}_20010301_20010401"))
    ) == (f"permission denied for schema {schema}")

    sealed, verified = documents(
        manage(roles, owner, layout, schema, NOW, "manage_partition_tables", "seal", "verify", "--json")
    )
    count = roles.run(owner, SQL("SELECT count(*) FROM {}").format(ident(schema, table)))[0][0]
    assert (sealed["rows"], verified["ok"], verified["rows"], verified["head"]) == (
        count,
        True,
        count,
        sealed["head"],
    )
    # The rows of today wait in the DEFAULT partition, which check reports.
    reason = f"the default partition of {schema}.{table} holds {count} row(s); run create to move them"
    error = manage(
        roles, owner, layout, schema, NOW, "manage_partition_tables", "check", "--extra-days=40", status=1
    )
    assert error.splitlines()[-1] == f"CommandError: check failed: {reason}"

    detached, dropped, verified = documents(
        manage(roles, owner, layout, schema, LATER, "manage_partition_tables", "detach", "--older-than=60", "--yes", "--json")
        + manage(
            roles, owner, layout, schema, LATER, "manage_partition_tables",
            "drop", "verify", "--older-than=30", "--yes", "--expect", sealed["head"], "--json",
        )
    )  # fmt: skip
    assert partition_names(detached["partitions"]) == [jan] and partition_names(dropped["partitions"]) == [
        feb
    ]
    assert (verified["ok"], verified["rows"]) == (True, count)
    assert manage(
        roles, owner, layout, schema, LATER, "audit_privileges", "--app-role", app, "--read", "--json"
    ) == (json.dumps({"action": "privileges", "role": app, "read": True, "changes": []}) + "\n")

    # migrate to zero takes the triggers away and keeps the rows.
    triggers = "SELECT DISTINCT tgrelid::regclass::text FROM pg_trigger WHERE tgname LIKE 'dpa\\_audit\\_%' ORDER BY 1"
    assert {"library_book", "library_ext.shelved"} <= {name for (name,) in roles.run(None, triggers)}
    manage(roles, owner, layout, schema, LATER, "migrate", "django_partitioned_audit", "zero")
    roles.run(app, "INSERT INTO library_ext.shelved (name) VALUES ('unrecorded')")
    assert roles.run(owner, SQL("SELECT count(*) FROM {}").format(ident(schema, table))) == [(count,)]
    assert roles.run(None, triggers) == []


@LAYOUTS
@pytest.mark.parametrize("schema", ["public", "audit"])
def test_uninstall_with_the_data_keeps_a_detached_partition(layout, schema):
    """A detached partition is kept with its rows, though its event id default used to tie
    it to the sequence that uninstall drops."""
    with scratch_database() as dbname:
        conn = connect(dbname, autocommit=True)
        try:
            cur = conn.cursor()
            cur.execute("CREATE TABLE invoice (id int PRIMARY KEY)")
            install(cur, layout, schema=schema)
            enable(cur, layout, TableSpec("public", "invoice", ("id",)), schema=schema)
            manager = Maintainer(conn, layout, schema)
            old = PartitionInfo.create(layout.table, dt.date(2001, 1, 1), dt.date(2001, 2, 1))
            manager.create([old])
            cur.execute("INSERT INTO invoice VALUES (1)")
            manager.detach([old])
            objects.uninstall(cur, layout, schema, drop_data=True)
            kept = SQL("SELECT to_regclass({}) IS NOT NULL, to_regclass({}) IS NOT NULL").format(
                literal(f"{schema}.{layout.table}"), literal(f"{schema}.{old.partition}")
            )
            execute(cur, kept)
            assert cur.fetchone() == (False, True)
        finally:
            conn.close()
