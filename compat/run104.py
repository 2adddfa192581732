"""``make compat``: 1.0.4's own test suite, unmodified, against this package.

Downloads the sdist of django-partitioned-audit 1.0.4 from PyPI (once, into ``.compat/``),
copies its tests and pytest.ini beside a settings module that points its test project at
the suite's database server (``$DATABASE_URL``, else 127.0.0.1:5432, else an embedded
PostgreSQL), and runs them twice, as 1.0.4's tox.ini does: with the advanced layout, then
with the simple one, README examples included (``TEST_README=1``). 1.0.4's own package is
left out of the path, so every import of ``django_partitioned_audit`` is this package.
Prints ``N passed, M failed`` per pass and in all; the tests that cannot pass by design
are named in docs/upgrading.md.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".compat"
VERSION = "1.0.4"
SDIST = f"django-partitioned-audit-{VERSION}"
ADVANCED = "django_partitioned_audit.audit_table.advanced_audit_table_manager.AdvancedAuditTableManager"

SETTINGS = '''"""1.0.4's test settings (config.settings) on the server make compat found."""
import sys

sys.path.insert(0, {testproject!r})

from config.settings import *  # noqa: F403,E402

from testproject.dbserver import get_server  # noqa: E402

DATABASES = {{
    "default": {{
        **get_server().django_database("compat104_app"),
        "ATOMIC_REQUESTS": True,
        "TEST": {{"NAME": "compat104_test"}},
    }}
}}
'''


def sdist() -> Path:
    unpacked = WORK / SDIST
    if not unpacked.exists():
        WORK.mkdir(exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                "--dest",
                str(WORK),
                f"django-partitioned-audit=={VERSION}",
            ],
            check=True,
        )
        with tarfile.open(WORK / f"{SDIST}.tar.gz") as archive:
            archive.extractall(WORK, filter="data")
    return unpacked


def prepare(source: Path) -> Path:
    run = WORK / "run"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    shutil.copytree(source / "tests", run / "tests")
    shutil.copy(source / "pytest.ini", run / "pytest.ini")
    (run / "compat104_settings.py").write_text(SETTINGS.format(testproject=str(ROOT / "testproject")))
    return run


def one_pass(run: Path, name: str, manager: str | None) -> tuple[int, int]:
    env = {k: v for k, v in os.environ.items() if k != "DPA_AUDIT_TABLE_MANAGER"}
    if manager:
        env["DPA_AUDIT_TABLE_MANAGER"] = manager
    env.update(
        DJANGO_SETTINGS_MODULE="compat104_settings",
        PYTHONPATH=os.pathsep.join([str(run), str(run / "tests" / "app_django")]),
        TEST_README="1",
    )
    report = run / f"{name}.xml"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "--tb=line",
            "--continue-on-collection-errors",
            "-o",
            "DJANGO_SETTINGS_MODULE=compat104_settings",
            f"--junitxml={report}",
            "./tests/",
        ],
        cwd=run,
        env=env,
        check=False,
    )
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    total, failures, errors, skipped = (
        int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")
    )
    failed = failures + errors
    print(f"1.0.4 suite, {name} pass: {total - failed - skipped} passed, {failed} failed, {skipped} skipped")
    return total - failed - skipped, failed


def main() -> int:
    run = prepare(sdist())
    results = [one_pass(run, "advanced", ADVANCED), one_pass(run, "simple", None)]
    passed, failed = (sum(r[i] for r in results) for i in (0, 1))
    print(f"1.0.4 suite, both passes: {passed} passed, {failed} failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
