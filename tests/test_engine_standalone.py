"""The engine stands alone: no Django import, and it works on a plain DB-API connection."""

from __future__ import annotations

import subprocess
import sys


def test_engine_imports_no_django():
    code = (
        "import sys, pkgutil, importlib, partitioned_audit\n"
        "for m in pkgutil.walk_packages(partitioned_audit.__path__, 'partitioned_audit.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(n for n in sys.modules if n == 'django' or n.startswith('django.'))\n"
        "print(len(list(pkgutil.walk_packages(partitioned_audit.__path__))))\n"
        "sys.exit('django imported: ' + ', '.join(bad) if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) >= 5  # the walk really imported the engine's modules
