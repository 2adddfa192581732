"""Settings shared by the 1.0.4 run and the 2.0 run of the upgrade test."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "testproject"))

from testproject.dbserver import Server  # noqa: E402

SECRET_KEY = "legacy-test"  # noqa: S105
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_partitioned_audit",
    "legacyapp.apps.LegacyConfig",
]
DATABASES = {
    "default": Server(os.environ["LEGACY_DATABASE_URL"], "given").django_database(os.environ["LEGACY_DB"])
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
if os.environ.get("LEGACY_LAYOUT") == "advanced":
    DPA_AUDIT_TABLE_MANAGER = (
        "django_partitioned_audit.audit_table.advanced_audit_table_manager.AdvancedAuditTableManager"
    )
