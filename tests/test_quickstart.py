"""The 1.0.4 README quick start, step by step, on a fresh database, with either layout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from tests.conftest import MANAGERS
from tests.engine_db import scratch_database

MANAGE = Path(__file__).resolve().parents[1] / "testproject" / "manage.py"


def manage(dbname: str, layout: str, *args: str) -> str:
    env = {
        **os.environ,
        "DATABASE_URL": settings.SERVER.url,  # the server of this run, embedded or not
        "DPA_DB_NAME": dbname,
        "DPA_AUDIT_TABLE_MANAGER": MANAGERS[layout],
    }
    env.pop("DPA_EMBEDDED", None)
    result = subprocess.run(
        [sys.executable, str(MANAGE), *args], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.parametrize("layout", ["simple", "advanced"])
def test_readme_quick_start(layout):
    table = "audit_simple" if layout == "simple" else "logged_actions"
    with scratch_database() as dbname:
        # 2. migrate creates the partitioned table (and, in 2.0, this month's and next month's partitions).
        out = manage(dbname, layout, "migrate")
        assert "Applying django_partitioned_audit.0001_initial... OK" in out
        assert f"Created partition {table}_" in out
        # 3. create --extra-days=60 prints 1.0.4's table and creates what is missing.
        out = manage(dbname, layout, "manage_partition_tables", "create", "--extra-days=60")
        lines = out.splitlines()
        assert lines[1].split() == ["|", "table_name", "|", "from_date", "|", "to_date", "|", "status", "|"]
        assert any("✓ exists" in line for line in lines) and any("to create" in line for line in lines)
        assert lines[-1].startswith("Created ") and "partition(s)" in lines[-1]
        # 4./5. registered models (shop, library) got triggers at migrate: writes are audited.
        out = manage(
            dbname,
            layout,
            "shell",
            "-c",
            "from library.models import Book; from django_partitioned_audit.models import "
            f"{'SimpleAuditEntry' if layout == 'simple' else 'AdvancedAuditEntry'} as E; "
            "b = Book.objects.create(isbn='1', title='t'); b.title = 'u'; b.save(); b.delete(); "
            "print(''.join('I' if e.is_insert() else 'U' if e.is_update() else 'D' if e.is_delete() else '?'"
            " for e in E.objects.filter_model(Book)))",
        )
        assert out.strip().splitlines()[-1] == "IUD"
        # migrate again changes nothing.
        assert "Created partition" not in manage(dbname, layout, "migrate")
