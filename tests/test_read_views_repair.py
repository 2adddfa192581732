"""The read views are part of the install: one that is missing, replaced or left open to
writes makes the layout OUTDATED, ``check --database`` names it (E024), and ``migrate``
creates it again, still readable by the roles granted ``--read``."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.db import connection
from library.models import Book

from django_partitioned_audit.checks import check_read_views
from django_partitioned_audit.context import audit_context
from django_partitioned_audit.sync import sync
from partitioned_audit import Status, layout_status, privileges
from partitioned_audit.layouts import CONTEXT_FUNCTION_ARGS, OBJECT_FUNCTION_ARGS, VIEW_TRIGGER, get_layout
from tests.helpers import sql
from tests.test_admin import entries_url, listed, site  # noqa: F401  (the admin site, a fixture)

KINDS = ("view", "context_view", "keys_view")


@pytest.fixture
def story(layout: str) -> None:
    with audit_context(user_id=7, username="alice"):
        Book.objects.create(isbn="111", title="Dune")


def status(layout: str) -> Status:
    with connection.cursor() as cursor:
        return layout_status(cursor, get_layout(layout)).status


def messages(layout: str) -> list[str]:
    return [e.msg for e in check_read_views(databases=["default"]) if e.id == "partitioned_audit.E024"]


def assert_reads_work(read_model: Any, admin_client: Any) -> None:
    assert [e.object_pk for e in read_model.objects.filter_context(user_id=7)] == ["111"]
    assert [e.object_pk for e in listed(admin_client.get(entries_url(read_model)))] == ["111"]
    assert [e.object_pk for e in listed(admin_client.get(entries_url(read_model), {"user": "7"}))] == ["111"]


def assert_repaired(layout: str, name: str, problem: str, *more: tuple[str, str, str]) -> None:
    """``name`` (and each of ``more``: what, name, problem) is reported, and migrate repairs it."""
    assert status(layout) is Status.OUTDATED
    assert messages(layout) == [
        f"Database 'default': {what} public.{name} is not the one this version installs: {problem}; "
        "the audit reads that use it fail or show other rows."
        for what, name, problem in sorted([("read view", name, problem), *more], key=lambda m: m[1])
    ]
    sync("default", verbosity=0)
    assert status(layout) is Status.INSTALLED
    assert messages(layout) == []


@pytest.mark.usefixtures("site")
@pytest.mark.parametrize("kind", KINDS)
def test_a_dropped_view_is_reported_and_migrate_creates_it_again(
    layout, kind, story, read_model, admin_client
):
    current = get_layout(layout)
    name = getattr(current, kind)
    assert status(layout) is Status.INSTALLED and messages(layout) == []
    # The read functions return the read view's rows: dropping that view drops them too.
    sql(f"DROP VIEW {name} CASCADE")
    functions = (current.object_function, current.context_function)
    gone = [("read function", f, "it is missing") for f in functions] if kind == "view" else []
    assert_repaired(layout, name, "it is missing", *gone)
    assert_reads_work(read_model, admin_client)


def object_function(layout: str) -> str:
    return f"{get_layout(layout).object_function}({OBJECT_FUNCTION_ARGS})"


def assert_function_repaired(layout: str, problem: str, name: str | None = None) -> None:
    """The read function ``name`` (the object function unless named) is reported with
    ``problem``, and migrate repairs it."""
    assert status(layout) is Status.OUTDATED
    assert messages(layout) == [
        f"Database 'default': read function public.{name or get_layout(layout).object_function} is not the "
        f"one this version installs: {problem}; the audit reads that use it fail or show other rows."
    ]
    sync("default", verbosity=0)
    assert status(layout) is Status.INSTALLED
    assert messages(layout) == []


def replace_with_an_empty_function(current, name, arguments):
    """Replace the read function ``name`` with one of the same signature and result that
    returns no row: CREATE OR REPLACE keeps its comment, so only its text tells."""
    sql(
        f"CREATE OR REPLACE FUNCTION {name}({arguments})"
        f" RETURNS SETOF {current.view} LANGUAGE sql STABLE AS 'SELECT * FROM {current.view} WHERE false'"
    )


def test_a_dropped_object_function_is_reported_and_migrate_creates_it_again(layout, story, read_model):
    sql(f"DROP FUNCTION {object_function(layout)}")
    assert_function_repaired(layout, "it is missing")
    book = Book.objects.get(isbn="111")
    assert [v.row["title"] for v in read_model.objects.history(book)] == ["Dune"]


def test_a_dropped_context_function_is_reported_and_migrate_creates_it_again(layout, story, read_model):
    current = get_layout(layout)
    sql(f"DROP FUNCTION {current.context_function}({CONTEXT_FUNCTION_ARGS})")
    assert_function_repaired(layout, "it is missing", current.context_function)
    assert [e.object_pk for e in read_model.objects.filter_context(username="alice")] == ["111"]


def test_a_replaced_context_function_is_reported_and_migrate_restores_it(layout, story, read_model):
    current = get_layout(layout)
    replace_with_an_empty_function(current, current.context_function, "any_of jsonb")
    assert list(read_model.objects.filter_context(username="alice")) == []
    assert_function_repaired(layout, "its definition differs", current.context_function)
    assert [e.object_pk for e in read_model.objects.filter_context(username="alice")] == ["111"]


def test_a_replaced_object_function_is_reported_and_migrate_restores_it(layout, story, read_model):
    current = get_layout(layout)
    replace_with_an_empty_function(
        current, current.object_function, "of_table text, of_schema text, of_key text"
    )
    book = Book.objects.get(isbn="111")
    assert list(read_model.objects.filter_object(Book, book.pk)) == []
    assert_function_repaired(layout, "its definition differs")
    assert [e.object_pk for e in read_model.objects.filter_object(Book, book.pk)] == ["111"]


@pytest.mark.usefixtures("site")
@pytest.mark.parametrize("kind", KINDS)
def test_a_replaced_view_is_reported_and_migrate_restores_it(layout, kind, story, read_model, admin_client):
    name = getattr(get_layout(layout), kind)
    (definition,) = sql("SELECT pg_get_viewdef(%s::regclass)", [name])[0]
    # Same columns, no rows: CREATE OR REPLACE keeps the view's comment and its trigger.
    sql(
        f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM ({definition.rstrip().rstrip(';')}) AS v WHERE false"
    )
    assert_repaired(layout, name, "its definition differs")
    assert_reads_work(read_model, admin_client)


def test_a_view_that_lost_its_write_refusing_trigger_is_reported(layout):
    name = get_layout(layout).context_view
    sql(f'DROP TRIGGER "{VIEW_TRIGGER}" ON {name}')
    assert_repaired(layout, name, f"its trigger {VIEW_TRIGGER} refusing writes is missing")
    assert sql("SELECT count(*) FROM pg_trigger WHERE tgrelid = %s::regclass", [name]) == [(1,)]


def test_a_role_granted_read_reads_the_views_migrate_created_again(layout, story):
    current = get_layout(layout)
    role = f"dpa_reader_{uuid.uuid4().hex[:8]}"
    sql(f"CREATE ROLE {role}")
    with connection.cursor() as cursor:
        privileges.apply(cursor, current, "public", role, read=True)
    sql(f"DROP VIEW {current.context_view}")
    sync("default", verbosity=0)
    sql(f"SET LOCAL ROLE {role}")
    try:
        for name in current.views:
            assert sql(f"SELECT count(*) FROM {name}") == [(1,)]
        # and the object function, which reads the read view with the caller's rights
        assert sql(f"SELECT count(*) FROM {current.object_function}('library_book', 'public', '111')") == [
            (1,)
        ]
        # and the context function, which reads the context view so
        assert sql(f"""SELECT count(*) FROM {current.context_function}('[{{"username": "alice"}}]')""") == [
            (1,)
        ]
    finally:
        sql("RESET ROLE")
    assert (
        sql(
            "SELECT has_table_privilege(%s, %s, 'SELECT') FROM unnest(%s::text[]) AS v(n)",
            [role, current.context_view, list(current.views)],
        )
        == [(True,)] * 3
    )
