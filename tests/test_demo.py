"""``make demo`` end to end, on the suite's own server: it must show who changed what."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings

DEMO = Path(__file__).resolve().parents[1] / "testproject" / "demo.py"


def test_the_demo_shows_each_writer_the_changed_fields_a_history_and_catches_a_rewrite():
    env = {**os.environ, "DATABASE_URL": settings.SERVER.url, "COLUMNS": "200"}
    env.pop("DPA_EMBEDDED", None)  # the suite's server, embedded or not, is reached by its URL
    done = subprocess.run([sys.executable, str(DEMO)], capture_output=True, text=True, env=env, timeout=300)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert out.index("drops and re-creates its own database") < out.index("1. migrate")
    assert "username=ada request_id=req-7f3a" in out  # the request, through the middleware
    assert "job=billing.capture_payment" in out  # the job
    assert "dba=carol source=psql ticket=OPS-42" in out  # psql's SET LOCAL
    assert "status: new → paid" in out and "total: 19.9 → 39.8, status: paid → refunded" in out
    assert "password=[masked]" in out
    assert "as_of() just after it was placed: status='new' total=19.90" in out
    assert "as_of() just after it was paid: status='paid' total=19.90" in out
    assert "as_of() now: None (deleted)" in out
    assert "verify exits 1" in out
