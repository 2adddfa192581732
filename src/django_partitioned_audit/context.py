"""Record who made each change: ``audit_context(**values)`` around the code that writes.

Inside a block, every audit row written through Django gets the block's values in its
``audit_context`` column; blocks nest (the inner value of a key wins, the outer values come
back on exit); rows written outside any block get NULL. It works in threads and in asyncio
tasks alike, because the values live in a :class:`contextvars.ContextVar`.

How the values reach the triggers (see docs/context.md): an execute wrapper wraps the
statements run inside a block, and those only, whatever the thread, task or connection that
runs them. It sends ``SET LOCAL partitioned_audit.context = '...'`` through the same cursor
just before the first write of a transaction made inside a block, and again only when the
values change. A read never pays for it, and a statement outside a block does not go
through it. A write outside a transaction (autocommit) carries the ``SET LOCAL`` in front of
itself, in the same query string, which PostgreSQL runs as one implicit transaction: no
round trip is added, and the setting ends with the statement, so nothing is left on a
pooled server connection. Where psycopg 3 binds parameters on the server
(``server_side_binding``, which refuses two statements in one query), and for psycopg 3's
``executemany``, ``BEGIN``, the ``SET LOCAL``, the writes and ``COMMIT`` go out in one
pipeline, which costs no round trip either.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from types import MappingProxyType, TracebackType
from typing import Any, TypeVar

from partitioned_audit.context import encode, set_local
from partitioned_audit.sql import render

__all__ = ["audit_context", "audit_job", "current_context"]

_current: ContextVar[Mapping[str, Any] | None] = ContextVar("partitioned_audit_context", default=None)

F = TypeVar("F", bound=Callable[..., Any])


def current_context() -> Mapping[str, Any] | None:
    """The values of the innermost ``audit_context`` block, merged with the outer ones."""
    return _current.get()


class audit_context:  # noqa: N801 - used like a function, as contextlib's helpers are
    """Record ``values`` in the audit rows written inside the block (``with`` or ``async with``).

    Raises:
        TypeError: at once, when a value is not JSON-serialisable.
    """

    def __init__(self, **values: Any) -> None:
        encode(values)  # fail here, not at the first write
        self.values = values
        self._tokens: list[Any] = []

    def __enter__(self) -> Mapping[str, Any]:
        merged = MappingProxyType({**(_current.get() or {}), **self.values})
        self._tokens.append(_current.set(merged))
        return merged

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _current.reset(self._tokens.pop())

    async def __aenter__(self) -> Mapping[str, Any]:
        return self.__enter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(kind, exc, tb)


def audit_job(func: F | None = None, *, name: str | None = None) -> Any:
    """Run a background job (a Celery task, a management command's ``handle``, any function,
    sync or async) inside ``audit_context(job=..., job_id=...)``.

    ``job`` is ``name`` or the function's dotted path; ``job_id`` is the Celery task id when
    the function is a bound task (``self.request.id``), else a new UUID per run.
    """

    def decorate(function: F) -> F:
        job = name or f"{function.__module__}.{function.__qualname__}"

        def values(args: tuple[Any, ...]) -> dict[str, Any]:
            request = getattr(args[0], "request", None) if args else None
            task_id = getattr(request, "id", None)
            return {"job": job, "job_id": task_id if isinstance(task_id, str) else uuid.uuid4().hex}

        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                async with audit_context(**values(args)):
                    return await function(*args, **kwargs)

            return run_async  # type: ignore[return-value]

        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            with audit_context(**values(args)):
                return function(*args, **kwargs)

        return run  # type: ignore[return-value]

    return decorate(func) if func is not None else decorate


# -- the execute wrapper ---------------------------------------------------------------------

#: Statements that may write an audited table. Anything else (SELECT, SHOW, SAVEPOINT, ...)
#: goes through untouched; a function called from a SELECT that writes is the exception
#: docs/context.md names.
_WRITE = re.compile(r"\s*(?:\(\s*)*(?:INSERT|UPDATE|DELETE|MERGE|TRUNCATE|COPY|WITH|CALL)\b", re.IGNORECASE)


class _Sent:
    """Registered with ``on_commit`` when the setting was sent in a transaction: Django drops
    it when that transaction ends and when a savepoint around it is rolled back, exactly
    when PostgreSQL forgets a ``SET LOCAL``."""

    __slots__ = ("encoded",)

    def __init__(self, encoded: str | None) -> None:
        self.encoded = encoded

    def __call__(self) -> None:
        pass


def _sent(connection: Any) -> _Sent | None:
    for _, func, *_ in reversed(connection.run_on_commit):
        if isinstance(func, _Sent):
            return func
    return None


def _send(connection: Any, encoded: str | None) -> None:
    # A cursor of its own: the statement being wrapped may be an executemany, and the wrappers
    # inside this one (debug logging, query counters) see the SET like any statement.
    # Noted first, so that the SET passing through this wrapper is taken as already sent.
    connection.on_commit(_Sent(encoded))
    with connection.cursor() as cursor:
        cursor.execute(render(set_local(encoded), cursor.cursor))


def _stale(connection: Any) -> bool:
    """Whether the connection's transaction still holds a block's setting, though the block ended."""
    if not (connection.in_atomic_block and connection.run_on_commit):
        return False
    sent = _sent(connection)
    return sent is not None and sent.encoded is not None


def context_wrapper(
    execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    connection = context["connection"]
    values = _current.get()
    if not values:
        if _stale(connection):  # a block ended inside this transaction
            _send(connection, None)
        return execute(sql, params, many, context)
    if not isinstance(sql, str) or not _WRITE.match(sql):
        return execute(sql, params, many, context)
    encoded = encode(values)
    if connection.in_atomic_block:
        sent = _sent(connection) if connection.run_on_commit else None
        if sent is None or sent.encoded != encoded:
            _send(connection, encoded)
        return execute(sql, params, many, context)
    cursor = context["cursor"].cursor
    # psycopg2's executemany runs the (prefixed) statement once per row.
    if _is_psycopg2(cursor) or (not many and _binds_on_client(cursor)):
        prefix = render(set_local(encoded), cursor) + "; "
        if params is not None:  # the driver formats the query: a % of the value stays one
            prefix = prefix.replace("%", "%%")
        result = execute(prefix + sql, params, many, context)
        if not _is_psycopg2(cursor):
            cursor.nextset()  # psycopg 3 stands on the first result, the SET's: move on to the statement's
        return result
    return _pipelined(connection, cursor, encoded, lambda: execute(sql, params, many, context))


def _pipelined(connection: Any, cursor: Any, encoded: str, write: Callable[[], Any]) -> Any:
    """psycopg 3 binding on the server, or its ``executemany``: ``BEGIN``, the ``SET LOCAL``,
    the write and ``COMMIT`` go out in one pipeline, answered together, so they cost the
    write's own round trip. A failed write's error is Django's, raised when the pipeline is
    answered; its transaction is then rolled back."""
    from psycopg.pq import TransactionStatus

    raw = cursor.connection
    try:
        with connection.wrap_database_errors, raw.pipeline():
            raw.execute("BEGIN")
            raw.execute(render(set_local(encoded), cursor))
            result = write()
            raw.execute("COMMIT")
    except Exception:
        if raw.info.transaction_status != TransactionStatus.IDLE:  # the write failed: end its transaction
            raw.execute("ROLLBACK")
        raise
    return result


def _binds_on_client(cursor: Any) -> bool:
    """Whether a psycopg 3 cursor merges the parameters into the query text, which may then
    hold two statements (psycopg2's always does)."""
    import psycopg

    return isinstance(cursor, psycopg.ClientCursor)


def _is_psycopg2(cursor: Any) -> bool:
    return type(cursor).__module__.startswith("psycopg2")


class _ExecuteWrappers(list[Any]):
    """``connection.execute_wrappers`` of a PostgreSQL connection: the application's own
    wrappers, kept as Django keeps them, with ``context_wrapper`` added, outermost, to the
    chain Django builds for each statement (``reversed(execute_wrappers)`` in
    ``CursorWrapper._execute_with_wrappers``) when, and only when, the code running the
    statement is inside an ``audit_context`` block, or its transaction still holds the
    setting of a block that ended.

    Deciding per statement, rather than adding the wrapper to the list when a block starts,
    covers every place the block's values reach through the ``ContextVar``: the ORM's async
    calls run in a worker thread with connections of their own, threads run with a copy of
    the context, connections opened inside the block. The list itself never holds the
    wrapper, so outside a block a connection's wrappers are the application's alone.
    """

    __slots__ = ("connection",)

    def __init__(self, connection: Any, wrappers: list[Any]) -> None:
        super().__init__(wrappers)
        self.connection = connection

    def __reversed__(self) -> Iterator[Any]:
        own = super().__reversed__()
        if _current.get() or _stale(self.connection):
            return itertools.chain(own, (context_wrapper,))
        return own


def install(connection: Any, **kwargs: Any) -> None:
    """``connection_created`` receiver, also run once on the connections open when the app
    is ready: statements run inside a block go through ``context_wrapper``."""
    if connection.vendor == "postgresql" and not isinstance(connection.execute_wrappers, _ExecuteWrappers):
        # A copy: an execute_wrapper() block open now pops its wrapper from the new list.
        connection.execute_wrappers = _ExecuteWrappers(connection, connection.execute_wrappers)
