"""A scratch database reached through the raw driver, with no Django involved."""

from __future__ import annotations

import queue
import threading
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


class _Dropper:
    """Drops scratch databases (and then roles) in a thread of its own, so that no test
    waits for it.

    DROP DATABASE waits for a checkpoint (PostgreSQL 15 requests one to drop the files),
    which writes out every dirty buffer of the server: seconds on a busy one, at the end of
    each test that used a scratch database. Statements run in the order given (a role goes
    after the databases holding its grants). :func:`wait` (called when the session ends)
    runs what is left and returns the statements that failed.
    """

    def __init__(self) -> None:
        self.statements: queue.Queue[Any] = queue.Queue()
        self.thread: threading.Thread | None = None
        self.failed: list[str] = []
        self.lock = threading.Lock()

    def put(self, statement: Any) -> None:
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="drop scratch databases", daemon=True)
                self.thread.start()
        self.statements.put(statement)

    def _run(self) -> None:
        from partitioned_audit.sql import execute

        admin = connect("postgres", autocommit=True)
        try:
            while True:
                statement = self.statements.get()
                try:
                    execute(admin.cursor(), statement)
                except Exception as exc:  # noqa: BLE001 - reported by wait()
                    self.failed.append(f"{statement!r}: {exc}")
                finally:
                    self.statements.task_done()
        finally:
            admin.close()

    def wait(self) -> list[str]:
        """Blocks until every statement handed over ran; returns the failures."""
        if self.thread is not None:
            self.statements.join()
        return self.failed


DROPPER = _Dropper()


def drop_role_later(role: str) -> None:
    """Drop ``role`` once the scratch databases dropped in the background before are gone."""
    from partitioned_audit.sql import SQL, ident

    DROPPER.put(SQL("DROP ROLE IF EXISTS {}").format(ident(role)))


@contextmanager
def scratch_database(background: bool = False) -> Iterator[str]:
    """A new, empty database for the block, dropped afterwards (callers close their
    connections first: WITH (FORCE) ends any left open); with ``background``, by
    :data:`DROPPER`, so that the test does not wait for the checkpoint (a role with grants
    in it is then dropped with :func:`drop_role_later`)."""
    name = f"dpa_scratch_{uuid.uuid4().hex[:10]}"
    admin = connect("postgres", autocommit=True)
    try:
        admin.cursor().execute(f'CREATE DATABASE "{name}"')
        yield name
    finally:
        drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
        if background:
            DROPPER.put(drop)
        else:
            admin.cursor().execute(drop)
        admin.close()
