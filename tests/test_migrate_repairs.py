"""``migrate`` repairs what the database checks report, so those checks never stop it.

Django runs the database-tagged system checks before ``migrate``. A capture trigger that is
missing, outdated or disabled is an error for ``check --database``, and exactly what
``migrate`` reinstalls: each case here runs the real ``manage.py`` in a subprocess on a fresh
database, changes the registration or the settings between two ``migrate`` runs, and
asserts that ``check --database default`` fails, ``migrate`` passes and repairs, and
``check`` passes after it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.conf import settings

from tests.engine_db import connect, scratch_database

MANAGE = Path(__file__).resolve().parents[1] / "testproject" / "manage.py"

# Settings overlays, each a module the subprocess imports instead of testproject.settings.
OVERLAYS = {
    "base": "",
    # The shop registers only Customer at first; Order joins its registration later.
    "customer_only": """
        from shop.apps import ShopConfig

        class CustomerOnly(ShopConfig):
            trigger_audit_models = ("Customer",)

        INSTALLED_APPS = [
            "overlay_settings.CustomerOnly" if app == "shop.apps.ShopConfig" else app
            for app in INSTALLED_APPS
        ]
    """,
    "mask_name": """
        DPA_MASKED_COLUMNS = {"shop.customer": ["password", "name"]}
    """,
}


def manage(tmp_path: Path, dbname: str, overlay: str, *args: str) -> subprocess.CompletedProcess[str]:
    module = tmp_path / "overlay_settings.py"
    module.write_text(
        "from testproject.settings import *  # noqa: F403\n" + textwrap.dedent(OVERLAYS[overlay])
    )
    env = {
        **os.environ,
        "DATABASE_URL": settings.SERVER.url,
        "DPA_DB_NAME": dbname,
        "DJANGO_SETTINGS_MODULE": "overlay_settings",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(MANAGE.parent), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("DPA_EMBEDDED", None)
    return subprocess.run(
        [sys.executable, str(MANAGE), *args], env=env, capture_output=True, text=True, check=False
    )


def sql(dbname: str, *statements: str) -> list[tuple[object, ...]]:
    """Run ``statements`` as the superuser in one session; the last one's rows."""
    conn = connect(dbname, autocommit=True)
    try:
        cur = conn.cursor()
        for statement in statements:
            cur.execute(statement)
        return list(cur.fetchall()) if cur.description else []
    finally:
        conn.close()


def assert_ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout[-1500:] + result.stderr[-3000:]
    return result.stdout


def assert_check_fails(tmp_path: Path, dbname: str, overlay: str, problem: str) -> None:
    """``check --database default`` reports ``problem`` as E021 and exits non-zero."""
    result = manage(tmp_path, dbname, overlay, "check", "--database", "default")
    assert result.returncode == 1
    assert "partitioned_audit.E021" in result.stderr
    assert problem in result.stderr


@pytest.fixture
def dbname():
    with scratch_database() as name:
        yield name


def test_migrate_installs_the_triggers_of_a_newly_registered_model(tmp_path, dbname):
    assert_ok(manage(tmp_path, dbname, "customer_only", "migrate", "-v0"))
    assert sql(
        dbname, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'shop_order'::regclass AND NOT tgisinternal"
    ) == [(0,)]

    assert_check_fails(tmp_path, dbname, "base", "capture trigger dpa_audit_ins is missing")
    assert_ok(manage(tmp_path, dbname, "base", "migrate", "-v0"))
    assert_ok(manage(tmp_path, dbname, "base", "check", "--database", "default"))

    sql(dbname, "INSERT INTO shop_customer (id, name, password) VALUES (gen_random_uuid(), 'c', '')")
    sql(
        dbname,
        "INSERT INTO shop_order (customer_id, total, status, tags) SELECT id, 1, 'new', '{}' FROM shop_customer",
    )
    assert sql(dbname, "SELECT object_table FROM audit_simple ORDER BY audit_entry_created") == [
        ("shop_customer",),
        ("shop_order",),
    ]


def test_migrate_applies_a_newly_masked_column(tmp_path, dbname):
    assert_ok(manage(tmp_path, dbname, "base", "migrate", "-v0"))
    assert_check_fails(tmp_path, dbname, "mask_name", "is outdated")
    assert_ok(manage(tmp_path, dbname, "mask_name", "migrate", "-v0"))
    assert_ok(manage(tmp_path, dbname, "mask_name", "check", "--database", "default"))

    sql(dbname, "INSERT INTO shop_customer (id, name, password) VALUES (gen_random_uuid(), 'Ann', 'pw')")
    assert sql(dbname, "SELECT object_payload->>'name', object_payload->>'password' FROM audit_simple") == [
        ("[masked]", "[masked]")
    ]


def test_migrate_re_enables_a_disabled_capture_trigger(tmp_path, dbname):
    state = (
        "SELECT tgenabled FROM pg_trigger WHERE tgrelid = 'shop_order'::regclass AND tgname = 'dpa_audit_del'"
    )
    assert_ok(manage(tmp_path, dbname, "base", "migrate", "-v0"))
    installed = sql(dbname, state)
    assert installed == [("A",)]  # ENABLE ALWAYS: it fires for replication sessions too
    # A superuser steps past the guard of the capture objects on purpose.
    sql(
        dbname,
        "SELECT set_config('partitioned_audit.maintenance', 'on', false)",
        "ALTER TABLE shop_order DISABLE TRIGGER dpa_audit_del",
    )
    assert_check_fails(tmp_path, dbname, "base", "is disabled")
    assert_ok(manage(tmp_path, dbname, "base", "migrate", "-v0"))
    assert_ok(manage(tmp_path, dbname, "base", "check", "--database", "default"))
    assert sql(dbname, state) == installed


def test_migrate_gives_an_earlier_simple_install_its_login_role_column(tmp_path, dbname):
    """An install made before the simple layout kept the login role on its audit rows has
    no ``session_user_name`` column (nor views reading it): migrate adds the column, in
    place, and the captures write it from then on, with no context row outside a context."""
    assert_ok(manage(tmp_path, dbname, "base", "migrate", "-v0"))
    files = "SELECT relname, relfilenode FROM pg_class WHERE relname LIKE 'audit_simple%' AND relkind = 'r' ORDER BY 1"
    sql(
        dbname,
        "SELECT set_config('partitioned_audit.maintenance', 'on', false)",
        "DROP FUNCTION audit_simple_object_entries(text, text, text)",
        "DROP FUNCTION audit_simple_context_entries(jsonb)",
        "DROP VIEW audit_simple_keys_view, audit_simple_context_view, audit_simple_view",
        "ALTER TABLE audit_simple DROP COLUMN session_user_name",
    )
    before = sql(dbname, files)
    result = manage(tmp_path, dbname, "base", "check", "--database", "default")
    assert result.returncode == 1 and "partitioned_audit.E024" in result.stderr
    assert_ok(manage(tmp_path, dbname, "base", "migrate", "-v0"))
    assert_ok(manage(tmp_path, dbname, "base", "check", "--database", "default"))
    assert sql(dbname, files) == before  # the column was added without rewriting a partition

    sql(dbname, "INSERT INTO shop_customer (id, name, password) VALUES (gen_random_uuid(), 'c', '')")
    (login,) = sql(dbname, "SELECT session_user::text")[0]
    assert sql(dbname, "SELECT session_user_name, audit_context_id FROM audit_simple") == [(login, None)]
    assert sql(dbname, "SELECT session_user_name FROM audit_simple_view") == [(login,)]
    assert sql(dbname, "SELECT count(*) FROM audit_simple_context") == [(0,)]


def test_registration_errors_still_stop_migrate(tmp_path, dbname):
    """What migrate cannot repair (a model name that does not exist) still stops it."""
    OVERLAYS["typo"] = OVERLAYS["customer_only"].replace('("Customer",)', '("Customer", "Ordr")')
    result = manage(tmp_path, dbname, "typo", "migrate", "-v0")
    assert result.returncode == 1
    assert "Ordr" in result.stderr
    assert sql(dbname, "SELECT count(*) FROM pg_tables WHERE tablename = 'audit_simple'") == [(0,)]


def test_migrate_gives_context_partitions_made_before_it_their_storage_setting(tmp_path, dbname):
    """Context partitions without ``parallel_workers = 0`` (made by a version before it) are
    reported as W025, and ``migrate`` sets it on every one."""
    without = (
        "SELECT c.relname::text FROM pg_partition_tree('audit_simple_context') t"
        " JOIN pg_class c ON c.oid = t.relid"
        " WHERE t.isleaf AND NOT coalesce('parallel_workers=0' = ANY (c.reloptions), false) ORDER BY 1"
    )
    assert_ok(manage(tmp_path, dbname, "base", "migrate", "-v0"))
    assert sql(dbname, without) == []
    partitions = sql(
        dbname, "SELECT relid::text FROM pg_partition_tree('audit_simple_context') WHERE isleaf ORDER BY 1"
    )
    assert len(partitions) >= 2  # the DEFAULT and this month's at least
    sql(
        dbname,
        "SELECT set_config('partitioned_audit.maintenance', 'on', false)",
        *(f"ALTER TABLE {name} RESET (parallel_workers)" for (name,) in partitions),
    )
    assert sql(dbname, without) == partitions
    warned = manage(tmp_path, dbname, "base", "check", "--database", "default")
    assert "partitioned_audit.W025" in warned.stderr + warned.stdout
    assert ", ".join(name for (name,) in partitions) in warned.stderr + warned.stdout
    assert_ok(manage(tmp_path, dbname, "base", "migrate", "-v0"))
    checked = manage(tmp_path, dbname, "base", "check", "--database", "default")
    assert checked.returncode == 0 and "W025" not in checked.stderr + checked.stdout
    assert sql(dbname, without) == []
