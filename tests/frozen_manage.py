"""Run ``testproject/manage.py`` with the clock frozen: ``python frozen_manage.py ISO-INSTANT ARGS...``.

Only Python's clock is frozen (the server's ``now()`` is not), which is what the partition
planning reads: "today" is computed in Python, in UTC.
"""

from __future__ import annotations

import datetime as dt
import runpy
import sys
from pathlib import Path

import time_machine

MANAGE = Path(__file__).resolve().parents[1] / "testproject" / "manage.py"

if __name__ == "__main__":
    instant = dt.datetime.fromisoformat(sys.argv[1])
    with time_machine.travel(instant, tick=False):
        sys.argv = [str(MANAGE), *sys.argv[2:]]
        sys.path.insert(0, str(MANAGE.parent))
        runpy.run_path(str(MANAGE), run_name="__main__")
