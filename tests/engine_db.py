"""A scratch database reached through the raw driver, with no Django involved."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings


def connect(dbname: str, autocommit: bool = False, login: tuple[str, str] | None = None) -> Any:
    """A raw connection to ``dbname``; ``login`` = (role, password) logs in as that role."""
    dsn = settings.SERVER.dsn(dbname, login)
    if settings.DRIVER == "psycopg":
        import psycopg

        return psycopg.connect(dsn, autocommit=autocommit)
    import psycopg2

    conn = psycopg2.connect(dsn)
    conn.autocommit = autocommit
    return conn


@contextmanager
def scratch_database() -> Iterator[str]:
    name = f"dpa_scratch_{uuid.uuid4().hex[:10]}"
    admin = connect("postgres", autocommit=True)
    try:
        admin.cursor().execute(f'CREATE DATABASE "{name}"')
        yield name
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
