"""Exit codes that monitoring can trust: 0 intact or covered, 1 altered or short, 2 could not tell.

Each case runs the real ``manage.py manage_partition_tables`` in a subprocess (the clock
frozen) and the ``partitioned-audit`` CLI, on a scratch database, and checks the status and
that stderr is one line with no traceback.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import uuid

import pytest
from django.conf import settings

from partitioned_audit import SIMPLE
from partitioned_audit.cli import main
from partitioned_audit.sealing import FREEZE_TRIGGER
from partitioned_audit.sql import SQL, execute, ident
from tests.engine_db import connect, scratch_database
from tests.frozen_manage import run_frozen

NOW = dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC)


def manage(dbname: str, *args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_frozen(NOW, *args, DATABASE_URL=url or settings.SERVER.url, DPA_DB_NAME=dbname)


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr
    assert len(lines) == 1, stderr
    return lines[0]


def superuser(dbname: str, *statements: str) -> None:
    conn = connect(dbname, autocommit=True)
    try:
        for statement in statements:
            conn.cursor().execute(statement)
    finally:
        conn.close()


def migrated(dbname: str, write: bool) -> str:
    """``migrate`` on ``dbname``; with ``write``, one audited write, sealed."""
    result = manage(dbname, "migrate", "-v0")
    assert result.returncode == 0, result.stderr
    if write:
        # The server's clock dates the row, so it may land in the DEFAULT partition, which
        # the seals cover like any other; the coverage tests use a database without rows.
        superuser(dbname, "INSERT INTO library_book (isbn, title) VALUES ('1', 't')")
        result = manage(dbname, "manage_partition_tables", "seal")
        assert result.returncode == 0, result.stderr
    return dbname


@pytest.fixture(scope="module")
def project_db():
    """A project database after ``migrate``, no audit row."""
    with scratch_database() as dbname:
        yield migrated(dbname, write=False)


@pytest.fixture
def sealed_db():
    """A project database after ``migrate`` with one sealed audit row."""
    with scratch_database() as dbname:
        yield migrated(dbname, write=True)


@pytest.fixture
def no_privilege_role():
    role = f"dpa_nobody_{uuid.uuid4().hex[:8]}"
    admin = connect("postgres", autocommit=True)
    execute(admin.cursor(), SQL("CREATE ROLE {} LOGIN").format(ident(role)))
    try:
        yield role
    finally:
        execute(admin.cursor(), SQL("DROP ROLE {}").format(ident(role)))
        admin.close()


def as_role(role: str) -> str:
    """The run's server URL, logged in as ``role`` (trust or password-less login)."""
    db = settings.SERVER.django_database()
    host = db["HOST"] or "127.0.0.1"
    port = db["PORT"] or "5432"
    if str(host).startswith("/"):
        return f"postgresql://{role}@/{db['NAME']}?host={host}&port={port}"
    return f"postgresql://{role}@{host}:{port}/{db['NAME']}"


def test_covered_exits_0(project_db):
    result = manage(project_db, "manage_partition_tables", "check", "--extra-days=10")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: public.audit_simple is covered from ")
    assert result.stderr == ""


def test_short_coverage_exits_1_and_says_so_once(project_db):
    result = manage(project_db, "manage_partition_tables", "check", "--extra-days=400")
    assert result.returncode == 1
    assert result.stdout == ""
    assert one_line(result.stderr).startswith(
        "CommandError: check failed: partitions of public.audit_simple end on "
    )


def test_not_installed_exits_2(project_db):
    for action in ("verify", "check", "seal", "list"):
        result = manage(project_db, "manage_partition_tables", action, "--layout", "advanced")
        assert result.returncode == 2, (action, result.stderr)
        assert one_line(result.stderr) == (
            "CommandError: the advanced layout is not installed here: audit table "
            "public.logged_actions does not exist; install the audit objects first "
            "(python manage.py migrate, or partitioned_audit.install())"
        )


def test_no_privilege_exits_2(project_db, no_privilege_role):
    result = manage(project_db, "manage_partition_tables", "verify", url=as_role(no_privilege_role))
    assert result.returncode == 2, result.stderr
    assert one_line(result.stderr).startswith("CommandError: ")
    assert "permission denied" in result.stderr


def test_no_connection_exits_2(project_db):
    result = manage(
        project_db, "manage_partition_tables", "verify", url="postgresql://postgres@127.0.0.1:1/nowhere"
    )
    assert result.returncode == 2
    assert one_line(result.stderr).startswith("CommandError: database 'default': ")


@pytest.mark.parametrize(
    "args, message",
    [
        (("verify", "--expect", "xyz"), "CommandError: a head digest is 64 hexadecimal digits, got 'xyz'"),
        (("check", "--extra-days=-1"), "CommandError: --extra-days must be zero or more, got -1"),
    ],
)
def test_bad_arguments_exit_2(project_db, args, message):
    result = manage(project_db, "manage_partition_tables", *args)
    assert result.returncode == 2
    assert one_line(result.stderr) == message


def test_unknown_action_exits_2(project_db):
    result = manage(project_db, "manage_partition_tables", "verfy")
    assert result.returncode == 2
    assert "invalid choice: 'verfy'" in result.stderr
    assert "Traceback" not in result.stderr


def test_intact_exits_0_and_altered_exits_1_naming_the_chunk_once(sealed_db):
    result = manage(sealed_db, "manage_partition_tables", "verify")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: 1 seal(s) cover events 1..1, 1 row(s) present; head: ")
    assert result.stderr == ""
    # A superuser steps past the guard and the freeze of sealed rows, and rewrites one.
    superuser(
        sealed_db,
        "SELECT set_config('partitioned_audit.maintenance', 'on', false)",
        f"ALTER TABLE audit_simple DISABLE TRIGGER {FREEZE_TRIGGER}",
        "UPDATE audit_simple SET object_payload = '{}'",
        f"ALTER TABLE audit_simple ENABLE ALWAYS TRIGGER {FREEZE_TRIGGER}",
    )
    result = manage(sealed_db, "manage_partition_tables", "verify")
    assert result.returncode == 1
    assert one_line(result.stderr).startswith("CommandError: verify failed: changed: seal ")
    assert result.stdout == ""  # one finding, said once


# -- the same statuses from the standalone CLI --------------------------------------------------


@pytest.fixture
def engine_db():
    with scratch_database() as dbname:
        from partitioned_audit import install

        conn = connect(dbname, autocommit=True)
        install(conn.cursor(), SIMPLE)
        conn.close()
        yield dbname


def cli(dbname: str, *args: str, login: tuple[str, str] | None = None) -> int:
    return main(["--dsn", settings.SERVER.dsn(dbname, login), *args])


def test_cli_statuses(engine_db, no_privilege_role, capsys):
    assert cli(engine_db, "seal", "verify") == 0
    capsys.readouterr()
    assert cli(engine_db, "--layout", "advanced", "verify") == 2
    assert one_line(capsys.readouterr().err).startswith(
        "partitioned-audit: the advanced layout is not installed here"
    )
    assert cli(engine_db, "verify", login=(no_privilege_role, "")) == 2
    err = one_line(capsys.readouterr().err)
    assert err == "partitioned-audit: permission denied for function dpa_simple_verify"
    assert cli(engine_db, "verify", "--expect", "00") == 2
    assert one_line(capsys.readouterr().err) == (
        "partitioned-audit: a head digest is 64 hexadecimal digits, got '00'"
    )
    assert main(["--dsn", "postgresql://postgres@127.0.0.1:1/nowhere", "verify"]) == 2
    assert one_line(capsys.readouterr().err).startswith("partitioned-audit: cannot connect: ")
    with pytest.raises(SystemExit) as exited:
        cli(engine_db, "verfy")
    assert exited.value.code == 2


# -- output that tells the state after the action ----------------------------------------------


def test_create_reports_what_it_created_and_no_gap_it_filled(engine_db, capsys):
    import datetime as dt

    import time_machine

    from partitioned_audit.partitioning.maintenance import Maintainer
    from partitioned_audit.partitioning.ranges import PartitionInfo

    conn = connect(engine_db, autocommit=True)
    maintainer = Maintainer(conn, SIMPLE)
    january = PartitionInfo.create("audit_simple", dt.date(2025, 1, 1), dt.date(2025, 2, 1))
    february = PartitionInfo.create("audit_simple", dt.date(2025, 2, 1), dt.date(2025, 3, 1))
    march = PartitionInfo.create("audit_simple", dt.date(2025, 3, 1), dt.date(2025, 4, 1))
    maintainer.create([january, march])
    conn.close()
    with time_machine.travel(dt.datetime(2025, 1, 15, 9, tzinfo=dt.UTC), tick=False):
        assert cli(engine_db, "simulate", "--extra-days=60") == 0
        simulated = capsys.readouterr()
        assert "|  audit_simple_20250201_20250301  |  2025-02-01  |  2025-03-01  |  ❌ to create  |" in (
            simulated.out
        )
        assert simulated.err == (
            "warning: gap from 2025-02-01 to 2025-03-01 between audit_simple_20250101_20250201 "
            "and audit_simple_20250301_20250401\n"
        )
        assert cli(engine_db, "create", "--extra-days=60") == 0
        created = capsys.readouterr()
    assert f"|  {february.partition}  |  2025-02-01  |  2025-03-01  |  ✓ created  |" in created.out
    assert "to create" not in created.out
    assert created.out.endswith("Created 1 partition(s); moved 0 row(s) out of the default partition.\n")
    assert created.err == ""
