"""history(), as_of(), changes() and filter_context() on both read models."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.db import connection
from library.models import Book
from shop.models import Customer, Order

from django_partitioned_audit.context import audit_context
from django_partitioned_audit.models import Operation, _on_view
from partitioned_audit.layouts import get_layout
from tests.helpers import past_the_guard, sql
from tests.test_read_api import context_probes, explain, function_plans, scanned_partitions


def test_history_lists_every_version_with_its_changes_and_context(layout, read_model):
    with audit_context(user_id=1):
        book = Book.objects.create(isbn="h1", title="a")
    book.title = "b"
    book.save()
    with audit_context(user_id=2, reason="typo"):
        book.title = "c"
        book.save()
    Book.objects.filter(isbn="h1").delete()
    Book.objects.create(isbn="other", title="not in this history")
    page = read_model.objects.history(book)
    assert page.next_after is None
    versions = page.versions
    assert [v.operation for v in versions] == [
        Operation.INSERT,
        Operation.UPDATE,
        Operation.UPDATE,
        Operation.DELETE,
    ]
    assert [v.changes for v in versions] == [
        {"isbn": (None, "h1"), "title": (None, "a")},
        {"title": ("a", "b")},
        {"title": ("b", "c")},
        {"isbn": ("h1", None), "title": ("c", None)},
    ]
    assert [v.context for v in versions] == [{"user_id": 1}, None, {"user_id": 2, "reason": "typo"}, None]
    assert versions[2].row == {"isbn": "h1", "title": "c"}
    assert all(isinstance(v.time, dt.datetime) for v in versions)


def test_changes_are_named_by_field_and_masked_values_stay_masked(layout, read_model):
    ann = Customer.objects.create(name="Ann", password="secret")
    bob = Customer.objects.create(name="Bob")
    order = Order.objects.create(customer=ann, total="1.50")
    order.customer = bob
    order.status = "paid"
    order.save()
    (_, update) = read_model.objects.history(order).versions
    assert update.changes == {"customer": (ann.pk, bob.pk), "status": ("new", "paid")}  # typed: UUIDs
    ann.password = "other"
    ann.save()
    (_, changed) = read_model.objects.history(ann).versions
    assert changed.changes in ({}, {"password": ("[masked]", "[masked]")})
    assert "secret" not in repr(read_model.objects.history(ann))


def test_history_pages_by_keyset_and_a_page_starting_with_an_update_knows_its_old_values(layout, read_model):
    book = Book.objects.create(isbn="p", title="0")
    for i in range(1, 26):
        book.title = str(i)
        book.save()
    pages, after = [], None
    while True:
        page = read_model.objects.history(book, after=after, limit=10)
        pages.append(page.versions)
        if page.next_after is None:
            break
        after = page.next_after
    assert [len(p) for p in pages] == [10, 10, 6]
    flat = [v for p in pages for v in p]
    assert [v.changes["title"] for v in flat[1:]] == [(str(i - 1), str(i)) for i in range(1, 26)]
    assert len({v.entry.pk for v in flat}) == 26
    with pytest.raises(ValueError, match="limit"):
        read_model.objects.history(book, limit=0)


def test_history_reads_through_the_object_function_with_a_generic_plan(layout, read_model):
    book = Book.objects.create(isbn="i", title="x")
    Book.objects.create(isbn="j", title="another object")
    # Other objects' entries beside it, counted: with a handful of rows every index of a
    # partition costs the same to the planner, which may then walk the partition down
    # another one (PostgreSQL 18 did), where a real trail's partition makes the (table,
    # key) index the only cheap way in.
    Book.objects.bulk_create([Book(isbn=f"other{n}", title="x") for n in range(2000)])
    sql(f"ANALYZE {get_layout(layout).table}")
    qs = read_model.objects.filter_object(Book, book.pk).order_by("pk")
    outer = explain(qs[:101])
    # The query calls the object function: it plans no partition of either table.
    assert f"Function Scan on {get_layout(layout).object_function}" in outer, outer
    assert "Append" not in outer and "_context" not in outer, outer
    (plan,) = function_plans(qs[:101])
    # The kept plan is the generic one (the table and the key are parameters), made once
    # per connection. Each audit partition is read through an index, none read whole: the
    # entry's row comes from the one partition holding it, through its (table, key) index.
    # (An empty partition may be walked down another index instead: it reads nothing.)
    assert re.search(r"object_pk = \$3", plan) and "'i'" not in plan, plan
    assert "Seq Scan" not in plan and "Bitmap" not in plan, plan
    audit = [
        line
        for line in plan.splitlines()
        if re.search(r"Scan .* on \w+_(\d{8}_\d{8}|default) ", line)
        and line.strip() not in context_probes(plan)
    ]
    assert audit and all("Index Scan using" in line for line in audit), plan
    read = [line for line in audit if not re.search(r"rows=0(\.0+)? ", line)]
    assert len(read) == 1 and "object_pk_idx" in read[0], plan
    # Each entry's context row: a probe of the context table's (txid, id) index in the
    # partition of the entry's time, the other partitions pruned when it runs.
    probes = context_probes(plan)
    assert probes and all("Index Scan" in line and "txid_context_id_idx" in line for line in probes), plan
    executed = [line for line in probes if "never executed" not in line]
    assert len(executed) == 1, plan
    assert [e.object_pk for e in qs] == ["i"]


@pytest.mark.django_db(transaction=True)
def test_as_of_returns_the_row_as_it_was_then(layout, read_model):
    book = Book.objects.create(isbn="t1", title="first")
    book.title = "second"
    book.save()
    Book.objects.filter(isbn="t1").delete()
    insert, update, delete = read_model.objects.history(book).versions
    assert insert.time < update.time < delete.time  # one transaction each
    assert read_model.objects.as_of(Book, "t1", insert.time - dt.timedelta(microseconds=1)) is None
    as_inserted = read_model.objects.as_of(Book, "t1", insert.time)
    assert isinstance(as_inserted, Book) and as_inserted.title == "first"
    assert read_model.objects.as_of(Book, "t1", update.time).title == "second"
    assert read_model.objects.as_of(Book, "t1", delete.time) is None
    # A TRUNCATE of the table ends every row's life too.
    Book.objects.create(isbn="t2", title="kept until the truncate")
    sql("TRUNCATE library_book CASCADE")
    (created,) = read_model.objects.history(Book(isbn="t2")).versions
    truncate = (
        read_model.objects.filter_model(Book).filter_operation(Operation.TRUNCATE).order_by("-pk").first()
    )
    assert read_model.objects.as_of(Book, "t2", created.time).title == "kept until the truncate"
    assert read_model.objects.as_of(Book, "t2", getattr(truncate, read_model._time)) is None


def test_changes_reads_only_the_partitions_of_its_range(layout, read_model):
    Book.objects.create(isbn="c1", title="x")
    now = dt.datetime.now(dt.UTC)
    since, until = now - dt.timedelta(minutes=1), now + dt.timedelta(minutes=1)
    found = list(read_model.objects.changes(Book, since, until))
    assert [e.object_pk for e in found if e.object_pk == "c1"] == ["c1"]
    plan = explain(read_model.objects.changes(Book, since, until))
    # Two minutes around now lie in one monthly partition (or two, at a month's turn).
    assert 1 <= len(scanned_partitions(plan)) <= 2, plan
    with pytest.raises(ValueError, match="after until"):
        read_model.objects.changes(Book, until, since)


def test_filter_context_finds_the_writes_of_one_user(layout, read_model):
    with audit_context(user_id=7, path="/a"):
        Book.objects.create(isbn="u7", title="x")
    with audit_context(user_id=8):
        Book.objects.create(isbn="u8", title="y")
    Book.objects.create(isbn="none", title="z")
    assert [e.object_pk for e in read_model.objects.filter_context(user_id=7)] == ["u7"]
    assert read_model.objects.filter_model(Book).filter_context(user_id=8).count() == 1
    assert [e.object_pk for e in read_model.objects.filter_context(user_id="7", path="/a")] == ["u7"]
    assert read_model.objects.filter_context(user_id=7, path="/b").count() == 0
    with pytest.raises(TypeError, match="key=value"):
        read_model.objects.filter_context()


def test_filter_context_reads_context_rows_then_their_rows_by_index(layout, read_model):
    """The context is kept once per transaction in the context table; a lookup finds the
    context rows through its indexes (a user's through the user B-tree, newest first;
    any other key through the GIN), then their audit rows through the context id index."""
    with audit_context(user_id=7, job="import"):
        Book.objects.bulk_create([Book(isbn=f"u{i}", title="x") for i in range(20)])
    Book.objects.create(isbn="none", title="z")
    assert read_model.objects.filter_context(user_id=7).count() == 20
    plan = explain(read_model.objects.filter_context(user_id=7).newest_first()[:50])
    assert "Seq Scan" not in plan, plan
    users = [line for line in context_probes(plan) if "_expr_created_idx" in line]
    rows = [line for line in plan.splitlines() if "Index Scan" in line and "audit_context_id_idx" in line]
    assert users and rows, plan
    # A key without a B-tree of its own is found through the GIN, by the context function
    # (see the next test).
    *_, plan = function_plans(
        read_model.objects.filter_context(job="import").order_by("-pk")[:50], bitmaps=True
    )
    assert "Seq Scan" not in plan, plan
    assert [line for line in context_probes(plan) if "_context_idx" in line and "Bitmap" in line], plan
    assert [line for line in plan.splitlines() if "Index Scan" in line and "audit_context_id_idx" in line], (
        plan
    )


def test_a_context_search_reads_through_the_context_function_with_a_generic_plan(layout, read_model):
    """A search by containment (a request, a job: a key without a B-tree of its own) reads
    the context function, whose plan the connection keeps: the query the ORM sends plans
    no partition of either table, and the kept plan is the generic one, the same for
    every request: a bitmap of the GIN of each context partition, never a scan of a
    partition whole, and per context row found one probe of the context id index, in the
    audit partition of the row's time alone."""
    spec = get_layout(layout)
    with audit_context(request_id="r-1", user_id=7):
        Book.objects.bulk_create([Book(isbn=f"r{i}", title="x") for i in range(3)])
    with audit_context(request_id="r-2"):
        Book.objects.create(isbn="other", title="y")
        Book.objects.filter(isbn="r0").update(title="z")
    Book.objects.create(isbn="none", title="z")
    search = read_model.objects.filter_context(request_id="r-1").order_by("-pk")[:100]
    outer = explain(search)
    assert "Append" not in outer and not context_probes(outer), outer
    assert f"Function Scan on {spec.context_function}" in outer, outer
    # The same entries, with the same columns, as the context view's.
    view = read_model.objects.extra(where=["audit_context @> %s::jsonb"], params=['{"request_id": "r-1"}'])
    view = _on_view(view, spec.context_view).order_by("-pk")
    assert [e.object_pk for e in search] == ["r2", "r1", "r0"]
    assert [_fields(e) for e in search] == [_fields(e) for e in view]
    both = read_model.objects.filter_context_any([[{"request_id": "r-1"}, {"request_id": "r-2"}]])
    assert sorted(e.object_pk for e in both) == ["other", "r0", "r0", "r1", "r2"]
    # The first list of objects finds the context rows; the others still select among them.
    assert (
        list(read_model.objects.filter_context_any([[{"request_id": "r-2"}], [{"request_id": "r-1"}]])) == []
    )
    # The function's statements: its array of objects made, then the search (its plan).
    array, plan = function_plans(search, bitmaps=True)
    assert "jsonb_array_elements" in array, array
    # The generic plan: the objects are a parameter, not the request's id.
    assert re.search(r"@> ANY \(\$\d+\)", plan) and "r-1" not in plan, plan
    assert "Seq Scan" not in plan, plan
    probes = context_probes(plan)
    gin = [line for line in probes if "Bitmap Heap Scan" not in line]
    assert gin and all(re.match(r"->  Bitmap Index Scan on \w+_context_idx ", line) for line in gin), plan
    assert len(gin) == len([line for line in probes if "Bitmap Heap Scan" in line]), plan
    # Each audit partition through its context id index (a probe, or a bitmap of it where
    # an earlier test's statistics make one as cheap), and only that of the row's time runs.
    audit = [line for line in plan.splitlines() if "audit_context_id_idx" in line]
    assert len(audit) == len(gin), plan
    executed = [line for line in audit if "never executed" not in line]
    assert len(executed) == 1, plan


def _fields(entry) -> dict:
    return {field.attname: getattr(entry, field.attname) for field in entry._meta.concrete_fields}


def test_a_users_newest_entries_are_a_walk_down_the_user_index(layout, read_model):
    """``filter_context(user_id=...).newest_first()[:n]`` walks the context table's user
    index newest first and stops after n entries: the plan sorts no more than the entries
    of one time (an incremental sort on the index's order), where a sort of the join would
    read all of the user's entries first, however many there are."""
    with audit_context(user_id=7):
        Book.objects.bulk_create([Book(isbn=f"w{i}", title="x") for i in range(30)])
    with audit_context(user_id=8):
        Book.objects.create(isbn="other", title="y")
    newest = read_model.objects.filter_context(user_id=7).newest_first()
    everything = sorted(
        read_model.objects.filter(pk__in=[e.pk for e in newest]),
        key=lambda e: (getattr(e, e._time), e.pk),
        reverse=True,
    )
    assert [e.pk for e in newest[:5]] == [e.pk for e in everything[:5]] and len(everything) == 30
    assert {e.audit_context["user_id"] for e in newest} == {7}
    plan = explain(read_model.objects.filter_context(user_id=7).newest_first()[:5])
    walks = [line for line in context_probes(plan) if "_expr_created_idx" in line]
    assert walks and all("Index Scan Backward" in line for line in walks), plan
    assert not re.search(r"(?<!Incremental )Sort  ", plan), plan
    assert "Incremental Sort" in plan or "Sort" not in plan, plan


def test_history_reads_without_parallel_workers_nor_jit_and_leaves_the_settings(layout, read_model):
    """The object function, which ``history()`` and ``filter_object()`` read, plans with
    parallel workers and JIT off, for its own call only: a planner costing a context probe
    in every partition per expected row starts workers for a few rows. The caller's values
    are the same after it."""
    book = Book.objects.create(isbn="serial", title="a")
    for title in "bcd":
        book.title = title
        book.save()
    with connection.cursor() as cursor:
        for setting in (
            "max_parallel_workers_per_gather = 3",
            "parallel_setup_cost = 0",
            "parallel_tuple_cost = 0",
            "min_parallel_index_scan_size = 0",
            "min_parallel_table_scan_size = 0",
            "jit = on",
            "jit_above_cost = 0",
        ):
            cursor.execute(f"SET LOCAL {setting}")
    (plan,) = function_plans(read_model.objects.filter_object(Book, book.pk))
    assert "Gather" not in plan and "JIT" not in plan, plan
    page = read_model.objects.history(book)
    assert [v.row["title"] for v in page] == ["a", "b", "c", "d"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('max_parallel_workers_per_gather'), current_setting('jit')")
        assert cursor.fetchone() == ("3", "on")


def test_a_page_iterates_counts_and_indexes_its_versions(layout, read_model):
    book = Book.objects.create(isbn="it", title="a")
    book.title = "b"
    book.save()
    page = read_model.objects.history(book)
    assert len(page) == 2
    assert [v.operation for v in page] == [Operation.INSERT, Operation.UPDATE]
    assert page[0] is page.versions[0] and page[-1].changes == {"title": ("a", "b")}
    assert [v.changes for v in page[1:]] == [{"title": ("a", "b")}]
    assert list(read_model.objects.history(Book(isbn="never"))) == []


def test_the_history_of_a_deleted_row_is_read_by_model_and_key(layout, read_model):
    book = Book.objects.create(isbn="gone", title="a")
    Book.objects.filter(isbn="gone").delete()
    page = read_model.objects.history(Book, "gone")
    assert [v.operation for v in page] == [Operation.INSERT, Operation.DELETE]
    assert [v.entry.pk for v in page] == [v.entry.pk for v in read_model.objects.history(book)]
    assert len(read_model.objects.history(Book, "gone", all_layouts=True)) == 2
    with pytest.raises(TypeError) as raised:
        read_model.objects.history(Book)
    assert str(raised.value) == "history(Book, pk): the key of the row is missing"
    with pytest.raises(TypeError) as raised:
        read_model.objects.history(book, "gone")
    assert str(raised.value) == (
        "history(obj) takes an instance alone, or history(Model, pk) a model and a key; got Book and 'gone'"
    )


def test_changes_are_typed_by_the_models_fields(layout, read_model):
    ann = Customer.objects.create(name="Ann")
    placed = dt.datetime(2026, 12, 6, 9, 24, 20, tzinfo=dt.UTC)
    order = Order.objects.create(customer=ann, total=Decimal("19.90"), placed_at=placed)
    order.total = Decimal("20.00")
    order.placed_at = placed + dt.timedelta(hours=1)
    order.save()
    Order.objects.filter(pk=order.pk).delete()
    insert, update, delete = read_model.objects.history(Order, order.pk)
    assert insert.changes["total"] == (None, Decimal("19.90"))
    assert str(insert.changes["total"][1]) == "19.90"  # the scale of the column, not 19.9
    assert insert.changes["customer"] == (None, ann.pk)  # a UUID, as the field gives it
    assert update.changes == {
        "total": (Decimal("19.90"), Decimal("20.00")),
        "placed_at": (placed, placed + dt.timedelta(hours=1)),
    }
    old, new = update.changes["placed_at"]
    assert old.utcoffset() == dt.timedelta(0) and new.tzinfo is not None  # aware datetimes
    assert delete.changes["total"] == (Decimal("20.00"), None)
    assert delete.changes["tags"] == ([], None) and delete.changes["quantity"] == (None, None)


def test_a_value_that_no_longer_fits_its_column_keeps_its_json_value(layout, read_model):
    Book.objects.create(isbn="ty", title="not a number")
    # A rewrite the guard refuses (its values change unaudited): a superuser steps past it.
    past_the_guard("ALTER TABLE library_book ALTER COLUMN title TYPE integer USING 7")
    (insert,) = read_model.objects.history(Book, "ty")
    assert insert.changes == {"isbn": (None, "ty"), "title": (None, "not a number")}
