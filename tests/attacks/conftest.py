"""A real two-role set-up on a scratch database: an owner that installs, an application role.

The owner is an ordinary role (not a superuser) that owns the audit objects and the audited
table; the application role owns nothing. Both are real logins, so the server checks every
privilege as it does for the deployed roles. The set-up is the one docs/security.md
recommends, including its careless first step: the owner grants the application everything
on every table of the schema, now and in future (``GRANT ... ON ALL TABLES``, ``ALTER DEFAULT
PRIVILEGES``), and then runs ``partitioned-audit privileges --app-role ... --read``, which
must take back all of it on the audit objects.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.conf import settings

from partitioned_audit import ADVANCED, SIMPLE, TableSpec, cli, enable, install
from partitioned_audit.layouts import Layout
from partitioned_audit.sql import SQL, execute, ident, literal
from tests.engine_db import connect, scratch_database

PASSWORD = "attack-suite"  # only a login secret for scratch roles; trust auth ignores it


@dataclass
class TwoRoles:
    dbname: str
    layout: Layout
    owner: str
    app: str
    #: The capture level of the audited tables (``TableSpec.row_level``).
    row_level: bool = False

    def spec(self, table: str = "invoice", **kwargs: Any) -> TableSpec:
        """The spec of an audited table keyed on ``id``, at this set-up's capture level."""
        return TableSpec("public", table, ("id",), row_level=self.row_level, **kwargs)

    def session(self, role: str) -> Any:
        """A new connection logged in as ``role`` (autocommit off)."""
        return connect(self.dbname, login=(role, PASSWORD))

    def owner_session(self) -> Any:
        """A new connection as the owner of the audit objects."""
        return self.session(self.owner)

    def run(self, role: str | None, *statements: str) -> list[tuple[Any, ...]]:
        """Run ``statements`` as ``role`` (None: the superuser) and commit; the last one's rows."""
        conn = connect(self.dbname) if role is None else self.session(role)
        try:
            cur = conn.cursor()
            for statement in statements:
                cur.execute(statement)
            rows = list(cur.fetchall()) if cur.description else []
            conn.commit()
            return rows
        finally:
            conn.close()

    def cli(self, *args: str, role: str | None = None) -> int:
        """Run ``partitioned-audit`` on this database as ``role`` (the owner by default)."""
        dsn = settings.SERVER.dsn(self.dbname, (role or self.owner, PASSWORD))
        return cli.main(["--dsn", dsn, "--layout", self.layout.name, *args])

    def install_guard(self) -> None:
        """What ``migrate`` as a superuser does: install the guard's event triggers, then
        recompute the capture triggers' arguments."""
        conn = connect(self.dbname)
        try:
            install(conn.cursor(), self.layout)
            enable(conn.cursor(), self.layout, self.spec())
            conn.commit()
        finally:
            conn.close()

    def casts_mode(self) -> set[str]:
        """The fourth argument of the capture triggers on invoice (``TableSpec.casts_mode``)."""
        rows = self.run(
            None,
            "SELECT DISTINCT split_part(encode(tgargs, 'escape'), '\\000', 4) FROM pg_trigger"
            " WHERE tgrelid = 'public.invoice'::regclass AND tgname LIKE 'dpa_audit%'",
        )
        return {row[0] for row in rows}

    def trail(self) -> list[tuple[Any, ...]]:
        """Every audit row, read as the owner, in event order."""
        conn = self.owner_session()
        try:
            cur = conn.cursor()
            statement = SQL("SELECT * FROM {} ORDER BY {}")
            execute(
                cur, statement.format(ident("public", self.layout.table), ident(self.layout.event_column))
            )
            return list(cur.fetchall())
        finally:
            conn.close()


#: Every attack runs against both layouts at both capture levels.
SETUPS = [(layout, row) for layout in (SIMPLE, ADVANCED) for row in (False, True)]


def setup_id(setup: tuple[Layout, bool]) -> str:
    return f"{setup[0].name}-{'row' if setup[1] else 'statement'}"


@pytest.fixture(params=SETUPS, ids=setup_id)
def two_roles(request: pytest.FixtureRequest) -> Iterator[TwoRoles]:
    tag = uuid.uuid4().hex[:8]
    owner, app = f"dpa_owner_{tag}", f"dpa_app_{tag}"
    admin = connect("postgres", autocommit=True)
    for role in (owner, app):
        execute(
            admin.cursor(), SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(ident(role), literal(PASSWORD))
        )
    try:
        with scratch_database() as dbname:
            su = connect(dbname, autocommit=True)
            execute(su.cursor(), SQL("GRANT CREATE ON SCHEMA public TO {}").format(ident(owner)))
            su.close()
            setup = TwoRoles(dbname, *request.param[:1], owner, app, row_level=request.param[1])
            conn = setup.session(owner)
            cur = conn.cursor()
            cur.execute("CREATE TABLE invoice (id int PRIMARY KEY, amount numeric)")
            install(cur, setup.layout)
            enable(cur, setup.layout, setup.spec())
            for grant in (
                "GRANT ALL ON ALL TABLES IN SCHEMA public TO {}",
                "GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {}",
                "GRANT ALL ON ALL FUNCTIONS IN SCHEMA public TO {}",
                "ALTER DEFAULT PRIVILEGES GRANT ALL ON TABLES TO {}",
            ):
                execute(cur, SQL(grant).format(ident(app)))
            conn.commit()
            conn.close()
            assert setup.cli("privileges", "--app-role", app, "--read") == 0
            # One ordinary write, so the trail is not empty when an attack tries to alter it.
            conn = setup.session(app)
            conn.cursor().execute("INSERT INTO invoice VALUES (1, 10)")
            conn.commit()
            conn.close()
            yield setup
    finally:
        # Roles a test made for itself are named after the application role.
        cur = admin.cursor()
        cur.execute("SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s) ORDER BY 1 DESC", [app])
        for role in [row[0] for row in cur.fetchall()] + [owner]:
            execute(admin.cursor(), SQL("DROP ROLE IF EXISTS {}").format(ident(role)))
        admin.close()


def refused(conn: Any, statement: str) -> str:
    """Run ``statement`` and return the server's error message; fail if it succeeded."""
    cur = conn.cursor()
    try:
        cur.execute(statement)
    except Exception as exc:  # noqa: BLE001 - whichever driver's error class
        conn.rollback()
        return str(exc).splitlines()[0]
    conn.rollback()
    raise AssertionError(f"the server accepted: {statement}")


@dataclass
class SuperuserAudit(TwoRoles):
    """The audit objects installed by a superuser, who owns them, with the guard; ``app`` is
    an ordinary role that owns the audited table (not the audit objects)."""

    def owner_session(self) -> Any:
        return connect(self.dbname)


@pytest.fixture(params=SETUPS, ids=setup_id)
def superuser_audit(request: pytest.FixtureRequest) -> Iterator[SuperuserAudit]:
    tag = uuid.uuid4().hex[:8]
    table_owner = f"dpa_tblowner_{tag}"
    admin = connect("postgres", autocommit=True)
    execute(
        admin.cursor(),
        SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(ident(table_owner), literal(PASSWORD)),
    )
    try:
        with scratch_database() as dbname:
            su = connect(dbname)
            cur = su.cursor()
            cur.execute("SELECT current_user")
            superuser = cur.fetchone()[0]
            execute(cur, SQL("GRANT CREATE ON SCHEMA public TO {}").format(ident(table_owner)))
            su.commit()
            setup = SuperuserAudit(
                dbname, request.param[0], superuser, table_owner, row_level=request.param[1]
            )
            setup.run(table_owner, "CREATE TABLE invoice (id int PRIMARY KEY, amount numeric)")
            install(cur, setup.layout)
            enable(cur, setup.layout, setup.spec())
            su.commit()
            su.close()
            setup.run(table_owner, "INSERT INTO invoice VALUES (1, 10)")
            yield setup
    finally:
        execute(admin.cursor(), SQL("DROP ROLE IF EXISTS {}").format(ident(table_owner)))
        admin.close()
