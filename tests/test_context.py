"""audit_context(): the values of the block reach audit_context of every row written in it,
nested blocks merge, nothing leaks past a block, a transaction or a savepoint rollback, in
threads and asyncio tasks, and the wrapper costs one SET LOCAL per transaction at most."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import sys
import threading
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import IntegrityError, connection, connections, transaction
from library.models import Book

from django_partitioned_audit.context import audit_context, audit_job, current_context
from tests.helpers import empty_trails, sql


@pytest.fixture(autouse=True)
def _fresh_trail(request: pytest.FixtureRequest, django_db_setup: None, django_db_blocker: Any) -> None:
    """Transactional tests commit their audit rows: start each from an empty trail."""
    if request.node.get_closest_marker("django_db"):
        with django_db_blocker.unblock():
            empty_trails()
            connection.close()


def contexts(read_model: Any, model: Any = Book) -> list[Any]:
    """audit_context of every entry of ``model``, oldest first."""
    return [
        e.audit_context
        for e in read_model.objects.filter_model(model).order_by(read_model.objects.model._meta.pk.name)
    ]


def by_isbn(read_model: Any) -> dict[str, Any]:
    """isbn -> audit_context of the INSERT of that book."""
    found = {}
    for entry in read_model.objects.filter_model(Book).order_by(read_model._meta.pk.name):
        if entry.object_pk is not None:  # a TRUNCATE (flush between tests) has none
            found.setdefault(entry.object_pk, entry.audit_context)  # isbn is the primary key
    return found


async def close_thread_connections() -> None:
    """The ORM's async calls run in a worker thread with connections of its own: close them,
    or the test database cannot be dropped at the end of the run."""
    await sync_to_async(connections.close_all)()


class Statements:
    """Every statement sent through ``alias`` while active, the wrapper's SET LOCAL included."""

    def __init__(self, alias: str = "default") -> None:
        self.alias, self.sent = alias, []

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.sent.append(sql)
        return execute(sql, params, many, context)

    def __enter__(self) -> Statements:
        self._cm = connections[self.alias].execute_wrapper(self)
        self._cm.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._cm.__exit__(*exc)

    @property
    def context_sets(self) -> list[str]:
        return [s for s in self.sent if s.startswith("SET LOCAL")]


def under_context_wrapper() -> bool:
    """Whether the statement being executed goes through ``context_wrapper``."""
    from django_partitioned_audit.context import context_wrapper

    frame = sys._getframe()
    while frame is not None:
        if frame.f_code is context_wrapper.__code__:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


class Probe:
    """An application's execute wrapper: notes (params, under context_wrapper) per statement."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, bool]] = []

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.seen.append((params, under_context_wrapper()))
        return execute(sql, params, many, context)

    def wrapped(self, value: str) -> set[bool]:
        """Whether the statements bound to ``value`` went through context_wrapper."""
        return {under for params, under in self.seen if params and value in params}


def wrappers_of_every_alias() -> dict[str, list[Any]]:
    return {alias: list(connections[alias].execute_wrappers) for alias in connections}


@pytest.mark.django_db(transaction=True, databases=["default", "other"])
def test_a_connection_holds_only_the_applications_own_wrappers():
    """Django's ExecuteWrapperTests.test_wrapper_connection_specific, with the app installed
    and both connections open."""
    connection.ensure_connection()
    connections["other"].ensure_connection()
    calls = []

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        calls.append(sql)
        return execute(sql, params, many, context)

    with connections["other"].execute_wrapper(wrapper):
        assert connections["other"].execute_wrappers == [wrapper]
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    assert calls == []
    assert connection.execute_wrappers == []
    assert connections["other"].execute_wrappers == []


@pytest.mark.django_db(transaction=True, databases=["default", "other"])
def test_the_context_wraps_statements_only_inside_a_block(read_model):
    """Outside any block no statement goes through context_wrapper; inside one, every
    statement of every alias does, nested blocks, a connection opened inside the block and a
    block left by an exception included; after each block no wrapper of the context is left."""
    from shop.models import Customer

    from django_partitioned_audit.models import SimpleAuditEntry

    connection.ensure_connection()
    connections["other"].close()  # its next connection is opened inside the block
    probes = {alias: Probe() for alias in ("default", "other")}
    with contextlib.ExitStack() as stack:
        for alias, probe in probes.items():
            stack.enter_context(connections[alias].execute_wrapper(probe))
        Book.objects.create(isbn="before", title="x")
        with audit_context(user_id=1):
            assert connections["other"].connection is None
            Book.objects.create(isbn="in", title="x")
            with audit_context(job="j"):
                Book.objects.create(isbn="nested", title="x")
            inside = Customer.objects.using("other").create(name="opened inside the block")
        assert wrappers_of_every_alias() == {
            alias: [probes[alias]] if alias in probes else [] for alias in connections
        }
        with pytest.raises(RuntimeError), audit_context(user_id=2):
            Book.objects.create(isbn="raised", title="x")
            raise RuntimeError
        Book.objects.create(isbn="after", title="x")
        after = Customer.objects.using("other").create(name="after")
    assert wrappers_of_every_alias() == {alias: [] for alias in connections}
    default, other = probes["default"], probes["other"]
    assert [default.wrapped(isbn) for isbn in ("before", "in", "nested", "raised", "after")] == [
        {False},
        {True},
        {True},
        {True},
        {False},
    ]
    assert (other.wrapped("opened inside the block"), other.wrapped("after")) == ({True}, {False})
    assert by_isbn(read_model) == {
        "before": None,
        "in": {"user_id": 1},
        "nested": {"user_id": 1, "job": "j"},
        "raised": {"user_id": 2},
        "after": None,
    }
    pks = [str(inside.pk), str(after.pk)]
    on_other = SimpleAuditEntry.objects.using("other").filter(object_pk__in=pks)  # migrate's layout
    assert {e.object_pk: e.audit_context for e in on_other} == {
        str(inside.pk): {"user_id": 1},
        str(after.pk): None,
    }


@pytest.mark.django_db(transaction=True)
def test_the_context_reaches_other_threads_and_tasks_and_nothing_is_left_there(read_model):
    """The ORM's async calls run in a worker thread whose connection was opened before the
    block; a thread started with a copy of the context opens its own inside the block; a
    task without a block, at the same time, writes without the wrapper."""
    probe = Probe()
    left: dict[str, Any] = {}

    def in_the_worker() -> None:
        connection.ensure_connection()  # opened outside any block
        connection.execute_wrappers.append(probe)

    def leave_the_worker() -> None:
        left["worker"] = list(connection.execute_wrappers)
        connection.execute_wrappers.remove(probe)
        connections.close_all()

    async def with_a_block() -> None:
        async with audit_context(user_id=1):
            await Book.objects.acreate(isbn="task in", title="x")
            await asyncio.sleep(0)
            await Book.objects.acreate(isbn="task in 2", title="x")

    async def without() -> None:
        await asyncio.sleep(0)
        await Book.objects.acreate(isbn="task out", title="x")

    async def main() -> None:
        await sync_to_async(in_the_worker)()
        await asyncio.gather(with_a_block(), without())
        await sync_to_async(leave_the_worker)()

    asyncio.run(main())

    def in_a_thread() -> None:
        try:
            with connection.execute_wrapper(probe):
                Book.objects.create(isbn="thread", title="x")
            left["thread"] = wrappers_of_every_alias()
        finally:
            connection.close()

    with audit_context(user_id=2):
        thread = threading.Thread(target=contextvars.copy_context().run, args=(in_a_thread,))
        thread.start()
        thread.join()
    assert left == {"worker": [probe], "thread": {alias: [] for alias in connections}}
    assert [probe.wrapped(isbn) for isbn in ("task in", "task in 2", "task out", "thread")] == [
        {True},
        {True},
        {False},
        {True},
    ]
    assert by_isbn(read_model) == {
        "task in": {"user_id": 1},
        "task in 2": {"user_id": 1},
        "task out": None,
        "thread": {"user_id": 2},
    }


@pytest.mark.django_db(transaction=True)
def test_outside_any_block_audit_context_is_null_and_no_statement_is_added(read_model):
    with Statements() as seen:
        Book.objects.create(isbn="1", title="a")
        Book.objects.filter(isbn="1").update(title="b")
    assert contexts(read_model) == [None, None]
    assert seen.context_sets == [] and len(seen.sent) == 2


@pytest.mark.django_db(transaction=True)
def test_autocommit_writes_inside_a_block_carry_it_and_leave_nothing_behind(read_model):
    with audit_context(user_id=7, via="test"):
        Book.objects.create(isbn="1", title="a")
        assert list(Book.objects.filter(isbn="1").values_list("title", flat=True)) == ["a"]
    Book.objects.create(isbn="2", title="b")
    assert by_isbn(read_model) == {"1": {"user_id": 7, "via": "test"}, "2": None}
    # The setting ended with the statement's own transaction.
    assert sql("SELECT current_setting('partitioned_audit.context', true)") in ([(None,)], [("",)])


@pytest.mark.django_db(transaction=True, databases="__all__")
@pytest.mark.parametrize("alias", ["default", *(["server_binding"] if settings.DRIVER == "psycopg" else [])])
def test_an_autocommit_write_carries_its_set_local_and_adds_no_round_trip(read_model, alias):
    """With a driver that binds on the client, the SET LOCAL rides in front of the write, in
    one query string run as one implicit transaction. psycopg 3's server-side binding refuses
    two statements in one query: there BEGIN, the SET LOCAL, the write and COMMIT go out in
    one pipeline. Either way Django stays in autocommit and no statement of the wrapper's
    own is sent; results and row counts are the statement's, a % in a value survives with
    and without parameters, and a failing write raises Django's error and leaves no
    transaction open."""
    db = connections[alias]
    autocommit_seen = []

    def watch(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        autocommit_seen.append(db.get_autocommit())
        return execute(sql, params, many, context)

    books = Book.objects.using(alias)
    with audit_context(path="/search?q=100%", user_id=9), db.execute_wrapper(watch):
        with Statements(alias) as seen:
            book = books.create(isbn="p1", title="a")  # INSERT ... RETURNING
            assert books.filter(isbn="p1").update(title="b") == 1
            with db.cursor() as cursor:
                cursor.execute("UPDATE library_book SET title = 'c' WHERE isbn = 'p1'")
                assert cursor.rowcount == 1
                cursor.execute(
                    "UPDATE library_book SET title = %s WHERE isbn = %s RETURNING title", ["d", "p1"]
                )
                assert cursor.fetchall() == [("d",)]
                cursor.executemany(
                    "INSERT INTO library_book (isbn, title) VALUES (%s, %s)", [("m1", "x"), ("m2", "y")]
                )
            with pytest.raises(IntegrityError):
                books.create(isbn="p1", title="again")
    assert book.pk == "p1" and books.get(isbn="p1").title == "d"
    expected = {"path": "/search?q=100%", "user_id": 9}
    assert contexts(read_model) == [expected] * 6
    assert len(seen.sent) == 6 and autocommit_seen == [True] * 6
    # In front of the write where the driver binds on the client (psycopg2's executemany
    # too); in psycopg 3's pipeline the SET LOCAL goes to the driver beside the writes.
    prefixed = [s for s in seen.sent if s.startswith("SET LOCAL") and "; " in s]
    if alias == "server_binding":
        assert seen.context_sets == []
    else:
        assert len(prefixed) == len(seen.context_sets) == (6 if settings.DRIVER == "psycopg2" else 5)
    assert sql("SELECT current_setting('partitioned_audit.context', true)") in ([(None,)], [("",)])


@pytest.mark.django_db(transaction=True)
def test_nested_blocks_merge_the_inner_value_wins_and_the_outer_comes_back(read_model):
    for prefix, block in (("a", contextlib.nullcontext), ("t", transaction.atomic)):
        with block():
            with audit_context(user_id=1, tenant="x"):
                Book.objects.create(isbn=f"{prefix}1", title="outer")
                with audit_context(user_id=2, job="j"):
                    assert dict(current_context()) == {"user_id": 2, "tenant": "x", "job": "j"}
                    Book.objects.create(isbn=f"{prefix}2", title="inner")
                Book.objects.create(isbn=f"{prefix}3", title="outer again")
            Book.objects.create(isbn=f"{prefix}4", title="after")
    found = by_isbn(read_model)
    for prefix in ("a", "t"):
        assert found[f"{prefix}1"] == found[f"{prefix}3"] == {"user_id": 1, "tenant": "x"}
        assert found[f"{prefix}2"] == {"user_id": 2, "tenant": "x", "job": "j"}
        assert found[f"{prefix}4"] is None
    assert current_context() is None


@pytest.mark.django_db(transaction=True)
def test_in_one_transaction_the_context_is_sent_once_and_again_only_when_it_changes(read_model):
    with Statements() as seen, transaction.atomic():
        list(Book.objects.all())  # a read inside a block sends nothing
        with audit_context(user_id=1):
            list(Book.objects.all())
            for i in range(3):
                Book.objects.create(isbn=f"b{i}", title="x")
            with audit_context(user_id=2):
                Book.objects.create(isbn="c", title="y")
            Book.objects.create(isbn="d", title="z")
        Book.objects.create(isbn="e", title="after the block, same transaction")
    assert len(seen.context_sets) == 4  # user 1, user 2, user 1 again, none
    found = by_isbn(read_model)
    assert [found[k] for k in ("b0", "b1", "b2", "c", "d", "e")] == [
        {"user_id": 1},
        {"user_id": 1},
        {"user_id": 1},
        {"user_id": 2},
        {"user_id": 1},
        None,
    ]


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_savepoint_takes_its_setting_and_the_wrapper_knows(read_model):
    with transaction.atomic(), audit_context(user_id=1):
        try:
            with transaction.atomic():
                Book.objects.create(isbn="gone", title="x")  # the first SET LOCAL, in the savepoint
                raise RuntimeError
        except RuntimeError:
            pass
        Book.objects.create(isbn="kept", title="y")  # PostgreSQL forgot it: sent again
        with audit_context(user_id=2):
            try:
                with transaction.atomic():
                    Book.objects.create(isbn="gone2", title="x")
                    raise RuntimeError
            except RuntimeError:
                pass
        Book.objects.create(isbn="kept2", title="z")
    assert by_isbn(read_model) == {"kept": {"user_id": 1}, "kept2": {"user_id": 1}}


@pytest.mark.django_db(transaction=True)
def test_threads_see_only_their_own_context(read_model):
    errors: list[BaseException] = []

    def worker(user: int) -> None:
        try:
            with audit_context(user_id=user):
                for i in range(20):
                    with transaction.atomic():
                        Book.objects.create(isbn=f"{user}-{i}", title=str(user))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(u,)) for u in (1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    found = by_isbn(read_model)
    assert len(found) == 60 and all(
        ctx == {"user_id": int(isbn.split("-")[0])} for isbn, ctx in found.items()
    )


@pytest.mark.django_db(transaction=True)
def test_asyncio_tasks_see_only_their_own_context(read_model):
    async def task(user: int) -> None:
        async with audit_context(user_id=user):
            for i in range(5):
                await Book.objects.acreate(isbn=f"{user}-{i}", title="async")
                await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(task(1), task(2))
        await close_thread_connections()

    asyncio.run(main())
    found = by_isbn(read_model)
    assert len(found) == 10 and all(
        ctx == {"user_id": int(isbn.split("-")[0])} for isbn, ctx in found.items()
    )


@pytest.mark.django_db(transaction=True)
def test_raw_sql_executemany_and_bulk_create_inside_a_block(read_model):
    with audit_context(user_id=5):
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO library_book (isbn, title) VALUES (%s, %s)", [("m1", "a"), ("m2", "b")]
            )
            cursor.execute(
                "WITH x AS (SELECT 1) UPDATE library_book SET title = %s WHERE isbn = %s", ["c", "m1"]
            )
        Book.objects.bulk_create([Book(isbn="m3", title="d")])
    assert set(map(repr, contexts(read_model))) == {repr({"user_id": 5})}
    assert len(contexts(read_model)) == 4


def test_values_must_be_json_serialisable():
    with pytest.raises(TypeError, match="JSON-serialisable"):
        audit_context(when=object())
    with pytest.raises(TypeError, match="JSON-serialisable"):
        audit_context(ratio=float("nan"))


@pytest.mark.django_db(transaction=True)
def test_a_job_records_its_name_and_an_id_per_run(read_model):
    @audit_job
    def nightly(isbn: str) -> None:
        Book.objects.create(isbn=isbn, title="job")

    class Request:
        id = "celery-task-id"

    class Task:
        request = Request()

    @audit_job(name="reindex")
    def bound(self: Any, isbn: str) -> None:
        Book.objects.create(isbn=isbn, title="task")

    @audit_job
    async def async_job(isbn: str) -> None:
        await Book.objects.acreate(isbn=isbn, title="async job")

    nightly("j1")
    nightly("j2")
    bound(Task(), "j3")

    async def run_async_job() -> None:
        await async_job("j4")
        await close_thread_connections()

    asyncio.run(run_async_job())
    found = by_isbn(read_model)
    assert (
        found["j1"]["job"]
        == found["j2"]["job"]
        == f"{__name__}.test_a_job_records_its_name_and_an_id_per_run.<locals>.nightly"
    )
    assert found["j1"]["job_id"] != found["j2"]["job_id"]
    assert found["j3"] == {"job": "reindex", "job_id": "celery-task-id"}
    assert found["j4"]["job"].endswith("async_job")


@pytest.mark.django_db(transaction=True)
def test_writes_from_psql_or_another_service_set_it_with_set_local(read_model):
    from tests.engine_db import connect

    raw = connect(connection.settings_dict["NAME"])
    cur = raw.cursor()
    cur.execute('SET LOCAL partitioned_audit.context = \'{"via": "psql", "user_id": 9}\'')
    cur.execute("INSERT INTO library_book (isbn, title) VALUES ('p1', 'x')")
    raw.commit()
    cur.execute("INSERT INTO library_book (isbn, title) VALUES ('p2', 'y')")  # next transaction: none
    raw.commit()
    cur.execute("SET LOCAL partitioned_audit.context = 'not json'")
    with pytest.raises(Exception, match="json"):
        cur.execute("INSERT INTO library_book (isbn, title) VALUES ('p3', 'z')")
    raw.rollback()
    raw.close()
    assert by_isbn(read_model) == {"p1": {"via": "psql", "user_id": 9}, "p2": None}


@pytest.mark.skipif(settings.DRIVER != "psycopg", reason="server-side binding is a psycopg 3 option")
@pytest.mark.django_db(transaction=True, databases=["default", "server_binding"])
def test_psycopg3_server_side_binding(read_model):
    with audit_context(user_id=3):
        Book.objects.using("server_binding").create(isbn="s1", title="x")
        with transaction.atomic(using="server_binding"):
            Book.objects.using("server_binding").filter(isbn="s1").update(title="y")
    assert contexts(read_model) == [{"user_id": 3}, {"user_id": 3}]
    assert connections["server_binding"].connection.cursor_factory.__name__ != "ClientCursor"


@pytest.mark.django_db(transaction=True)
def test_the_middleware_records_the_request_sync_and_async(read_model, settings):
    from django.contrib.auth.models import AnonymousUser, User
    from django.http import HttpResponse
    from django.test import RequestFactory

    from django_partitioned_audit.middleware import AuditContextMiddleware

    settings.DPA_AUDIT_CONTEXT_EXTRA = {
        "ip": "META.REMOTE_ADDR",
        "agent": lambda r: r.headers.get("User-Agent"),
    }
    user = User.objects.create(username="ann")

    def view(request: Any) -> HttpResponse:
        Book.objects.create(isbn=request.GET["isbn"], title="sync")
        return HttpResponse("ok")

    async def async_view(request: Any) -> HttpResponse:
        await Book.objects.acreate(isbn=request.GET["isbn"], title="async")
        return HttpResponse("ok")

    factory = RequestFactory()
    request = factory.post("/books/?isbn=r1", HTTP_X_REQUEST_ID="req-1", HTTP_USER_AGENT="pytest")
    request.user = user
    assert AuditContextMiddleware(view)(request).status_code == 200
    request = factory.get("/books/?isbn=r2")
    request.user = AnonymousUser()

    async def auser() -> Any:
        return user

    request.auser = auser
    request.user = user

    async def handle() -> Any:
        response = await AuditContextMiddleware(async_view)(request)
        await close_thread_connections()
        return response

    response = asyncio.run(handle())
    assert response.status_code == 200
    found = by_isbn(read_model)
    assert found["r1"] == {
        "user_id": user.pk,
        "username": "ann",
        "method": "POST",
        "path": "/books/",
        "request_id": "req-1",
        "ip": "127.0.0.1",
        "agent": "pytest",
    }
    assert found["r2"]["method"] == "GET" and found["r2"]["user_id"] == user.pk
    assert len(found["r2"]["request_id"]) == 32  # generated: no header


def test_the_middleware_refuses_a_bad_extra_setting(settings):
    from django.core.exceptions import ImproperlyConfigured

    from django_partitioned_audit.middleware import AuditContextMiddleware

    settings.DPA_AUDIT_CONTEXT_EXTRA = {"ip": 42}
    with pytest.raises(ImproperlyConfigured) as raised:
        AuditContextMiddleware(lambda r: None)
    assert str(raised.value) == (
        "DPA_AUDIT_CONTEXT_EXTRA['ip'] must be a dotted path such as 'META.REMOTE_ADDR' or a "
        "callable taking the request, got 42. See docs/settings.md."
    )
    settings.DPA_AUDIT_CONTEXT_EXTRA = {"uid": "usr.id"}
    with pytest.raises(ImproperlyConfigured) as raised:
        AuditContextMiddleware(lambda r: None)
    assert str(raised.value) == (
        "DPA_AUDIT_CONTEXT_EXTRA['uid'] = 'usr.id' can never give a value: a request has no "
        "attribute 'usr', and 'usr.id' is not the dotted path of a callable (No module named 'usr')."
    )


def test_extra_keys_that_can_never_give_a_value_are_check_errors(settings):
    """What can be known at check time: a path whose first step no request has, a dotted
    path that cannot be imported or does not name a callable. A key missing from a real
    request (META.NOPE) can only be known at run time."""
    from django.core import checks

    settings.DPA_AUDIT_CONTEXT_EXTRA = {
        "ip": "META.REMOTE_ADDR",
        "later": "META.NOPE",
        "user": "user.pk",
        "session": "session.session_key",
        "lang": "django.utils.translation.get_language_from_request",
        "agent": lambda request: request.headers.get("User-Agent"),
        "uid": "usr.id",
        "nope": "NOPE.x",
        "tenant": "shop.audit.tenant_of",
        "version": "django.VERSION",
    }
    settings.DPA_REQUEST_ID_HEADER = ""
    hint = (
        "Start a path into the request with one of its attributes (META, GET, headers, path, "
        "method, user, session, ...), or give a callable taking the request, or its dotted "
        "path. See docs/settings.md."
    )
    # Django keeps its check functions in a set: the order of their messages is not fixed.
    found = sorted((m for m in checks.run_checks() if m.id.startswith("partitioned_audit.")), key=str)
    assert found == sorted(
        [
            checks.Error(
                "DPA_REQUEST_ID_HEADER must be a header name, got ''. See docs/settings.md.",
                id="partitioned_audit.E010",
            ),
            checks.Error(
                "DPA_AUDIT_CONTEXT_EXTRA['uid'] = 'usr.id' can never give a value: a request has no "
                "attribute 'usr', and 'usr.id' is not the dotted path of a callable (No module named 'usr').",
                hint=hint,
                id="partitioned_audit.E011",
            ),
            checks.Error(
                "DPA_AUDIT_CONTEXT_EXTRA['nope'] = 'NOPE.x' can never give a value: a request has no "
                "attribute 'NOPE', and 'NOPE.x' is not the dotted path of a callable (No module named 'NOPE').",
                hint=hint,
                id="partitioned_audit.E011",
            ),
            checks.Error(
                "DPA_AUDIT_CONTEXT_EXTRA['tenant'] = 'shop.audit.tenant_of' can never give a value: a "
                "request has no attribute 'shop', and 'shop.audit.tenant_of' is not the dotted path of a "
                "callable (No module named 'shop.audit').",
                hint=hint,
                id="partitioned_audit.E011",
            ),
            checks.Error(
                "DPA_AUDIT_CONTEXT_EXTRA['version'] = 'django.VERSION' can never give a value: a request "
                "has no attribute 'django', and 'django.VERSION' names a tuple, not a callable.",
                hint=hint,
                id="partitioned_audit.E011",
            ),
        ],
        key=str,
    )
    settings.DPA_REQUEST_ID_HEADER = "X-Request-ID"
    settings.DPA_AUDIT_CONTEXT_EXTRA = {"ip": "META.REMOTE_ADDR"}
    assert [m for m in checks.run_checks() if m.id.startswith("partitioned_audit.")] == []


@pytest.mark.django_db(transaction=True)
def test_an_extra_key_a_request_lacks_is_null_and_logged_once_per_process(read_model, settings, caplog):
    from django.contrib.auth.models import AnonymousUser
    from django.contrib.sessions.backends.db import SessionStore
    from django.http import HttpResponse
    from django.test import RequestFactory

    from django_partitioned_audit import middleware

    middleware._warned.clear()  # another test of this process may have logged these keys
    settings.DPA_AUDIT_CONTEXT_EXTRA = {
        "ip": "META.NOPE",
        "agent": "headers.User-Agent",
        "lang": "django.utils.translation.get_language_from_request",
        "email": "user.email",
        "tenant": "session.tenant",
    }

    def view(request: Any) -> HttpResponse:
        Book.objects.create(isbn=request.GET["isbn"], title="x")
        return HttpResponse("ok")

    handler = middleware.AuditContextMiddleware(view)
    factory = RequestFactory()
    for isbn in ("r1", "r2", "r3"):
        request = factory.get(
            f"/?isbn={isbn}", HTTP_USER_AGENT="pytest", HTTP_X_REQUEST_ID=isbn, HTTP_ACCEPT_LANGUAGE="de"
        )
        request.user = AnonymousUser()
        request.session = SessionStore()
        request.session["tenant"] = "acme"
        with caplog.at_level(logging.WARNING, logger="django_partitioned_audit"):
            handler(request)
    expected = {
        "user_id": None,
        "username": None,
        "method": "GET",
        "path": "/",
        "ip": None,
        "agent": "pytest",
        "lang": "de",
        "email": None,
        "tenant": "acme",
    }
    assert by_isbn(read_model) == {isbn: {**expected, "request_id": isbn} for isbn in ("r1", "r2", "r3")}
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "django_partitioned_audit.middleware",
            "WARNING",
            "DPA_AUDIT_CONTEXT_EXTRA['ip'] = 'META.NOPE': the request has no 'NOPE' in 'META', so "
            "'ip' is recorded as null. Logged once per process.",
        ),
        (
            "django_partitioned_audit.middleware",
            "WARNING",
            "DPA_AUDIT_CONTEXT_EXTRA['email'] = 'user.email': the request has no 'email' in "
            "'user', so 'email' is recorded as null. Logged once per process.",
        ),
    ]


@pytest.mark.django_db(transaction=True)
def test_sync_to_async_carries_the_context_into_the_thread(read_model):
    async def main() -> None:
        async with audit_context(user_id=11):
            await sync_to_async(Book.objects.create)(isbn="x", title="y")
        await close_thread_connections()

    asyncio.run(main())
    assert contexts(read_model) == [{"user_id": 11}]


def test_a_transaction_stores_each_context_once_and_every_row_shows_it(read_model, layout):
    """The context table holds one row per transaction and context, with the login role;
    every audit row holds its id, which the view resolves: past a second block and a
    savepoint rolled back, and outside any block (a row with no context, the role only)."""
    from partitioned_audit.layouts import LAYOUTS

    table = LAYOUTS[layout]
    with transaction.atomic():
        with audit_context(user_id=1):
            Book.objects.bulk_create([Book(isbn=f"a{i}", title="x") for i in range(50)])
        with audit_context(user_id=2):
            Book.objects.filter(isbn__startswith="a").update(title="y")
            try:
                with transaction.atomic():
                    with audit_context(user_id=3):
                        Book.objects.create(isbn="rolled back", title="r")
                    raise RuntimeError
            except RuntimeError:
                pass
            Book.objects.create(isbn="a-again", title="y")
        Book.objects.create(isbn="none", title="z")
    stored = sql(
        f"SELECT context::text, session_user_name FROM {table.context_table}"  # noqa: S608 - constants
        f" WHERE context_id IN (SELECT audit_context_id FROM {table.table}) ORDER BY context_id"
    )
    ((login,),) = sql("SELECT session_user::text")
    # The write outside any block makes no context row: both layouts keep the login role on
    # every audit row (session_user_name).
    assert stored == [('{"user_id": 1}', login), ('{"user_id": 2}', login)]
    assert sql(  # noqa: S608
        f"SELECT count(DISTINCT audit_context_id), count(*) FILTER (WHERE audit_context_id IS NULL),"
        f" count(*) FILTER (WHERE session_user_name = session_user), count(*) FROM {table.table}"
    ) == [(2, 1, 102, 102)]
    shown = [(e.get_operation().name, e.audit_context) for e in read_model.objects.filter_model(Book)]
    assert shown.count(("INSERT", {"user_id": 1})) == 50
    assert shown.count(("UPDATE", {"user_id": 2})) == 50
    assert shown.count(("INSERT", {"user_id": 2})) == 1
    assert shown.count(("INSERT", None)) == 1
    assert read_model.objects.filter_context(user_id=2).count() == 51
    assert {e.session_user_name for e in read_model.objects.filter_model(Book)} == {login}


@pytest.mark.parametrize("value", ["0", "42", '"carol"', "[1, 2]", "true"])
def test_a_context_set_by_hand_that_is_not_an_object_is_kept_wrapped(read_model, value):
    """Only an object marks a statement's first row; a number there would read as a
    reference to another row's context."""
    import json

    with transaction.atomic():
        sql("""SELECT set_config('partitioned_audit.context', '{"user_id": 1}', true)""")
        Book.objects.create(isbn="before", title="x")  # a first row holding an object
        sql("SELECT set_config('partitioned_audit.context', %s, true)", [value])
        Book.objects.create(isbn="by-hand", title="y")
    entry = read_model.objects.filter_object(Book, "by-hand").get()
    assert entry.audit_context == {"value": json.loads(value)}


#: Rows as the capture wrote them before the context table: the context on a statement's
#: first row, the number 0 on its others; a third row outside any context.
_LEGACY_ROWS = {
    "simple": "INSERT INTO audit_simple (object_table, object_schema, object_pk, object_payload,"
    " audit_txid_current, audit_operation, audit_context) VALUES"
    " ('library_book', 'public', 'old1', '{\"isbn\": \"old1\"}', 41, 'I', '{\"user_id\": 41, \"job\": \"j\"}'),"
    " ('library_book', 'public', 'old2', '{\"isbn\": \"old2\"}', 41, 'I', '0'),"
    " ('library_book', 'public', 'old3', '{\"isbn\": \"old3\"}', 42, 'I', NULL)",
    "advanced": "INSERT INTO logged_actions (schema_name, table_name, relid, session_user_name,"
    " action_tstamp_tx, action_tstamp_stm, action_tstamp_clk, transaction_id, action, row_data,"
    " statement_only, object_pk, audit_context) SELECT 'public', 'library_book', 'library_book'::regclass,"
    " 'old_role', now(), now(), now(), t, 'I', jsonb_build_object('isbn', k), false, k, c::jsonb"
    " FROM (VALUES ('old1', 41, '{\"user_id\": 41, \"job\": \"j\"}'), ('old2', 41, '0'), ('old3', 42, NULL))"
    " AS v(k, t, c)",
}


def test_rows_written_before_the_context_table_keep_their_context(layout, read_model):
    """The upgrade leaves such rows as they are (nothing rewritten): the view resolves their
    context as before, filter_context() finds them beside the new ones, and new writes use
    the context table."""
    from partitioned_audit import get_layout, install
    from partitioned_audit.ddl import CONTEXT_HEAD

    table = get_layout(layout)
    sql(_LEGACY_ROWS[layout])
    txid, event = table.txid_column, table.event_column
    sql(
        f"CREATE INDEX {table.context_head_index} ON {table.table} ({txid}, {event}) WHERE {CONTEXT_HEAD}"  # noqa: S608
    )
    # what an older version left: its capture function's digest differs, so install() upgrades
    sql(f"COMMENT ON FUNCTION {table.function}() IS 'partitioned_audit an older version'")
    with connection.cursor() as cursor:
        install(cursor, table)
    with audit_context(user_id=41, job="j"):
        Book.objects.create(isbn="new1", title="x")
    found = {e.object_pk: (e.audit_context, e.audit_context_id is not None) for e in read_model.objects.all()}
    assert found == {
        "old1": ({"user_id": 41, "job": "j"}, False),
        "old2": ({"user_id": 41, "job": "j"}, False),
        "old3": (None, False),
        "new1": ({"user_id": 41, "job": "j"}, True),
    }
    # By containment too (the context function, reading the view of such rows).
    assert sorted(e.object_pk for e in read_model.objects.filter_context(job="j")) == ["new1", "old1", "old2"]
    assert sorted(e.object_pk for e in read_model.objects.filter_context(user_id=41)) == [
        "new1",
        "old1",
        "old2",
    ]
    assert sorted(e.object_pk for e in read_model.objects.filter_context(user_id="41")) == [
        "new1",
        "old1",
        "old2",
    ]
