"""The capture level: row or statement triggers, chosen per model, validated, switched by
migrate in place; a partitioned table stays at statement level."""

from __future__ import annotations

import pytest
from django.db import connection
from library.models import Book, Reading
from shop.models import Customer

from django_partitioned_audit.checks import check_registration, check_settings
from django_partitioned_audit.models import AdvancedAuditEntry, Operation, SimpleAuditEntry
from django_partitioned_audit.registry import table_spec
from django_partitioned_audit.sync import sync
from partitioned_audit import objects
from partitioned_audit.layouts import ADVANCED, SIMPLE
from tests.conftest import MANAGERS
from tests.helpers import sql
from tests.test_registration import app_attr

LEVEL_OF = {"library": "library.apps.LibraryConfig.trigger_audit_capture_level"}


def levels(table: str = "library_book") -> dict[str, str]:
    """Each capture trigger on ``table``: ``row`` or ``statement``, and the function it runs."""
    rows = sql(
        "SELECT tgname, CASE WHEN tgtype & 1 = 1 THEN 'row' ELSE 'statement' END || ' ' || tgfoid::regproc"
        " FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname LIKE 'dpa_audit%%' AND tgparentid = 0",
        [table],
    )
    return dict(rows)


ROW_LEVEL = {
    "dpa_audit_ins": "row dpa_simple_capture_row",
    "dpa_audit_upd": "row dpa_simple_capture_row",
    "dpa_audit_del": "row dpa_simple_capture_row",
    "dpa_audit_tru": "statement dpa_simple_capture",
    "dpa_audit_key": "row dpa_simple_capture_key",
}
STATEMENT_LEVEL = {
    "dpa_audit_ins": "statement dpa_simple_capture",
    "dpa_audit_upd": "statement dpa_simple_capture",
    "dpa_audit_del": "statement dpa_simple_capture",
    "dpa_audit_tru": "statement dpa_simple_capture",
    "dpa_audit_key": "row dpa_simple_capture_key",
}


def problems(*models) -> list[str]:
    with connection.cursor() as cursor:
        return [p for _, p in objects.trigger_problems(cursor, SIMPLE, "public", map(table_spec, models))]


def test_the_setting_and_the_app_attribute_choose_the_level(settings, db):
    settings.DPA_CAPTURE_LEVEL = "statement"
    sync("default", verbosity=0)
    assert levels() == STATEMENT_LEVEL
    settings.DPA_CAPTURE_LEVEL = "row"
    sync("default", verbosity=0)
    assert levels() == ROW_LEVEL
    # A model's own level wins over the setting, either way.
    with app_attr("library", trigger_audit_capture_level={"Book": "statement"}):
        sync("default", verbosity=0)
        assert levels() == STATEMENT_LEVEL
        assert levels('"Weird Name Table"') == ROW_LEVEL
    settings.DPA_CAPTURE_LEVEL = "statement"
    with app_attr("library", trigger_audit_capture_level={"book": "row"}):  # as get_model() reads it
        sync("default", verbosity=0)
        assert levels() == ROW_LEVEL
        assert levels('"Weird Name Table"') == STATEMENT_LEVEL


def test_migrate_switches_the_level_in_place_and_the_check_says_so_until_then(settings, db):
    settings.DPA_CAPTURE_LEVEL = "statement"
    sync("default", verbosity=0)
    Book.objects.create(isbn="1", title="a")
    settings.DPA_CAPTURE_LEVEL = "row"
    assert sorted(problems(Book)) == [
        f"capture trigger {name} is outdated or belongs to another layout"
        for name in ("dpa_audit_del", "dpa_audit_ins", "dpa_audit_key", "dpa_audit_tru", "dpa_audit_upd")
    ]  # E021 until migrate (one digest covers a table's triggers)
    sync("default", verbosity=0)  # one transaction: the statement set goes, the row set comes
    assert levels() == ROW_LEVEL and problems(Book) == []
    Book.objects.filter(isbn="1").update(title="b")
    Book.objects.create(isbn="2", title="c")
    settings.DPA_CAPTURE_LEVEL = "statement"
    sync("default", verbosity=0)
    assert levels() == STATEMENT_LEVEL and problems(Book) == []
    Book.objects.filter(isbn="2").delete()
    assert [(e.audit_operation, e.object_pk) for e in SimpleAuditEntry.objects.filter_model(Book)] == [
        ("I", "1"),
        ("U", "1"),
        ("I", "2"),
        ("D", "2"),
    ]


@pytest.mark.parametrize(
    ("statement", "reported"),
    [
        (
            "ALTER TABLE library_book DISABLE TRIGGER dpa_audit_upd",
            "capture trigger dpa_audit_upd is disabled (ALTER TABLE ... DISABLE TRIGGER): it never fires",
        ),
        (
            # The row trigger swapped for a statement trigger running the row capture, which
            # would record one empty row per statement: not as the engine made it.
            "DROP TRIGGER dpa_audit_ins ON library_book;"
            " CREATE TRIGGER dpa_audit_ins AFTER INSERT ON library_book FOR EACH STATEMENT"
            " EXECUTE FUNCTION dpa_simple_capture_row('{\"isbn\"}', '{}', '{}', 'o', 'f', 'public', 'library_book');"
            " ALTER TABLE library_book ENABLE ALWAYS TRIGGER dpa_audit_ins",
            "capture trigger dpa_audit_ins is outdated or belongs to another layout",
        ),
        ("DROP TRIGGER dpa_audit_del ON library_book", "capture trigger dpa_audit_del is missing: DELETE"),
    ],
)
def test_a_broken_row_trigger_is_reported_and_migrate_repairs_it(settings, db, statement, reported):
    from tests.helpers import past_the_guard

    settings.DPA_CAPTURE_LEVEL = "row"
    sync("default", verbosity=0)
    past_the_guard(statement)
    assert any(p.startswith(reported) for p in problems(Book)), problems(Book)
    sync("default", verbosity=0)
    assert problems(Book) == [] and levels() == ROW_LEVEL


def test_a_partitioned_table_stays_at_statement_level(settings, db):
    """Row triggers see a row moving to another partition as a DELETE and an INSERT."""
    settings.DPA_CAPTURE_LEVEL = "row"
    sync("default", verbosity=0)
    assert set(levels("library_reading").values()) == {
        "statement dpa_simple_capture",
        "row dpa_simple_capture_key",
    }
    assert problems(Reading) == []
    sql("INSERT INTO library_reading (id, taken, value) VALUES (1, '2024-01-15', 1)")
    sql("UPDATE library_reading SET taken = '2025-03-15' WHERE id = 1")  # to another partition
    entries = SimpleAuditEntry.objects.filter_model(Reading).order_by("pk")
    assert [(e.audit_operation, e.object_pk) for e in entries] == [("I", "1"), ("U", "1")]


@pytest.mark.parametrize("level", ["statement", "row"])
def test_the_advanced_layout_keeps_the_query_of_every_statement(settings, db, level):
    """At statement level on the statement's first row, with its id; at row level, where
    a row knows no other row of its statement, on every row, without an id."""
    settings.DPA_AUDIT_TABLE_MANAGER = MANAGERS["advanced"]
    settings.DPA_CAPTURE_LEVEL = level
    sync("default", verbosity=0)
    Book.objects.bulk_create(Book(isbn=str(i), title="t") for i in range(20))
    entries = list(AdvancedAuditEntry.objects.filter_model(Book))
    assert len(entries) == 20
    assert all("INSERT INTO" in e.get_client_query() for e in entries)
    if level == "statement":
        assert sum(e.client_query is not None for e in entries) == 1
        assert len({e.statement_id for e in entries}) == 1 and entries[0].statement_id is not None
    else:
        assert all(e.client_query is not None for e in entries)
        assert {e.statement_id for e in entries} == {None}
    first = entries[0]
    assert first.session_user_name and first.schema_name == "public" and not first.statement_only
    assert first.transaction_id == sql("SELECT txid_current()")[0][0]
    # One context row for the transaction, whatever the level.
    assert len({e.audit_context_id for e in entries}) == 1
    book = Book.objects.get(isbn="1")
    book.save()  # nothing changed: no entry at either level
    book.title = "u"
    book.save()
    update = AdvancedAuditEntry.objects.filter_model(Book).filter_operation(Operation.UPDATE).get()
    assert (update.row_data, update.changed_fields) == ({"isbn": "1", "title": "t"}, {"title": "u"})


def test_masked_and_excluded_columns_at_row_level(settings, db):
    settings.DPA_CAPTURE_LEVEL = "row"
    settings.DPA_EXCLUDED_COLUMNS = {"shop.Customer": ["name"]}
    sync("default", verbosity=0)
    ann = Customer.objects.create(name="Ann", password="secret")
    ann.password = "other"
    ann.save()
    rows = [e.object_payload for e in SimpleAuditEntry.objects.filter_model(Customer).order_by("pk")]
    assert [row["password"] for row in rows] == ["[masked]", "[masked]"]
    assert all("name" not in row for row in rows)


def test_a_bad_capture_level_is_reported():
    with app_attr("library", trigger_audit_capture_level={"Book": "rows", "Bok": "row", "Loan": "row"}):
        found = [(e.id, e.msg) for e in check_registration()]
    where = LEVEL_OF["library"]
    assert found == [
        (
            "partitioned_audit.E006",
            f"{where} maps 'Book' to 'rows': a model name must map to 'row' or 'statement'.",
        ),
        ("partitioned_audit.E001", f"{where} names 'Bok', which is not a model of app 'library'."),
        (
            "partitioned_audit.E007",
            f"{where} sets a capture level for library.Loan, which is not in trigger_audit_models.",
        ),
    ]
    with app_attr("library", trigger_audit_capture_level=["Book"]):
        ((error_id, message),) = [(e.id, e.msg) for e in check_registration()]
    assert (error_id, message) == (
        "partitioned_audit.E006",
        f"{where} is ['Book'], not a mapping of model names to capture levels.",
    )
    with app_attr("library", trigger_audit_models=("Book",), trigger_audit_capture_level={"Weird": "row"}):
        ((error_id, message),) = [(e.id, e.msg) for e in check_registration()]
    assert (error_id, message) == (
        "partitioned_audit.E007",
        f"{where} sets a capture level for library.Weird, which is not in trigger_audit_models.",
    )


def test_a_bad_capture_level_setting_is_reported(settings):
    settings.DPA_CAPTURE_LEVEL = "rows"
    assert [e.msg for e in check_settings() if e.id == "partitioned_audit.E010"] == [
        "DPA_CAPTURE_LEVEL must be one of 'statement', 'row', got 'rows'. See docs/settings.md."
    ]


@pytest.mark.parametrize("layout", [SIMPLE, ADVANCED], ids=lambda layout: layout.name)
def test_switching_the_level_under_writers_misses_no_write(dbname, layout):
    """Each switch drops one trigger set and creates the other in one transaction, which
    writers wait for: every write is recorded once, by one set or the other."""
    import threading

    from partitioned_audit import enable, install
    from partitioned_audit.layouts import TableSpec
    from tests.engine_db import connect

    setup = connect(dbname)
    cur = setup.cursor()
    install(cur, layout)
    cur.execute("CREATE TABLE counter (id int PRIMARY KEY, n int)")
    cur.execute("INSERT INTO counter SELECT g, 0 FROM generate_series(1, 10) g")
    enable(cur, layout, TableSpec("public", "counter", ("id",)))
    setup.commit()
    done = threading.Event()
    writes: list[int] = []
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            c = connect(dbname, autocommit=True)
            wc = c.cursor()
            while not done.is_set() or len(writes) < 100:
                wc.execute("UPDATE counter SET n = n + 1 WHERE id = %s", [len(writes) % 10 + 1])
                writes.append(1)
            c.close()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    levels_seen = []
    for row_level in (True, False, True, False, True):
        assert enable(cur, layout, TableSpec("public", "counter", ("id",), row_level=row_level))
        setup.commit()
        cur.execute(
            "SELECT bool_and(tgtype & 1 = 1) FROM pg_trigger"
            " WHERE tgrelid = 'counter'::regclass AND tgname IN ('dpa_audit_ins', 'dpa_audit_upd', 'dpa_audit_del')"
        )
        levels_seen.append(cur.fetchone()[0])
        setup.commit()
    done.set()
    thread.join()
    assert errors == [] and levels_seen == [True, False, True, False, True]
    operation = "audit_operation" if layout is SIMPLE else "action"
    cur.execute(f"SELECT count(*) FROM {layout.table} WHERE {operation} = 'U'")  # noqa: S608
    assert cur.fetchone()[0] == len(writes)
    cur.execute("SELECT sum(n) FROM counter")
    assert cur.fetchone()[0] == len(writes)
    setup.close()


@pytest.mark.parametrize("name", ["simple", "advanced"])
def test_a_row_level_transaction_makes_its_context_row_once_per_context(settings, db, name):
    """The row-level capture looks the transaction's context row up and makes it only when
    it is missing: once per context, not once per row; a savepoint rolled back with the row
    it made leaves the next write to make it again. Both layouts keep the login role on the
    audit row and make no context row for a write outside any context."""
    from django.db import transaction

    from tests.conftest import MANAGERS

    layout = SIMPLE if name == "simple" else ADVANCED
    settings.DPA_AUDIT_TABLE_MANAGER = MANAGERS[name]
    settings.DPA_CAPTURE_LEVEL = "row"
    sync("default", verbosity=0)
    sql("SET LOCAL track_functions = 'pl'")

    def calls() -> int:
        # The view also counts the calls of earlier transactions not yet reported.
        rows = sql("SELECT calls FROM pg_stat_xact_user_functions WHERE funcname = %s", [layout.row_function])
        return (rows[0][0] if rows else 0) - before

    def contexts() -> list[str | None]:
        """This transaction's context rows, oldest first: what each declared as its user."""
        return [
            user
            for (user,) in sql(
                f"SELECT context ->> 'user' FROM {layout.context_table}"  # noqa: S608
                " WHERE txid = txid_current() ORDER BY context_id"
            )
        ]

    before = 0
    before = calls()
    # A write outside any context leaves nothing in the context table.
    outside: list[str | None] = []
    for n in range(3):
        Book.objects.create(isbn=f"a{n}", title="a")
    assert (calls(), contexts()) == (3, outside)
    sql("SET LOCAL partitioned_audit.context = '{\"user\": 7}'")
    Book.objects.create(isbn="b", title="b")
    Book.objects.create(isbn="c", title="c")
    assert (calls(), contexts()) == (5, [*outside, "7"])
    sql("SET LOCAL partitioned_audit.context = '{\"user\": 8}'")
    try:
        with transaction.atomic():
            Book.objects.create(isbn="gone", title="x")  # makes the context row, rolled back
            assert contexts() == [*outside, "7", "8"]
            raise RuntimeError
    except RuntimeError:
        pass
    assert contexts() == [*outside, "7"]
    Book.objects.create(isbn="d", title="d")
    assert contexts() == [*outside, "7", "8"]
    # Every audit row points at a context row of its own transaction, with its context.
    rows = sql(
        f"SELECT a.object_pk, c.context ->> 'user' FROM {layout.table} a"
        f" LEFT JOIN {layout.context_table} c"
        f" ON c.context_id = a.audit_context_id AND c.txid = a.{layout.txid_column}"
        " ORDER BY a.audit_context_id NULLS FIRST, a.object_pk"
    )
    assert rows == [("a0", None), ("a1", None), ("a2", None), ("b", "7"), ("c", "7"), ("d", "8")]
    # ... and every one holds the login role itself.
    assert sql(f"SELECT count(*) FROM {layout.table} WHERE session_user_name = session_user") == [(6,)]  # noqa: S608
