"""Undo from Python: ``version.revert()`` and ``Entry.objects.revert(Model, pk, to=...)``
write an object back through the ORM, audited, or refuse with nothing written."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import django
import pytest
from django.db.models import UniqueConstraint
from django.db.models.signals import post_save
from library.models import Book
from shop.models import Customer, Order

from django_partitioned_audit.context import audit_context
from django_partitioned_audit.errors import RevertError
from django_partitioned_audit.models import Operation
from django_partitioned_audit.models import RevertError as ExportedRevertError
from django_partitioned_audit.sync import sync
from partitioned_audit.errors import AuditError
from tests.helpers import generated_item_model, sql

PLACED = dt.datetime(2026, 11, 30, 9, 15, tzinfo=dt.UTC)


def trail_of(read_model: Any, model: Any, pk: Any) -> list[tuple[str, dict[str, Any] | None]]:
    """(operation, context) of each version of one object, oldest first."""
    return [(e.get_operation().name, e.audit_context) for e in read_model.objects.filter_object(model, pk)]


def order_values(order: Order) -> dict[str, Any]:
    order = Order.objects.get(pk=order.pk)
    return {
        f.attname: bytes(getattr(order, f.attname)) if f.name == "blob" else getattr(order, f.attname)
        for f in Order._meta.concrete_fields
    }


@pytest.fixture
def placed_order(layout: str) -> Order:
    ann = Customer.objects.create(name="Ann", password="secret")
    return Order.objects.create(
        customer=ann,
        total=Decimal("19.90"),
        status="new",
        quantity=2,
        data={"gift": True, "note": "ribbon"},
        tags=["book", "paper"],
        placed_at=PLACED,
        blob=b"\x00\x01",
    )


def test_revert_writes_every_typed_value_back_through_the_orm_audited_with_the_callers_context(
    read_model, placed_order
):
    original = order_values(placed_order)
    bob = Customer.objects.create(name="Bob")
    Order.objects.filter(pk=placed_order.pk).update(
        customer=bob,
        total=Decimal("0.10"),
        status="paid",
        quantity=None,
        data=[1],
        tags=[],
        placed_at=None,
        blob=b"",
    )
    saved: list[tuple[Any, bool, Any]] = []

    def receiver(sender: Any, instance: Any, created: bool, update_fields: Any, **kwargs: Any) -> None:
        saved.append((instance.pk, created, sorted(update_fields or ())))

    post_save.connect(receiver, sender=Order)
    try:
        first = read_model.objects.history(placed_order)[0]
        with audit_context(user_id=5, username="ann"):
            reverted = first.revert()
    finally:
        post_save.disconnect(receiver, sender=Order)
    assert isinstance(reverted, Order) and reverted.pk == placed_order.pk
    assert order_values(placed_order) == original
    assert saved == [
        (
            placed_order.pk,
            False,
            ["blob", "customer", "data", "placed_at", "quantity", "status", "tags", "total"],
        )
    ]
    assert trail_of(read_model, Order, placed_order.pk) == [
        ("INSERT", None),
        ("UPDATE", None),
        ("UPDATE", {"user_id": 5, "username": "ann", "revert_of": first.entry.pk}),
    ]
    last = read_model.objects.history(placed_order)[-1]
    assert last.changes["total"] == (Decimal("0.10"), Decimal("19.90"))
    assert last.changes["customer"] == (bob.pk, placed_order.customer_id)


def test_the_manager_reverts_to_a_version_or_an_entry(read_model, layout):
    book = Book.objects.create(isbn="r1", title="first")
    book.title = "second"
    book.save()
    book.title = "third"
    book.save()
    first, second, _ = read_model.objects.history(book)
    assert read_model.objects.revert(Book, "r1", to=second).title == "second"
    assert Book.objects.get(pk="r1").title == "second"
    read_model.objects.revert(Book, "r1", to=first.entry)
    assert Book.objects.get(pk="r1").title == "first"
    with pytest.raises(TypeError) as raised:
        read_model.objects.revert(Book, "r1", to=first.entry.pk)
    assert str(raised.value) == "to must be a Version, an audit entry or a datetime, got int"


@pytest.mark.django_db(transaction=True)
def test_revert_to_a_time_takes_the_version_in_force_then(layout, read_model):
    from tests.helpers import empty_trails

    empty_trails()
    try:
        book = Book.objects.create(isbn="t1", title="first")
        book.title = "second"
        book.save()
        insert, update = read_model.objects.history(book)
        before = insert.time - dt.timedelta(microseconds=1)
        with pytest.raises(RevertError) as raised:
            read_model.objects.revert(Book, "t1", to=before)
        assert str(raised.value) == (
            f"Cannot revert library.Book t1 to {before.isoformat()}: it has no version at or before that time."
        )
        read_model.objects.revert(Book, "t1", to=update.time - dt.timedelta(microseconds=1))
        assert Book.objects.get(pk="t1").title == "first"
        Book.objects.filter(pk="t1").delete()
        delete = read_model.objects.history(book)[-1]
        with pytest.raises(RevertError) as raised:
            read_model.objects.revert(Book, "t1", to=delete.time)
        assert str(raised.value) == (
            f"Cannot revert library.Book t1 to {delete.time.isoformat()}: it was deleted then "
            f"(event {delete.entry.pk}). Revert it to that event to bring it back as it was when deleted."
        )
        read_model.objects.revert(Book, "t1", to=update.time)
        assert Book.objects.get(pk="t1").title == "second"
    finally:
        Book.objects.all().delete()
        empty_trails()


def test_a_deleted_object_comes_back_with_its_old_key_from_its_delete_or_an_earlier_version(
    read_model, placed_order
):
    original = order_values(placed_order)
    Order.objects.filter(pk=placed_order.pk).delete()
    delete = read_model.objects.history(Order, placed_order.pk)[-1]
    assert delete.operation is Operation.DELETE
    with audit_context(username="ann"):
        restored = delete.revert()
    assert restored.pk == placed_order.pk and order_values(placed_order) == original
    assert trail_of(read_model, Order, placed_order.pk)[-1] == (
        "INSERT",
        {"username": "ann", "revert_of": delete.entry.pk},
    )
    Order.objects.filter(pk=placed_order.pk).update(status="paid")
    Order.objects.filter(pk=placed_order.pk).delete()
    first = read_model.objects.history(Order, placed_order.pk)[0]
    assert read_model.objects.revert(Order, placed_order.pk, to=first).status == "new"
    assert Order.objects.get(pk=placed_order.pk).status == "new"


def test_a_masked_column_is_never_written_back(read_model, layout):
    ann = Customer.objects.create(name="Ann", password="secret")
    ann.name, ann.password = "Anne", "changed"
    ann.save()
    first = read_model.objects.history(ann)[0]
    first.revert()
    assert Customer.objects.filter(pk=ann.pk).values_list("name", "password").get() == ("Ann", "changed")
    Customer.objects.filter(pk=ann.pk).delete()
    read_model.objects.history(Customer, ann.pk)[-1].revert()
    # Not in the trail: the restored row gets the field's default.
    assert Customer.objects.filter(pk=ann.pk).values_list("name", "password").get() == ("Ann", "")


@pytest.mark.parametrize("setting", ["DPA_MASKED_COLUMNS", "DPA_EXCLUDED_COLUMNS"])
def test_a_restore_is_refused_when_a_column_the_trail_lacks_has_no_default(read_model, settings, setting):
    setattr(settings, setting, {"library.book": ["title"]})
    sync("default", verbosity=0)
    book = Book.objects.create(isbn="m1", title="Dune")
    book.title = "Emma"
    book.save()
    read_model.objects.history(book)[0].revert()  # the row exists: its title stays
    assert Book.objects.get(pk="m1").title == "Emma"
    Book.objects.filter(pk="m1").delete()
    delete = read_model.objects.history(Book, "m1")[-1]
    with pytest.raises(RevertError) as raised:
        delete.revert()
    assert str(raised.value) == (
        f"Cannot revert library.Book m1 to event {delete.entry.pk}: the object no longer exists and the "
        "trail does not hold its columns title (masked or excluded), which are not null and have no "
        "default. Write it back by hand."
    )
    assert not Book.objects.filter(pk="m1").exists()


def test_a_unique_constraint_taken_by_another_row_is_refused_before_writing(read_model, layout, monkeypatch):
    sql('CREATE UNIQUE INDEX "book_title_unique" ON library_book (title)')
    monkeypatch.setattr(
        Book._meta, "constraints", [UniqueConstraint(fields=["title"], name="book_title_unique")]
    )
    book = Book.objects.create(isbn="u1", title="Dune")
    book.title = "Emma"
    book.save()
    Book.objects.create(isbn="u2", title="Dune")
    before = trail_of(read_model, Book, "u1")
    first = read_model.objects.history(book)[0]
    with pytest.raises(RevertError) as raised:
        first.revert()
    assert str(raised.value) == (
        f"Cannot revert library.Book u1 to event {first.entry.pk}: another row holds the same values "
        "(title: Book with this Title already exists.). Change that row first."
    )
    assert Book.objects.get(pk="u1").title == "Emma" and trail_of(read_model, Book, "u1") == before


def test_a_constraint_only_the_database_knows_is_refused_with_its_name_and_nothing_written(
    read_model, layout
):
    sql('CREATE UNIQUE INDEX "book_title_only_in_db" ON library_book (title)')
    book = Book.objects.create(isbn="d1", title="Dune")
    Book.objects.filter(pk="d1").delete()
    Book.objects.create(isbn="d2", title="Dune")
    delete = read_model.objects.history(Book, "d1")[-1]
    with pytest.raises(RevertError) as raised:
        delete.revert()
    assert str(raised.value) == (
        f"Cannot revert library.Book d1 to event {delete.entry.pk}: the database refused the write "
        '(constraint book_title_only_in_db): duplicate key value violates unique constraint "book_title_only_in_db" '
        "DETAIL:  Key (title)=(Dune) already exists."
    )
    assert not Book.objects.filter(pk="d1").exists()
    assert [op for op, _ in trail_of(read_model, Book, "d1")] == ["INSERT", "DELETE"]
    assert book.pk == "d1"


def test_a_foreign_key_whose_target_is_gone_is_refused(read_model, placed_order):
    Order.objects.filter(pk=placed_order.pk).delete()
    Customer.objects.filter(pk=placed_order.customer_id).delete()
    delete = read_model.objects.history(Order, placed_order.pk)[-1]
    with pytest.raises(RevertError) as raised:
        delete.revert()
    assert str(raised.value) == (
        f"Cannot revert shop.Order {placed_order.pk} to event {delete.entry.pk}: its foreign keys point to "
        f"rows that no longer exist: customer (shop.Customer {placed_order.customer_id}). Restore those first."
    )
    assert not Order.objects.filter(pk=placed_order.pk).exists()


def test_a_version_with_a_column_the_model_no_longer_has_is_refused(read_model, layout):
    sql("ALTER TABLE library_book ADD COLUMN subtitle text, ADD COLUMN pages integer")
    sql("INSERT INTO library_book (isbn, title, subtitle) VALUES ('c1', 'Dune', 'The first')")
    sql("ALTER TABLE library_book DROP COLUMN subtitle, DROP COLUMN pages")
    Book.objects.filter(pk="c1").update(title="Emma")
    first = read_model.objects.history(Book, "c1")[0]
    with pytest.raises(RevertError) as raised:
        first.revert()
    assert str(raised.value) == (
        f"Cannot revert library.Book c1 to event {first.entry.pk}: its row has columns the model no longer "
        "has: pages, subtitle. Write it back by hand, or give the model those fields again."
    )
    assert Book.objects.get(pk="c1").title == "Emma"


def test_a_version_lacking_a_non_null_column_the_model_has_since_is_refused(read_model, layout):
    sql("ALTER TABLE library_book DROP COLUMN title")
    sql("INSERT INTO library_book (isbn) VALUES ('c2')")
    sql("ALTER TABLE library_book ADD COLUMN title varchar(200) NOT NULL DEFAULT 'later'")
    sql("ALTER TABLE library_book ALTER COLUMN title DROP DEFAULT")
    Book.objects.filter(pk="c2").update(title="Emma")
    first = read_model.objects.history(Book, "c2")[0]
    with pytest.raises(RevertError) as raised:
        first.revert()
    assert str(raised.value) == (
        f"Cannot revert library.Book c2 to event {first.entry.pk}: its row lacks columns the model has "
        "since, which are not null and have no default: title. Write it back by hand."
    )
    assert Book.objects.get(pk="c2").title == "Emma"


def test_a_version_of_another_object_or_a_truncate_is_refused(read_model, layout):
    Book.objects.create(isbn="o1", title="a")
    Book.objects.create(isbn="o2", title="b")
    other = read_model.objects.history(Book, "o2")[0]
    with pytest.raises(RevertError) as raised:
        read_model.objects.revert(Book, "o1", to=other)
    assert str(raised.value) == (
        f"Cannot revert library.Book o1 to event {other.entry.pk}: that event is a change of "
        "public.library_book o2, not of this object."
    )
    with pytest.raises(RevertError) as raised:
        read_model.objects.revert(Order, 1, to=other)
    assert str(raised.value) == (
        f"Cannot revert shop.Order 1 to event {other.entry.pk}: that event is a change of "
        "public.library_book o2, not of this object."
    )
    with pytest.raises(RevertError) as raised:
        read_model.objects.revert(Order, "x", to=other)
    assert (
        str(raised.value) == "Cannot revert shop.Order 'x': not a valid key (“x” value must be an integer.)."
    )


def test_revert_error_is_an_audit_error_exported_with_the_read_models():
    assert issubclass(RevertError, AuditError) and ExportedRevertError is RevertError


def test_deleted_lists_the_objects_whose_last_version_is_a_delete_by_key_in_bounded_pages(read_model, layout):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for isbn in ("b1", "b2", "b3", "b4", "b5", "b6"):
        Book.objects.create(isbn=isbn, title=f"title of {isbn}")
    Book.objects.filter(isbn__in=["b2", "b4", "b5"]).delete()
    read_model.objects.history(Book, "b5")[-1].revert()  # back: not deleted any more
    Order.objects.filter(pk=Order.objects.create(customer=Customer.objects.create(name="A")).pk).delete()
    with CaptureQueriesContext(connection) as queries:
        page = read_model.objects.deleted(Book)
    statements = [q["sql"].split()[0] for q in queries if "SAVEPOINT" not in q["sql"]]
    # The keys, the rows there now, the DELETE entries, their typed rows: whatever the trail's size.
    assert statements == ["WITH", "SELECT", "SELECT", "SELECT"]
    with connection.cursor() as cursor:  # the keys are walked through the (table, key) index only
        # (Without this, the few rows here, or statistics an earlier test's ANALYZE left,
        # can make a sequential scan the cheapest: a Seq Scan then means no index serves.)
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + queries[0]["sql"])
        plan = "\n".join(line for (line,) in cursor.fetchall())
        cursor.execute("SET LOCAL enable_seqscan = on")
    assert "Seq Scan" not in plan and "object_pk_idx" in plan, plan
    assert [(v.operation, v.entry.object_pk, v.row["title"]) for v in page] == [
        (Operation.DELETE, "b2", "title of b2"),
        (Operation.DELETE, "b4", "title of b4"),
    ]
    assert page.next_after is None
    first = read_model.objects.deleted(Book, limit=1)
    assert [v.entry.object_pk for v in first] == ["b2"] and first.next_after == "b2"
    second = read_model.objects.deleted(Book, limit=1, after="b2")
    assert [v.entry.object_pk for v in second] == ["b4"] and second.next_after is None
    # At most `scan` keys per page: a page may come back short, with a cursor past them.
    pages, after = [], None
    while True:
        page = read_model.objects.deleted(Book, after=after, scan=2)
        pages.append([v.entry.object_pk for v in page])
        if page.next_after is None:
            break
        after = page.next_after
    assert pages == [["b2"], ["b4"], [], []]
    read_model.objects.deleted(Book)[0].revert()
    assert Book.objects.filter(isbn="b2").exists()
    assert [v.entry.object_pk for v in read_model.objects.deleted(Book)] == ["b4"]
    with pytest.raises(ValueError) as raised:
        read_model.objects.deleted(Book, scan=0)
    assert str(raised.value) == "scan must be a positive integer, got 0"


def test_the_example_of_docs_undo_runs_as_written(layout, capsys):
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "undo.md").read_text()
    example = text.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(example, "docs/undo.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "its foreign keys point to rows that no longer exist: customer (shop.Customer " in printed


@pytest.mark.pg(">=18")
@pytest.mark.skipif(django.VERSION < (5, 0), reason="GeneratedField needs Django 5.0")
def test_generated_columns_are_never_written_back(layout, read_model):
    GenItem = generated_item_model(layout)
    item = GenItem.objects.create(price=10, qty=2)
    GenItem.objects.filter(pk=item.pk).update(qty=4)
    read_model.objects.history(GenItem, item.pk)[0].revert()
    assert sql("SELECT price, qty, total, total_stored FROM library_gen_item") == [(10, 2, 20, 20)]
    GenItem.objects.filter(pk=item.pk).delete()
    read_model.objects.history(GenItem, item.pk)[-1].revert()
    assert sql("SELECT id, price, qty, total, total_stored FROM library_gen_item") == [
        (item.pk, 10, 2, 20, 20)
    ]
