"""A project that registers the audit entries on admin.site itself keeps its registration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SETUP = """
import django
from django.conf import settings

settings.configure(
    INSTALLED_APPS={apps!r},
    DATABASES={{"default": {{"ENGINE": "django.db.backends.postgresql", "NAME": "unused"}}}},
    USE_TZ=True,
)
django.setup()
from django.contrib import admin
from django_partitioned_audit.models import SimpleAuditEntry
print(type(admin.site._registry[SimpleAuditEntry]).__name__)
"""
BASE = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
]


def registered(apps: list[str]) -> subprocess.CompletedProcess[str]:
    code = SETUP.format(apps=apps)
    env_path = f"{ROOT / 'testproject'}:{ROOT}"
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": env_path},
        check=False,
    )


def test_the_projects_own_registration_wins_when_the_admin_comes_first():
    done = registered(["django.contrib.admin", *BASE, "django_partitioned_audit", "own_admin"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "OwnAuditAdmin"


def test_without_a_registration_of_its_own_the_project_gets_the_audit_admin():
    done = registered(["django.contrib.admin", *BASE, "django_partitioned_audit"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "SimpleAuditEntryAdmin"


def test_with_the_admin_listed_after_this_app_a_second_registration_is_refused():
    """Documented in docs/admin.md: autodiscovery then imports this app's admin first."""
    done = registered([*BASE, "django_partitioned_audit", "django.contrib.admin", "own_admin"])
    assert done.returncode != 0 and "AlreadyRegistered" in done.stderr


def test_without_the_admin_app_importing_the_mixin_registers_nothing():
    code = SETUP.format(apps=[*BASE, "django_partitioned_audit"]).replace(
        "print(type(admin.site._registry[SimpleAuditEntry]).__name__)",
        # admin.site itself needs the admin app: registering on it at import would raise
        "import django_partitioned_audit.admin\nprint('imported')",
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": f"{ROOT / 'testproject'}:{ROOT}"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "imported"
