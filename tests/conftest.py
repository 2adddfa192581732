"""Fixtures shared by the whole suite. The database server is chosen by testproject.dbserver."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings as dj_settings

from django_partitioned_audit.conf import ADVANCED_MANAGER, SIMPLE_MANAGER
from django_partitioned_audit.models import AdvancedAuditEntry, SimpleAuditEntry

MANAGERS = {"simple": SIMPLE_MANAGER, "advanced": ADVANCED_MANAGER}
READ_MODELS = {"simple": SimpleAuditEntry, "advanced": AdvancedAuditEntry}


def _server_version() -> str:
    server = dj_settings.SERVER
    dsn = server.dsn("postgres")
    if dj_settings.DRIVER == "psycopg":
        import psycopg

        with psycopg.connect(dsn) as conn:
            return str(conn.execute("SHOW server_version").fetchone()[0])
    import psycopg2

    conn = psycopg2.connect(dsn)
    try:
        cur = conn.cursor()
        cur.execute("SHOW server_version")
        return str(cur.fetchone()[0])
    finally:
        conn.close()


def pytest_report_header(config: Any) -> str:
    import django
    from django.db import connection

    server = dj_settings.SERVER
    return (
        f"partitioned-audit: Django {django.get_version()}, driver={dj_settings.DRIVER} (Django backend uses "
        f"{'psycopg 3' if connection.Database.__name__ == 'psycopg' else 'psycopg2'}), "
        f"server={server.origin} PostgreSQL {_server_version()}"
    )


#: The tests that exercise the engine alone (no Django code runs in them but the test
#: set-up): marked ``engine``. ``make test`` runs them with each driver and server under the
#: newest Django; the run under the older Django LTS leaves them out (``-m "not engine"``).
ENGINE_ONLY = (
    "tests/attacks/",
    "tests/test_archive.py",
    "tests/test_bench_scale.py",
    "tests/test_engine.py",
    "tests/test_engine_standalone.py",
)


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    """Scratch databases are dropped in the background (tests.engine_db): wait for the
    last ones, and fail the run if one could not be dropped."""
    from tests.engine_db import DROPPER

    failed = DROPPER.wait()
    if failed:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print("\nscratch databases not dropped:\n" + "\n".join(failed))


@pytest.hookimpl(tryfirst=True)  # before -m selects by marker
def pytest_collection_modifyitems(config: Any, items: list[pytest.Item]) -> None:
    """``@pytest.mark.pg(">=15")``: a version-specific test is reported as skipped, with the
    server version in the reason, when the server does not match. And the ``engine`` mark
    of :data:`ENGINE_ONLY`."""
    from packaging.specifiers import SpecifierSet

    version = _server_version().split()[0]
    for item in items:
        if item.nodeid.startswith(ENGINE_ONLY):
            item.add_marker(pytest.mark.engine)
        marker = item.get_closest_marker("pg")
        if marker and version not in SpecifierSet(marker.args[0]):
            item.add_marker(
                pytest.mark.skip(reason=f"needs PostgreSQL {marker.args[0]}, server is {version}")
            )


@pytest.fixture
def dbname() -> Iterator[str]:
    """A scratch database of the test's own, reached with the raw driver (tests/engine_db.py)."""
    from tests.engine_db import scratch_database

    with scratch_database() as name:
        yield name


@pytest.fixture
def conn(dbname: str) -> Iterator[Any]:
    """A raw connection to the test's scratch database, rolled back and closed at the end."""
    from tests.engine_db import connect

    c = connect(dbname)
    yield c
    c.rollback()
    c.close()


@pytest.fixture
def capture_level() -> str:
    """The ``DPA_CAPTURE_LEVEL`` the ``layout`` fixture installs: the project's (the
    environment's ``DPA_CAPTURE_LEVEL``, see testproject/settings.py). A module whose tests
    must hold at both levels overrides it with :data:`BOTH_LEVELS`."""
    from django_partitioned_audit.conf import capture_level as configured

    return configured()


#: ``capture_level = pytest.fixture(params=BOTH_LEVELS)(both_levels)`` in a test module runs
#: each of its tests at both capture levels.
BOTH_LEVELS = ("statement", "row")


def both_levels(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["simple", "advanced"])
def layout(request: pytest.FixtureRequest, settings: Any, db: None, capture_level: str) -> Iterator[str]:
    """Run the test once per layout; triggers are reinstalled inside the test's transaction."""
    from django_partitioned_audit.sync import sync

    settings.DPA_AUDIT_TABLE_MANAGER = MANAGERS[request.param]
    settings.DPA_CAPTURE_LEVEL = capture_level
    sync("default", verbosity=0)
    yield request.param


@pytest.fixture
def read_model(layout: str) -> Any:
    return READ_MODELS[layout]
