"""SQL composition: the one place that picks the driver's ``sql`` module and quotes names.

Every identifier goes through :func:`ident`; values go through :func:`literal` only where
PostgreSQL accepts no bound parameter (DDL). Nothing here does I/O; :func:`render` turns a
composed statement into text, which every caller then runs without parameters.
"""

from __future__ import annotations

from typing import Any, Protocol

try:  # psycopg 3 renders without a connection, so prefer it even for psycopg2 connections.
    from psycopg import sql as _sql

    DRIVER = "psycopg"
except ImportError:  # pragma: no cover - exercised by the psycopg2 test run
    from psycopg2 import sql as _sql  # type: ignore[no-redef]

    DRIVER = "psycopg2"

SQL = _sql.SQL
Composable = _sql.Composable
Composed = _sql.Composed


class Cursor(Protocol):
    """The part of a DB-API cursor the engine uses (psycopg, psycopg2 or Django's wrapper)."""

    def execute(self, query: Any, params: Any = ...) -> Any: ...

    def fetchall(self) -> Any: ...

    def fetchone(self) -> Any: ...


def ident(*names: str) -> Composable:
    """Quote a possibly schema-qualified name: ``ident("my schema", 'we"ird')``."""
    if not names or any(not isinstance(n, str) or not n for n in names):
        raise ValueError(f"identifier parts must be non-empty strings, got {names!r}")
    if any("\x00" in n for n in names):
        raise ValueError(f"identifier contains a NUL byte: {names!r}")
    return _sql.Identifier(*names)


def quote_ident(*names: str) -> str:
    """Quote a name as text, for places with no cursor at hand (Django's ``Meta.db_table``).

    Same rule as :func:`ident` (wrap in double quotes, double embedded ones); a test checks
    that both agree for arbitrary names.
    """
    ident(*names)  # same validation
    return ".".join('"' + name.replace('"', '""') + '"' for name in names)


def literal(value: object) -> Composable:
    """Quote a value for statements that take no parameters (DDL, trigger arguments)."""
    return _sql.Literal(value)


def render(statement: Composable, cursor: Cursor | None = None) -> str:
    """Return ``statement`` as text.

    psycopg 3 needs no connection; psycopg2 quotes through the connection of ``cursor``
    (Django's cursor wrapper is unwrapped).
    """
    if DRIVER == "psycopg":
        return statement.as_string(None)
    raw = getattr(cursor, "cursor", cursor)  # django.db.backends.utils.CursorWrapper
    if raw is None:
        raise ValueError("psycopg2 needs a cursor to render SQL")
    return statement.as_string(raw)  # type: ignore[arg-type]


def execute(cursor: Cursor, statement: Composable | str, params: Any = None) -> None:
    """Run ``statement``; composed DDL is rendered first and sent without parameters."""
    text = statement if isinstance(statement, str) else render(statement, cursor)
    if params is None:
        cursor.execute(text)
    else:
        cursor.execute(text, params)


def sqlstate(exc: BaseException | None) -> str | None:
    """The SQLSTATE of a driver error (``sqlstate`` in psycopg, ``pgcode`` in psycopg2).

    Follows ``__cause__``, so an error wrapped by Django's database layer is recognised too.
    """
    while exc is not None:
        code = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
        if code:
            return str(code)
        exc = exc.__cause__
    return None


def database_error(exc: BaseException | None) -> bool:
    """Whether ``exc`` is a driver's error (psycopg, psycopg2, or Django's wrapper of one).

    Follows ``__cause__`` as :func:`sqlstate` does; connection failures, which carry no
    SQLSTATE, count too.
    """
    while exc is not None:
        if any(cls.__module__.split(".")[0] in ("psycopg", "psycopg2") for cls in type(exc).__mro__):
            return True
        exc = exc.__cause__
    return False
