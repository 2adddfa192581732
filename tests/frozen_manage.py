"""Run ``testproject/manage.py`` with the clock frozen: ``python frozen_manage.py ISO-INSTANT ARGS...``.

Only Python's clock is frozen (the server's ``now()`` is not), which is what the partition
planning reads: "today" is computed in Python, in UTC.
"""

from __future__ import annotations

import datetime as dt
import os
import runpy
import subprocess
import sys
from pathlib import Path

import time_machine

MANAGE = Path(__file__).resolve().parents[1] / "testproject" / "manage.py"


def run_frozen(now: dt.datetime, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``manage.py ARGS`` in a process of its own with the clock frozen at ``now``; ``env``
    adds to (and overrides) this process's environment. The embedded-server switch is
    dropped: callers name the run's server in ``DATABASE_URL``."""
    environ = {k: v for k, v in os.environ.items() if k != "DPA_EMBEDDED"}
    return subprocess.run(
        [sys.executable, __file__, now.isoformat(), *args],
        env={**environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )


if __name__ == "__main__":
    instant = dt.datetime.fromisoformat(sys.argv[1])
    with time_machine.travel(instant, tick=False):
        sys.argv = [str(MANAGE), *sys.argv[2:]]
        sys.path.insert(0, str(MANAGE.parent))
        runpy.run_path(str(MANAGE), run_name="__main__")
