"""Settings of the project that serves the tests, the demo and the benchmarks."""

import os

from testproject.dbserver import apply_driver_switch, get_server

DRIVER = apply_driver_switch()
SERVER = get_server()

SECRET_KEY = "not-secret-test-only"  # noqa: S105
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "django.contrib.staticfiles",
    "django_partitioned_audit",
    "shop.apps.ShopConfig",
    "library.apps.LibraryConfig",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_partitioned_audit.middleware.AuditContextMiddleware",
]
ROOT_URLCONF = "testproject.urls"
STATIC_URL = "static/"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.request",
            ]
        },
    }
]

DATABASES = {
    "default": SERVER.django_database(os.environ.get("DPA_DB_NAME", "dpa")),
    # A second database, to test that migrate and the read models honour routing.
    "other": SERVER.django_database(os.environ.get("DPA_DB_NAME", "dpa") + "_other"),
}
DATABASE_ROUTERS = ["testproject.routers.LibraryOnlyOnDefault"]

DPA_AUDIT_TABLE_MANAGER = os.environ.get(
    "DPA_AUDIT_TABLE_MANAGER",
    "django_partitioned_audit.audit_table.simple_audit_table_manager.SimpleAuditTableManager",
)
DPA_MASKED_COLUMNS = {"shop.customer": ["password"]}
# The whole suite can run at either capture level: DPA_CAPTURE_LEVEL=row pytest ...
DPA_CAPTURE_LEVEL = os.environ.get("DPA_CAPTURE_LEVEL", "statement")
# tests/test_audit_schema.py runs the project with the audit objects in a schema of their own.
DPA_AUDIT_SCHEMA = os.environ.get("DPA_AUDIT_SCHEMA", "public")
# Where manage_partition_tables archive writes old partitions (tests/test_archive_django.py).
DPA_ARCHIVE_URL = os.environ.get("DPA_ARCHIVE_URL")

# The same test database through PgBouncer in transaction-pooling mode, which the context
# tests start on this loopback port (tests/test_context_pooled.py).
PGBOUNCER_PORT = int(os.environ.get("DPA_PGBOUNCER_PORT", "6439"))
DATABASES["pooled"] = {
    **DATABASES["default"],
    "HOST": "127.0.0.1",
    "PORT": str(PGBOUNCER_PORT),
    # psycopg 3 prepares a query run five times; a pooler in transaction mode may then send
    # the next run to a server connection that never saw the PREPARE.
    "OPTIONS": {"prepare_threshold": None} if DRIVER == "psycopg" else {},
    "TEST": {"MIRROR": "default"},
}
if DRIVER == "psycopg":
    # psycopg 3's server-side binding (Django's default is client-side), on the same database.
    DATABASES["server_binding"] = {
        **DATABASES["default"],
        "OPTIONS": {"server_side_binding": True},
        "TEST": {"MIRROR": "default"},
    }
