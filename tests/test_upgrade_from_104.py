"""A database written by django-partitioned-audit 1.0.4 upgrades in place with ``migrate``.

1.0.4 runs for real, from PyPI, in its own virtualenv (``.venv-104``, built on first use).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from tests.engine_db import scratch_database

ROOT = Path(__file__).resolve().parents[1]
LEGACY_VENV = ROOT / ".venv-104"
PHASE = Path(__file__).resolve().parent / "legacy104" / "phase.py"
REQUIREMENTS = ["django-partitioned-audit==1.0.4", "Django>=4.2,<5.0", "psycopg2-binary>=2.9"]


@pytest.fixture(scope="session")
def legacy_python() -> Path:
    python = LEGACY_VENV / "bin" / "python"
    marker = LEGACY_VENV / ".installed"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "venv", str(LEGACY_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *REQUIREMENTS], check=True)
        marker.touch()
    return python


def _run(python: Path, dbname: str, layout: str, *args: str) -> str:
    env = {
        **os.environ,
        "LEGACY_DATABASE_URL": settings.SERVER.url,
        "LEGACY_DB": dbname,
        "LEGACY_LAYOUT": layout,
        "PYTHONPATH": "",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [str(python), str(PHASE), *args], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.parametrize("layout", ["simple", "advanced"])
def test_rows_written_by_104_stay_readable(legacy_python, layout):
    with scratch_database() as dbname:
        _run(legacy_python, dbname, layout, "write")
        found = json.loads(_run(Path(sys.executable), dbname, layout, "read", "more").splitlines()[-1])
    entries = found["entries"]
    ops = [e["op"] for e in entries]
    rows = [e["row"] for e in entries]
    assert ops == ["I", "U", "I", "D", "I"]
    if layout == "simple":
        # 1.0.4 stored to_jsonb(): values were typed already.
        assert rows[0] == {"id": 1, "name": "first", "qty": 42, "flag": True}
    else:
        # 1.0.4 stored hstore: every old value is text, and stays readable as such.
        assert rows[0] == {"id": "1", "name": "first", "qty": "42", "flag": "t"}
        assert rows[1]["name"] == "renamed"
    assert rows[3]["name"] == "second" and rows[3]["qty"] is None
    # A row written by 2.0 after the upgrade is typed in both layouts.
    assert rows[4] == {"id": 3, "name": "after upgrade", "qty": 7, "flag": False}
    # filter_payload finds the old row by its typed or its text value.
    assert [e["qty42"] for e in entries][:1] == [True] and entries[0]["qty42text"]
    # The partition 1.0.4 created is adopted (retention may retire it later), next to the
    # DEFAULT partition and the partitions migrate adds.
    table = "audit_simple" if layout == "simple" else "logged_actions"
    comments = dict(found["partitions"])
    assert comments.pop(f"{table}_default") is None
    assert len(comments) >= 2 and set(comments.values()) == {"partitioned_audit partition"}
