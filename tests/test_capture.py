"""Every way of writing to a registered table is audited, in both layouts."""

from __future__ import annotations

import datetime
import uuid
from decimal import Decimal

import django
import pytest
from django.db import connection
from library.models import Book, Loan, Shelved, Weird
from shop.models import Customer, Order

from django_partitioned_audit.models import Operation
from tests.conftest import BOTH_LEVELS, both_levels
from tests.helpers import sql, trail

# Every test here holds at both capture levels (DPA_CAPTURE_LEVEL).
capture_level = pytest.fixture(params=BOTH_LEVELS)(both_levels)


def test_orm_create_save_delete(layout, read_model):
    book = Book.objects.create(isbn="978-1", title="Dune")
    book.title = "Dune Messiah"
    book.save()
    book.delete()
    assert trail(read_model, Book) == [
        ("I", "978-1", {"isbn": "978-1", "title": "Dune"}),
        ("U", "978-1", {"isbn": "978-1", "title": "Dune Messiah"}),
        ("D", "978-1", {"isbn": "978-1", "title": "Dune Messiah"}),
    ]


def test_raw_sql_is_audited(layout, read_model):
    sql("INSERT INTO library_book (isbn, title) VALUES (%s, %s), (%s, %s)", ["1", "a", "2", "b"])
    sql("UPDATE library_book SET title = upper(title)")
    sql("DELETE FROM library_book WHERE isbn = %s", ["2"])
    ops = [(op, pk, row["title"]) for op, pk, row in trail(read_model, Book)]
    assert ops == [("I", "1", "a"), ("I", "2", "b"), ("U", "1", "A"), ("U", "2", "B"), ("D", "2", "B")]


def test_queryset_update_and_bulk_create_record_every_row(layout, read_model):
    Book.objects.bulk_create(Book(isbn=str(i), title=f"t{i}") for i in range(250))
    changed = Book.objects.filter(isbn__startswith="1").update(title="x")
    entries = trail(read_model, Book)
    assert sum(op == "I" for op, _, _ in entries) == 250
    updates = [(pk, row) for op, pk, row in entries if op == "U"]
    assert len(updates) == changed
    assert all(row == {"isbn": pk, "title": "x"} for pk, row in updates)


def test_update_pairs_old_and_new_rows(layout, read_model):
    """Multi-row UPDATE: each recorded change belongs to its own row, even when the key changes."""
    Book.objects.bulk_create(Book(isbn=str(i), title=str(i)) for i in range(1, 51))
    sql("UPDATE library_book SET title = (title::int * 2)::text, isbn = 'k' || isbn")
    updates = [(pk, row) for op, pk, row in trail(read_model, Book) if op == "U"]
    # Every changed key: one entry under the new key, one under the old (the key trigger).
    assert sorted(pk for pk, _ in updates) == sorted(
        [str(i) for i in range(1, 51)] + [f"k{i}" for i in range(1, 51)]
    )
    for _pk, row in updates:
        assert row["isbn"] == "k" + str(int(row["title"]) // 2)
    if layout == "advanced":
        for entry in read_model.objects.filter(action="U"):
            assert entry.changed_fields["isbn"] == "k" + entry.row_data["isbn"]
            assert int(entry.changed_fields["title"]) == 2 * int(entry.row_data["title"])
            assert entry.object_pk in (entry.row_data["isbn"], entry.changed_fields["isbn"])


def test_orm_cascade_delete_is_audited(layout, read_model):
    customer = Customer.objects.create(name="Ann")
    Order.objects.create(customer=customer)
    Order.objects.create(customer=customer)
    customer.delete()
    assert [op for op, _, _ in trail(read_model, Order)] == ["I", "I", "D", "D"]
    assert [op for op, _, _ in trail(read_model, Customer)] == ["I", "D"]


def test_truncate_is_audited(layout, read_model):
    Book.objects.create(isbn="1", title="a")
    sql("TRUNCATE library_book CASCADE")
    entry = read_model.objects.filter_model(Book).filter_operation(Operation.TRUNCATE).get()
    assert entry.is_truncate() and entry.object_pk is None and entry.get_row_data() == {}
    assert entry.get_instance() is None  # a TRUNCATE has no row
    assert [e.is_truncate() for e in read_model.objects.filter_model(Book)] == [False, True]
    if layout == "advanced":
        assert entry.statement_only and entry.row_data is None and "TRUNCATE" in entry.client_query
    else:
        assert entry.object_payload is None and entry.object_schema == "public"


def test_every_row_written_outside_a_context_holds_the_login_role_and_makes_no_context_row(
    layout, read_model
):
    """Inserts, an UPDATE changing the key (filed under both keys: the key capture's row too),
    a DELETE and a TRUNCATE, outside any context, at either capture level: every audit row
    holds the login role itself, none points at a context row, and none is made."""
    from partitioned_audit.layouts import LAYOUTS

    table = LAYOUTS[layout]
    Book.objects.create(isbn="1", title="a")
    Book.objects.filter(isbn="1").update(isbn="2")
    Book.objects.filter(isbn="2").delete()
    Book.objects.create(isbn="3", title="c")
    sql("SET CONSTRAINTS ALL IMMEDIATE")  # (the foreign keys' checks, which TRUNCATE waits for)
    sql("TRUNCATE library_book CASCADE")
    ((login,),) = sql("SELECT session_user::text")
    stored = sql(
        f"SELECT {table.operation_column}, session_user_name, audit_context_id FROM {table.table}"  # noqa: S608
    )
    assert sorted(op for op, _, _ in stored) == ["D", "I", "I", "T", "U", "U"]
    assert {(who, context) for _, who, context in stored} == {(login, None)}
    assert sql(f"SELECT count(*) FROM {table.context_table}") == [(0,)]  # noqa: S608
    assert {e.session_user_name for e in read_model.objects.filter_model(Book)} == {login}


def test_a_statement_that_changed_no_row_makes_no_context_row(layout, read_model):
    """Inside a context, an UPDATE, a DELETE and an INSERT ... SELECT that touched no row
    (a statement-level trigger fires for them all) make no context row; the transaction's
    first row makes one, and every later row of the transaction points at it."""
    from django_partitioned_audit.context import audit_context
    from partitioned_audit.layouts import LAYOUTS

    table = LAYOUTS[layout]
    contexts = f"SELECT context_id, context ->> 'user_id' FROM {table.context_table}"  # noqa: S608
    with audit_context(user_id=7):
        Book.objects.filter(isbn="missing").update(title="x")
        Book.objects.filter(isbn="missing").delete()
        sql("DELETE FROM library_book WHERE isbn = 'missing'")
        sql("INSERT INTO library_book (isbn, title) SELECT 'n', 'n' WHERE false")
        assert sql(contexts) == []
        Book.objects.create(isbn="1", title="a")
        sql("UPDATE library_book SET title = 'b' WHERE isbn = 'missing'")
        Book.objects.filter(isbn="1").update(title="b")
    ((context_id, user_id),) = sql(contexts)
    assert user_id == "7"
    stored = sql(f"SELECT {table.operation_column}, audit_context_id FROM {table.table}")  # noqa: S608
    assert sorted(stored) == [("I", context_id), ("U", context_id)]
    assert [e.audit_context for e in read_model.objects.filter_model(Book)] == [{"user_id": 7}] * 2


def test_get_instance_needs_a_known_table(layout, read_model):
    sql("CREATE TABLE loose (id int PRIMARY KEY)")
    from partitioned_audit import TableSpec, enable, get_layout

    with connection.cursor() as cursor:
        enable(cursor, get_layout(layout), TableSpec("public", "loose", ("id",)))
    sql("INSERT INTO loose VALUES (1)")
    entry = read_model.objects.get(
        object_pk="1", **{"object_table" if layout == "simple" else "table_name": "loose"}
    )
    with pytest.raises(LookupError) as info:
        entry.get_instance()
    assert (
        str(info.value) == "no installed model has the table public.loose; pass the model to get_instance()"
    )


def test_uuid_primary_key_and_masked_password(layout, read_model):
    customer = Customer.objects.create(name="Bob", password="pbkdf2_sha256$secret")
    ((op, pk, row),) = trail(read_model, Customer)
    assert pk == str(customer.pk) and uuid.UUID(pk) == customer.pk
    assert row == {"id": str(customer.pk), "name": "Bob", "password": "[masked]"}
    table = "audit_simple" if layout == "simple" else "logged_actions"
    assert sql(f"SELECT count(*) FROM {table} WHERE {table}::text LIKE '%%secret%%'") == [(0,)]


def test_null_password_stays_null(layout, read_model):
    sql("ALTER TABLE shop_customer ALTER COLUMN password DROP NOT NULL")
    sql("INSERT INTO shop_customer (id, name, password) VALUES (%s, 'n', NULL)", [str(uuid.uuid4())])
    ((_, _, row),) = trail(read_model, Customer)
    assert row["password"] is None


def test_types_survive_as_json(layout, read_model):
    when = datetime.datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=datetime.UTC)
    customer = Customer.objects.create(name="C")
    order = Order.objects.create(
        customer=customer,
        total=Decimal("1234.50"),
        quantity=None,
        data={"a": [1, {"b": None}], "n": 1.5},
        tags=["x", "y"],
        placed_at=when,
        blob=b"\x00\xff",
    )
    row = read_model.objects.filter_object(Order, order.pk).get().get_row_data()
    assert row["total"] == 1234.5 and isinstance(row["total"], int | float)
    assert row["quantity"] is None
    assert row["data"] == {"a": [1, {"b": None}], "n": 1.5}
    assert row["tags"] == ["x", "y"]
    assert datetime.datetime.fromisoformat(row["placed_at"]) == when
    assert bytes.fromhex(row["blob"][2:]) == b"\x00\xff"
    assert row["customer_id"] == str(customer.pk)


def test_get_instance_returns_every_version_typed_by_the_model(layout, read_model):
    when = datetime.datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=datetime.UTC)
    customer = Customer.objects.create(name="C", password="secret hash")
    order = Order.objects.create(
        customer=customer,
        total=Decimal("9876543210.99"),  # more digits than a float keeps
        data={"a": [1, {"b": None}], "n": 1.5},
        tags=["x", "y"],
        placed_at=when,
        blob=b"\x00\xff",
    )
    order.status, order.quantity, order.tags = "paid", 3, []
    order.save()
    pk = order.pk
    order.delete()
    versions = [e.get_instance() for e in read_model.objects.filter_object(Order, pk)]
    assert [type(v) for v in versions] == [Order, Order, Order]
    first, second, deleted = versions
    assert first.total == Decimal("9876543210.99") and isinstance(first.total, Decimal)
    assert first.placed_at == when and first.data == {"a": [1, {"b": None}], "n": 1.5}
    assert bytes(first.blob) == b"\x00\xff" and first.tags == ["x", "y"] and first.customer_id == customer.pk
    assert (first.status, first.quantity) == ("new", None)
    assert (second.status, second.quantity, second.tags) == ("paid", 3, [])
    assert deleted.status == "paid" and deleted.pk == pk
    # Masked columns come back as None, not as the mask; the model is found from the table.
    (snapshot,) = [e.get_instance(Customer) for e in read_model.objects.filter_object(Customer, customer.pk)]
    assert snapshot.pk == customer.pk and snapshot.name == "C" and snapshot.password is None


@pytest.mark.skipif(django.VERSION < (5, 2), reason="CompositePrimaryKey is new in Django 5.2")
def test_composite_primary_key_through_django(layout, read_model):
    from library.models import Copy

    Copy.objects.create(book_isbn="978-1", number=2)
    Copy.objects.filter(book_isbn="978-1", number=2).update(condition="worn")
    entries = list(read_model.objects.filter_object(Copy, ("978-1", 2)))
    assert [e.object_pk for e in entries] == ['["978-1", 2]', '["978-1", 2]']
    assert [e.get_row_data()["condition"] for e in entries] == ["good", "worn"]
    snapshot = entries[-1].get_instance()
    assert isinstance(snapshot, Copy) and snapshot.pk == ("978-1", 2) and snapshot.condition == "worn"
    Copy.objects.create(book_isbn="ключ", number=3)  # non-ASCII: Python and jsonb agree on the text
    assert read_model.objects.filter_object(Copy, ("ключ", 3)).count() == 1


def test_filter_payload_matches_typed_and_text_values(layout, read_model):
    customer = Customer.objects.create(name="D")
    order = Order.objects.create(customer=customer, quantity=42)
    by_int = read_model.objects.filter_model(Order).filter_payload(quantity=42)
    by_text = read_model.objects.filter_model(Order).filter_payload(quantity="42")
    assert [e.pk for e in by_int] == [e.pk for e in by_text] != []
    assert not read_model.objects.filter_model(Order).filter_payload(quantity=43).exists()
    assert read_model.objects.filter_payload(id=order.pk).filter_model(Order).count() == 1
    with pytest.raises(TypeError, match="at least one key=value"):
        read_model.objects.filter_payload()


def test_filter_operation(layout, read_model):
    book = Book.objects.create(isbn="1", title="a")
    book.delete()
    assert read_model.objects.filter_model(Book).filter_operation(Operation.DELETE).get().is_delete()
    assert read_model.objects.filter_model(Book).filter_operation(Operation.INSERT).get().is_insert()
    assert not read_model.objects.filter_model(Book).filter_operation(Operation.TRUNCATE).exists()


def test_hostile_names_and_other_schema(layout, read_model):
    Weird.objects.create(select=7, label="q")
    Shelved.objects.create(name="s")
    ((_, _, weird),) = trail(read_model, Weird)
    assert weird["select"] == 7 and weird["Label Mixed"] == "q"
    ((_, _, shelved),) = trail(read_model, Shelved)
    assert shelved["name"] == "s"
    schema_column = "object_schema" if layout == "simple" else "schema_name"
    assert (
        read_model.objects.filter_model(Shelved).values_list(schema_column, flat=True).get() == "library_ext"
    )


def test_audit_disabled_model_is_not_audited(layout, read_model):
    book = Book.objects.create(isbn="1", title="a")
    Loan.objects.create(book=book)
    assert not read_model.objects.filter(
        **{"object_table" if layout == "simple" else "table_name": "library_loan"}
    ).exists()


def test_advanced_records_session_details_and_query_once_per_statement(settings, db):
    from django_partitioned_audit.models import AdvancedAuditEntry
    from django_partitioned_audit.sync import sync
    from tests.conftest import MANAGERS

    # Once per statement is the statement level's; the row level keeps the query on every
    # row (test_capture_level.py), so the level is pinned whatever DPA_CAPTURE_LEVEL says.
    settings.DPA_CAPTURE_LEVEL = "statement"
    settings.DPA_AUDIT_TABLE_MANAGER = MANAGERS["advanced"]
    sync("default", verbosity=0)
    Book.objects.bulk_create(Book(isbn=str(i), title="t") for i in range(20))
    entries = list(AdvancedAuditEntry.objects.filter_model(Book))
    assert len(entries) == 20
    assert sum(e.client_query is not None for e in entries) == 1
    assert len({e.statement_id for e in entries}) == 1
    assert all("INSERT INTO" in e.get_client_query() for e in entries)
    first = entries[0]
    assert first.session_user_name and first.schema_name == "public" and not first.statement_only
    assert first.transaction_id == sql("SELECT txid_current()")[0][0]
    assert first.relid == sql("SELECT 'library_book'::regclass::oid")[0][0]


def test_advanced_update_records_only_changes(settings, db):
    from django_partitioned_audit.models import AdvancedAuditEntry
    from django_partitioned_audit.sync import sync
    from tests.conftest import MANAGERS

    settings.DPA_AUDIT_TABLE_MANAGER = MANAGERS["advanced"]
    sync("default", verbosity=0)
    book = Book.objects.create(isbn="1", title="a")
    book.save()  # nothing changed: no entry, as with 1.0.4
    book.title = "b"
    book.save()
    update = AdvancedAuditEntry.objects.filter_model(Book).filter_operation(Operation.UPDATE).get()
    assert update.row_data == {"isbn": "1", "title": "a"}
    assert update.changed_fields == {"title": "b"}
    assert update.get_row_data() == {"isbn": "1", "title": "b"}


def test_the_connection_uses_the_selected_driver(settings):
    expected = "psycopg" if settings.DRIVER == "psycopg" else "psycopg2"
    assert connection.Database.__name__ == expected


def test_a_key_change_is_in_the_history_of_both_keys(layout, read_model):
    """The statement's entry is filed under the new key, the key trigger's under the old one."""
    book = Book.objects.create(isbn="1", title="a")
    Book.objects.filter(isbn="1").update(isbn="2")  # names the key: the key trigger fires
    Book.objects.filter(isbn="2").update(title="b")  # does not: nothing extra
    sql("UPDATE library_book SET isbn = isbn WHERE isbn = '2'")  # names it, changes nothing
    old = read_model.objects.filter_object(Book, "1")
    new = read_model.objects.filter_object(Book, "2")
    assert [e.is_update() for e in old] == [False, True]  # INSERT, then the move
    assert [e.get_row_data()["isbn"] for e in old] == ["1", "2"]
    # The advanced layout skips an UPDATE that changed nothing.
    assert [e.get_row_data()["title"] for e in new] == (["a", "b", "b"] if layout == "simple" else ["a", "b"])
    assert all(e.is_update() for e in new)
    if layout == "advanced":
        moved = old.last()
        assert moved.row_data["isbn"] == "1" and moved.changed_fields == {"isbn": "2"}
    assert book.pk == "1"


def test_the_simple_layout_skips_unchanged_updates_when_the_setting_says_so(settings, db, capture_level):
    from django_partitioned_audit.checks import check_settings
    from django_partitioned_audit.conf import SIMPLE_MANAGER
    from django_partitioned_audit.context import audit_context
    from django_partitioned_audit.models import SimpleAuditEntry
    from django_partitioned_audit.registry import table_spec
    from django_partitioned_audit.sync import sync
    from partitioned_audit import objects
    from partitioned_audit.layouts import SIMPLE

    def updates(model, pk):
        entries = SimpleAuditEntry.objects.filter_object(model, pk).filter_operation(Operation.UPDATE)
        return [e.get_row_data() for e in entries.order_by("pk")]

    def problems():
        with connection.cursor() as cursor:
            return objects.trigger_problems(cursor, SIMPLE, "public", [table_spec(Book)])

    settings.DPA_AUDIT_TABLE_MANAGER = SIMPLE_MANAGER
    settings.DPA_CAPTURE_LEVEL = capture_level
    sync("default", verbosity=0)
    book = Book.objects.create(isbn="1", title="a")
    book.save()  # nothing changed: recorded by default, as 1.0.4 did
    assert updates(Book, "1") == [{"isbn": "1", "title": "a"}]

    settings.DPA_SKIP_UNCHANGED_UPDATES = True
    assert sorted(p for _, p in problems()) == [
        f"capture trigger {name} is outdated or belongs to another layout"
        for name in ("dpa_audit_del", "dpa_audit_ins", "dpa_audit_key", "dpa_audit_tru", "dpa_audit_upd")
    ]  # the database check E021 says so until migrate
    sync("default", verbosity=0)  # what migrate runs: the triggers follow the setting
    assert problems() == []
    book.save()
    assert updates(Book, "1") == [{"isbn": "1", "title": "a"}]  # no new entry
    Book.objects.create(isbn="2", title="b")
    with audit_context(user_id=5):  # one of two rows changes: its entry carries the context
        assert Book.objects.filter(isbn__in=["1", "2"]).update(title="b") == 2
    assert updates(Book, "2") == []
    (_, changed) = SimpleAuditEntry.objects.filter_object(Book, "1").filter_operation(Operation.UPDATE)
    assert changed.get_row_data() == {"isbn": "1", "title": "b"}
    assert changed.audit_context == {"user_id": 5}
    ann = Customer.objects.create(name="Ann", password="old")
    ann.password = "new"  # a masked column that changed is a change, as in the advanced layout
    ann.save()
    assert [row["password"] for row in updates(Customer, ann.pk)] == ["[masked]"]

    settings.DPA_SKIP_UNCHANGED_UPDATES = False
    sync("default", verbosity=0)
    book.save()
    assert len(updates(Book, "1")) == 3

    settings.DPA_SKIP_UNCHANGED_UPDATES = "yes"
    assert [e.msg for e in check_settings() if e.id == "partitioned_audit.E010"] == [
        "DPA_SKIP_UNCHANGED_UPDATES must be True or False, got 'yes'. See docs/settings.md."
    ]
