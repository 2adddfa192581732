"""The engine on a plain DB-API connection: hostile names, composite keys, roles, concurrency."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from testproject.legacy104 import ADVANCED_TABLE, SIMPLE_TABLE

from partitioned_audit import (
    ADVANCED,
    SIMPLE,
    Status,
    TableSpec,
    catalog,
    enable,
    install,
    layout_status,
    objects,
)
from partitioned_audit.errors import AuditError
from partitioned_audit.sql import SQL, execute, ident, quote_ident, render
from tests.engine_db import connect


def rows(cur: Any, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    cur.execute(query, params)
    return list(cur.fetchall())


HOSTILE = ['Mixed "Quoted" Name', "select", "with space", "semi;colon -- x", "ünïcode"]


@pytest.mark.parametrize("layout", [SIMPLE, ADVANCED], ids=lambda layout: layout.name)
@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_table_and_column_names(conn, layout, name):
    cur = conn.cursor()
    install(cur, layout, schema="audit")
    execute(cur, SQL("CREATE SCHEMA {}").format(ident(name)))
    execute(
        cur,
        SQL("CREATE TABLE {} ({} int PRIMARY KEY, {} text)").format(
            ident(name, name), ident(name), ident("order")
        ),
    )
    enable(cur, layout, TableSpec(name, name, (name,)), schema="audit")
    execute(cur, SQL("INSERT INTO {} VALUES (1, 'a'), (2, 'b')").format(ident(name, name)))
    execute(cur, SQL("UPDATE {} SET {} = 'c'").format(ident(name, name), ident("order")))
    execute(cur, SQL("DELETE FROM {}").format(ident(name, name)))
    query, expected_update = (
        (
            "SELECT object_schema, object_table, object_pk, audit_operation, object_payload"
            " FROM audit.audit_simple ORDER BY audit_event_id",
            {name: 1, "order": "c"},
        )
        if layout is SIMPLE
        else (
            "SELECT schema_name, table_name, object_pk, action, changed_fields"
            " FROM audit.logged_actions ORDER BY event_id",
            {"order": "c"},
        )
    )
    found = rows(cur, query)
    assert [r[:4] for r in found] == [(name, name, pk, op) for op in "IUD" for pk in ("1", "2")]
    assert found[2][4] == expected_update


def test_composite_primary_key_and_database_cascade(conn):
    cur = conn.cursor()
    install(cur, SIMPLE)
    cur.execute("CREATE TABLE parent (id int PRIMARY KEY)")
    cur.execute(
        "CREATE TABLE line (parent_id int REFERENCES parent ON DELETE CASCADE, n text, PRIMARY KEY (parent_id, n))"
    )
    for table in ("parent", "line"):
        enable(cur, SIMPLE, TableSpec("public", table, catalog.primary_key(cur, "public", table)))
    cur.execute("INSERT INTO parent VALUES (1)")
    cur.execute("INSERT INTO line VALUES (1, 'a'), (1, 'b')")
    cur.execute("DELETE FROM parent")
    found = rows(
        cur, "SELECT object_table, audit_operation, object_pk FROM audit_simple ORDER BY audit_event_id"
    )
    assert found[-2:] == [("line", "D", '[1, "a"]'), ("line", "D", '[1, "b"]')]
    assert [json.loads(r[2]) for r in found if r[0] == "line"] == [[1, "a"], [1, "b"], [1, "a"], [1, "b"]]


@pytest.mark.parametrize("layout", [SIMPLE, ADVANCED], ids=lambda layout: layout.name)
def test_a_table_without_primary_key_is_recorded_whole(conn, layout):
    cur = conn.cursor()
    cur.execute("CREATE TABLE loose (a int, b text)")
    install(cur, layout)
    enable(cur, layout, TableSpec("public", "loose", ()))
    cur.execute("INSERT INTO loose VALUES (1, 'x'), (1, 'x')")
    cur.execute("UPDATE loose SET b = 'y'")
    cur.execute("DELETE FROM loose")
    if layout is SIMPLE:
        statement = (
            "SELECT audit_operation, object_pk, object_payload FROM audit_simple ORDER BY audit_event_id"
        )
    else:
        statement = "SELECT action, object_pk, coalesce(changed_fields, row_data) FROM logged_actions ORDER BY event_id"
    found = rows(cur, statement)
    row, new = {"a": 1, "b": "x"}, ({"a": 1, "b": "y"} if layout is SIMPLE else {"b": "y"})
    after = {"a": 1, "b": "y"}
    assert found == [("I", None, row)] * 2 + [("U", None, new)] * 2 + [("D", None, after)] * 2


def test_a_104_table_without_primary_key_stays_audited_at_the_upgrade(conn):
    """1.0.4 audited tables without a primary key; the upgrade used to drop their triggers."""
    cur = conn.cursor()
    cur.execute("CREATE TABLE loose (a int)")
    install(cur, SIMPLE)
    cur.execute(
        "CREATE FUNCTION legacy_noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$"
    )
    cur.execute(
        "CREATE TRIGGER trigger_audit_entry_creator_trigger AFTER INSERT ON loose"
        " FOR EACH ROW EXECUTE FUNCTION legacy_noop()"
    )
    cur.execute("COMMENT ON TABLE audit_simple IS NULL")  # what 1.0.4 left
    install(cur, SIMPLE)
    names = rows(cur, "SELECT tgname FROM pg_trigger WHERE tgrelid = 'loose'::regclass ORDER BY 1")
    assert names == [("dpa_audit_del",), ("dpa_audit_ins",), ("dpa_audit_tru",), ("dpa_audit_upd",)]
    cur.execute("INSERT INTO loose VALUES (7)")
    assert rows(cur, "SELECT object_pk, object_payload FROM audit_simple") == [(None, {"a": 7})]


def test_quote_ident_agrees_with_driver():
    from hypothesis import given
    from hypothesis import strategies as st

    from partitioned_audit import sql as sqlmod

    conn = connect("postgres") if sqlmod.DRIVER == "psycopg2" else None  # psycopg2 quotes via a connection
    cursor = conn.cursor() if conn is not None else None

    @given(st.text(min_size=1).filter(lambda s: "\x00" not in s))
    def check(name: str) -> None:
        assert quote_ident(name) == render(ident(name), cursor)

    try:
        check()
    finally:
        if conn is not None:
            conn.close()


def test_trigger_arguments_round_trip_through_postgresql():
    """Any column names, quotes, backslashes, braces and commas included, reach the
    trigger function as the same ``text[]``."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from partitioned_audit.layouts import text_array

    conn = connect("postgres")
    cursor = conn.cursor()

    @settings(deadline=None)
    @given(st.lists(st.text(min_size=1).filter(lambda s: "\x00" not in s), max_size=4))
    def check(names: list[str]) -> None:
        cursor.execute("SELECT %s::text[]", [text_array(tuple(names))])
        assert cursor.fetchone()[0] == names

    try:
        check()
    finally:
        conn.close()


def test_identifiers_reject_nul_and_empty():
    with pytest.raises(ValueError, match="NUL byte"):
        ident("a\x00b")
    with pytest.raises(ValueError, match="non-empty strings"):
        ident("")


def test_application_role_is_audited_but_cannot_touch_the_trail(dbname):
    """Only DML rights on its own table: its changes are recorded, the trail is out of reach."""
    role = f"dpa_app_{uuid.uuid4().hex[:8]}"
    owner = connect(dbname)
    cur = owner.cursor()
    try:
        for layout in (SIMPLE, ADVANCED):
            install(cur, layout, schema="audit")
        cur.execute("CREATE TABLE invoice (id int PRIMARY KEY, amount numeric)")
        enable(cur, SIMPLE, TableSpec("public", "invoice", ("id",)), schema="audit")
        execute(cur, SQL("CREATE ROLE {}").format(ident(role)))
        execute(cur, SQL("GRANT USAGE ON SCHEMA public, audit TO {}").format(ident(role)))
        execute(cur, SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON invoice TO {}").format(ident(role)))
        owner.commit()

        app = connect(dbname)
        acur = app.cursor()
        execute(acur, SQL("SET ROLE {}").format(ident(role)))
        acur.execute("INSERT INTO invoice VALUES (1, 10)")
        acur.execute("UPDATE invoice SET amount = 11")
        app.commit()
        refused = []
        for statement in (
            "DELETE FROM audit.audit_simple",
            "UPDATE audit.audit_simple SET object_payload = '{}'",
            "TRUNCATE audit.audit_simple",
            "DELETE FROM audit.audit_simple_default",
            "INSERT INTO audit.audit_simple (object_table, object_payload, audit_txid_current, audit_operation)"
            " VALUES ('invoice', '{}', 1, 'I')",
            "SELECT * FROM audit.audit_simple_view",
            "SELECT nextval('audit.audit_simple_audit_event_id_seq')",
        ):
            try:
                acur.execute(statement)
            except Exception as exc:  # noqa: BLE001 - the driver's InsufficientPrivilege
                refused.append("permission denied" in str(exc))
            else:
                refused.append(False)
            app.rollback()
            execute(acur, SQL("SET ROLE {}").format(ident(role)))
        app.close()
        assert refused == [True] * 7
        assert rows(
            cur, "SELECT audit_operation, object_payload FROM audit.audit_simple ORDER BY audit_event_id"
        ) == [
            ("I", {"id": 1, "amount": 10}),
            ("U", {"id": 1, "amount": 11}),
        ]
    finally:
        owner.rollback()
        cur.execute("DROP TABLE IF EXISTS invoice")
        if rows(cur, "SELECT 1 FROM pg_roles WHERE rolname = %s", [role]):
            execute(cur, SQL("DROP OWNED BY {}").format(ident(role)))
        execute(cur, SQL("DROP ROLE IF EXISTS {}").format(ident(role)))
        owner.commit()
        owner.close()


def test_two_writers_at_once_produce_one_row_per_change(dbname):
    setup = connect(dbname)
    cur = setup.cursor()
    install(cur, ADVANCED)
    cur.execute("CREATE TABLE counter (id int PRIMARY KEY, n int)")
    cur.execute("INSERT INTO counter SELECT g, 0 FROM generate_series(1, 20) g")
    enable(cur, ADVANCED, TableSpec("public", "counter", ("id",)))
    setup.commit()
    errors: list[BaseException] = []

    def writer(offset: int) -> None:
        try:
            c = connect(dbname)
            wc = c.cursor()
            for i in range(50):
                wc.execute("UPDATE counter SET n = n + 1 WHERE id = %s", [(i + offset) % 20 + 1])
                wc.execute("INSERT INTO counter VALUES (%s, 0)", [1000 * offset + i + 1000])
                c.commit()
            c.close()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert rows(cur, "SELECT action, count(*) FROM logged_actions GROUP BY 1 ORDER BY 1") == [
        ("I", 100),
        ("U", 100),
    ]
    assert rows(cur, "SELECT sum(n) FROM counter") == [(100,)]
    per_row = rows(
        cur,
        "SELECT max((changed_fields->>'n')::int) FROM logged_actions WHERE action = 'U' GROUP BY object_pk",
    )
    assert sum(r[0] for r in per_row) == 100  # the last recorded value of each counter is its final value
    setup.close()


def test_status_of_an_empty_database(conn):
    cur = conn.cursor()
    assert layout_status(cur, SIMPLE).status is Status.MISSING
    assert install(cur, SIMPLE, schema="x") is Status.MISSING
    assert layout_status(cur, SIMPLE, schema="x").status is Status.INSTALLED


LEGACY_SIMPLE = (
    SIMPLE_TABLE
    + """
CREATE TABLE audit_simple_20240101_20240201 PARTITION OF audit_simple FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE audit_simple_20240201_20240301 PARTITION OF audit_simple FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
INSERT INTO audit_simple (object_table, object_payload, audit_entry_created, audit_txid_current, audit_operation)
SELECT 'book', jsonb_build_object('id', g), timestamptz '2024-01-01' + g * interval '1 minute', g, 'I'
  FROM generate_series(1, 60000) g;
"""
)


@pytest.fixture
def autocommit(dbname: str) -> Iterator[Any]:
    c = connect(dbname, autocommit=True)
    yield c
    c.close()


def upgrade_without_rewrite(conn: Any, legacy: str, layout: Any) -> None:
    """Create a 1.0.4 table from ``legacy``, install ``layout`` over it in one transaction,
    and check that no partition was rewritten (a rewrite gives it a new file) nor read (the
    transaction's own scan counters of the partitions stay at zero)."""
    cur = conn.cursor()
    cur.execute(legacy)
    files = "SELECT relname, relfilenode FROM pg_class WHERE relispartition AND relkind = 'r' ORDER BY 1"
    before = rows(cur, files)
    cur.execute("BEGIN")
    install(cur, layout)
    # (The DEFAULT partition, created empty by the upgrade, was read by its index builds.)
    assert partition_scans(cur, [name for name, _ in before]) == {name: 0 for name, _ in before}
    cur.execute("COMMIT")
    assert rows(cur, files)[: len(before)] == before
    assert objects.backfill_pending(cur, layout)
    # It has every column of the layout, the simple layout's login role among them.
    columns = rows(
        cur,
        "SELECT attname::text FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
        [layout.table],
    )
    assert set(layout.table_columns) <= {name for (name,) in columns}


def partition_scans(cur: Any, partitions: list[str]) -> dict[str, int]:
    """The sequential and index scans of each of ``partitions`` within the current
    transaction (pg_stat_xact_user_tables counts them as they happen)."""
    found = rows(
        cur,
        "SELECT relname, seq_scan + coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables WHERE relname = ANY (%s)",
        [partitions],
    )
    return dict(found)


def reserved_bound(cur: Any, table: str) -> int:
    """The most rows the heap pages of ``table``'s partitions can hold (MaxHeapTuplesPerPage:
    291 per 8 kB page)."""
    (bound,) = rows(
        cur,
        "SELECT sum(pg_relation_size(relid) / current_setting('block_size')::int)::bigint"
        " * ((current_setting('block_size')::int - 24) / 28) FROM pg_partition_tree(%s) WHERE isleaf",
        [table],
    )[0]
    return int(bound)


def test_the_104_simple_upgrade_rewrites_nothing_and_numbers_rows_in_batches(autocommit):
    conn = autocommit
    cur = conn.cursor()
    upgrade_without_rewrite(conn, LEGACY_SIMPLE, SIMPLE)
    bound = reserved_bound(cur, "audit_simple")  # the pages of 60,000 rows, each of 8 kB
    assert bound >= 60000 and bound % 291 == 0
    cur.execute(
        "INSERT INTO audit_simple (object_table, object_payload, audit_txid_current, audit_operation) VALUES ('book', '{}', 1, 'I')"
    )
    assert rows(cur, "SELECT audit_event_id FROM audit_simple WHERE audit_event_id IS NOT NULL") == [
        (bound + 1,)
    ]
    assert objects.backfill(conn, SIMPLE, pages=50) == 60000
    assert not objects.backfill_pending(cur, SIMPLE) and objects.backfill(conn, SIMPLE) == 0
    numbered = rows(
        cur, "SELECT audit_event_id FROM audit_simple ORDER BY audit_entry_created, audit_event_id"
    )
    assert [n for (n,) in numbered][:60000] == list(range(1, 60001))  # time order kept
    assert rows(cur, "SELECT count(*) FROM audit_simple_view WHERE id IS NULL") == [(0,)]


def test_the_104_upgrade_reserves_ids_for_every_old_row_while_a_writer_goes_on(dbname, autocommit):
    """Step 1 reserves ids for the old rows from the size of the partitions, without
    counting them: the bound covers every old row, a partition packed with the smallest
    rows a 1.0.4 trail holds and the DEFAULT partition included; rows written while the
    migration runs, after it and during the numbering all get ids above every old row's."""
    cur = autocommit.cursor()
    cur.execute(
        SIMPLE_TABLE
        + """
        CREATE TABLE audit_simple_20240101_20240201 PARTITION OF audit_simple FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
        CREATE TABLE audit_simple_20240201_20240301 PARTITION OF audit_simple FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
        CREATE TABLE audit_simple_default PARTITION OF audit_simple DEFAULT;
        INSERT INTO audit_simple (object_table, object_payload, audit_entry_created, audit_txid_current, audit_operation)
        SELECT 'book', jsonb_build_object('id', g, 'title', repeat('x', 300)), timestamptz '2024-01-01' + g * interval '1 minute', -g, 'I'
          FROM generate_series(1, 3000) g;
        INSERT INTO audit_simple (object_table, object_payload, audit_entry_created, audit_txid_current, audit_operation)
        SELECT '', 'null', timestamptz '2024-02-01' + g * interval '1 second', -g, 'I' FROM generate_series(1, 20000) g;
        INSERT INTO audit_simple (object_table, object_payload, audit_entry_created, audit_txid_current, audit_operation)
        SELECT 'book', '{}', timestamptz '2030-01-01' + g * interval '1 minute', -g, 'I' FROM generate_series(1, 500) g;
        """
    )
    # The packed partition holds the most rows per page any 1.0.4 row allows.
    ((count, pages),) = rows(
        cur,
        "SELECT count(*), pg_relation_size('audit_simple_20240201_20240301')"
        " / current_setting('block_size')::int FROM audit_simple_20240201_20240301",
    )
    assert count / pages > 100
    partitions = [
        name
        for (name,) in rows(cur, "SELECT relid::text FROM pg_partition_tree('audit_simple') WHERE isleaf")
    ]
    assert len(partitions) == 3
    written: list[int] = []
    stop = threading.Event()

    def writer() -> None:
        c = connect(dbname, autocommit=True)
        n = 1
        while not stop.is_set():
            c.cursor().execute(
                "INSERT INTO audit_simple (object_table, object_payload, audit_entry_created, audit_txid_current,"
                " audit_operation) VALUES ('w', '{}', timestamptz '2024-01-20', %s, 'I')",
                [n],
            )
            written.append(n)
            n += 1
        c.close()

    def wait_for(n: int) -> None:
        deadline = time.monotonic() + 30
        while len(written) < n:
            assert time.monotonic() < deadline, "the writer is stuck"
            time.sleep(0.01)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        wait_for(50)
        migration = connect(dbname)
        try:  # closed on a failure too, so that the writer gets past its lock
            install(migration.cursor(), SIMPLE)
            mine = migration.cursor()
            # No partition was read, the DEFAULT one holding old rows included.
            assert set(partition_scans(mine, partitions).values()) == {0}
            mine.execute("SELECT last_value FROM audit_simple_audit_event_id_seq")
            (bound,) = mine.fetchone()
            # The writer waits on the migration's lock: what it wrote is all the old rows.
            mine.execute("SELECT count(*) FROM audit_simple")
            (old,) = mine.fetchone()
            migration.commit()
        finally:
            migration.close()
        assert old >= 23500 + 50 and bound >= old
        physical_order = rows(
            cur,
            "SELECT tableoid::regclass::text, object_table, audit_txid_current FROM audit_simple"
            " WHERE audit_event_id IS NULL ORDER BY tableoid::regclass::text, ctid",
        )
        assert len(physical_order) == old
        wait_for(len(written) + 50)
        assert objects.backfill(autocommit, SIMPLE, pages=20) == old
        wait_for(len(written) + 50)
    finally:
        stop.set()
        thread.join()
    numbers = [i for (i,) in rows(cur, "SELECT audit_event_id FROM audit_simple")]
    assert len(numbers) == 23500 + len(written)
    assert None not in numbers and len(set(numbers)) == len(numbers)
    old_ids = [i for i in numbers if i <= bound]
    assert len(old_ids) == old and max(old_ids) < min(i for i in numbers if i > bound)
    # Old rows are numbered 1..n in the trail's order: partitions in time order (the
    # DEFAULT one last), each in its physical order.
    numbered = rows(
        cur,
        "SELECT tableoid::regclass::text, object_table, audit_txid_current FROM audit_simple"
        " WHERE audit_event_id <= %s ORDER BY audit_event_id",
        [bound],
    )
    assert numbered == physical_order
    assert rows(cur, "SELECT max(audit_event_id) FROM audit_simple WHERE audit_event_id <= %s", [bound]) == [
        (old,)
    ]
    # The rows written since the migration are numbered in the order they were written.
    new_ids = rows(
        cur,
        "SELECT audit_event_id FROM audit_simple WHERE audit_event_id > %s ORDER BY audit_txid_current",
        [bound],
    )
    assert new_ids == sorted(new_ids)


def upgraded_with_new_rows(dbname: str, cur: Any) -> int:
    """Install over ``LEGACY_SIMPLE``, commit, write 100 rows ('new'); return the bound."""
    cur.execute(LEGACY_SIMPLE)
    migration = connect(dbname)
    install(migration.cursor(), SIMPLE)
    migration.commit()
    migration.close()
    bound = reserved_bound(cur, "audit_simple")
    cur.execute(
        "INSERT INTO audit_simple (object_table, object_payload, audit_entry_created, audit_txid_current,"
        " audit_operation) SELECT 'new', '{}', timestamptz '2024-01-20', g, 'I' FROM generate_series(1, 100) g"
    )
    return bound


def assert_numbered_densely(cur: Any, bound: int) -> None:
    """Every row has one id of its own; the old rows have 1..60000 in the trail's order,
    every new row's id is above the bound."""
    (rows_, distinct, nulls) = rows(
        cur,
        "SELECT count(*), count(DISTINCT audit_event_id), count(*) - count(audit_event_id) FROM audit_simple",
    )[0]
    assert (rows_, distinct, nulls) == (60100, 60100, 0)
    numbered = rows(
        cur,
        "SELECT audit_event_id FROM audit_simple WHERE object_table = 'book' ORDER BY audit_entry_created",
    )
    assert [n for (n,) in numbered] == list(range(1, 60001))
    assert rows(cur, "SELECT min(audit_event_id) FROM audit_simple WHERE object_table = 'new'") == [
        (bound + 1,)
    ]


def test_a_numbering_batch_stopped_half_way_leaves_no_id_twice(dbname, autocommit):
    """A batch that fails has spent the backfill sequence's values it drew (a sequence is
    not rolled back). Failing again and again, it spends more than the reserved range has
    room for beyond the old rows; each run starts from the highest id an old row holds, so
    the spent values are drawn again and the old rows still get 1..n, below every new row."""
    cur = autocommit.cursor()
    bound = upgraded_with_new_rows(dbname, cur)
    # Another transaction holds an old row near the end of the first batch: the batch
    # numbers the rows before it, then gives up on its lock.
    holder = connect(dbname)
    holder.cursor().execute(
        "SELECT 1 FROM audit_simple WHERE audit_txid_current = 40000 AND object_table = 'book' FOR UPDATE"
    )
    cur.execute("SET lock_timeout = '100ms'")
    spent, failures = 0, 0
    while spent <= bound - 60000:  # more than the room left above the old rows
        with pytest.raises(Exception, match="lock timeout"):
            objects.backfill(autocommit, SIMPLE, pages=1000)
        ((last, called),) = rows(cur, "SELECT last_value, is_called FROM audit_simple_backfill_seq")
        assert called and 39999 <= last < 60000  # drawn again from 1, never past the first batch
        spent += last
        failures += 1
    assert failures > 1
    assert rows(cur, "SELECT count(*) FROM audit_simple WHERE audit_event_id <= %s", [bound]) == [(0,)]
    holder.rollback()
    holder.close()
    cur.execute("RESET lock_timeout")
    assert objects.backfill(autocommit, SIMPLE, pages=1000) == 60000
    assert_numbered_densely(cur, bound)


def test_numbering_stops_at_the_reserved_bound_and_resumes(dbname, autocommit):
    """The backfill sequence's MAXVALUE is the bound: a sequence drawn past it by something
    else mid-run makes the numbering stop with an error saying so, the old rows keeping no
    id above the bound; the next run resumes and numbers them 1..n. Meanwhile a second run
    is refused: the first holds the numbering's lock."""
    cur = autocommit.cursor()
    bound = upgraded_with_new_rows(dbname, cur)
    assert rows(
        cur, "SELECT max_value, cycle FROM pg_sequences WHERE sequencename = 'audit_simple_backfill_seq'"
    ) == [(bound, False)]
    holder = connect(dbname)
    holder.cursor().execute(
        "SELECT 1 FROM audit_simple WHERE audit_txid_current = 20000 AND object_table = 'book' FOR UPDATE"
    )
    numbering = connect(dbname, autocommit=True)
    failed: list[BaseException] = []

    def run() -> None:
        try:
            objects.backfill(numbering, SIMPLE, pages=1000)
        except BaseException as exc:  # noqa: BLE001 - checked below
            failed.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while rows(
            cur,
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE%%'",
        ) != [(1,)]:
            assert time.monotonic() < deadline, "the numbering never waited on the held row"
            time.sleep(0.05)
        with pytest.raises(AuditError) as busy:
            objects.backfill(autocommit, SIMPLE)
        assert str(busy.value) == (
            "another run finishing the upgrade of public.audit_simple holds its lock"
            " (partitioned_audit:public.audit_simple:backfill); nothing was done: let it finish"
            " (or end it), then run this again"
        )
        cur.execute("SELECT setval('audit_simple_backfill_seq', %s)", [bound - 10])
    finally:
        holder.rollback()
        holder.close()
        thread.join()
        numbering.close()
    assert len(failed) == 1 and isinstance(failed[0], AuditError)
    assert str(failed[0]) == (
        "numbering the rows of public.audit_simple kept from 1.0.4 stopped in partition"
        " public.audit_simple_20240101_20240201: the sequence public.audit_simple_backfill_seq"
        f" reached {bound}, the last event id reserved for them (rows written since the upgrade have"
        " the ids above it), and that statement was rolled back. Something else drew values from it:"
        " run this again (`python manage.py migrate`, or objects.backfill()), it resumes after the"
        " highest id already given"
    )
    assert rows(
        cur, "SELECT count(*) FROM audit_simple WHERE object_table = 'book' AND audit_event_id IS NOT NULL"
    ) == [(0,)]
    assert objects.backfill(autocommit, SIMPLE, pages=1000) == 60000
    assert_numbered_densely(cur, bound)


def test_an_empty_104_simple_table_has_nothing_to_number(autocommit):
    """No page, no old row: no backfill sequence, new rows numbered from 1, sealing at once."""
    cur = autocommit.cursor()
    cur.execute(
        SIMPLE_TABLE + "CREATE TABLE audit_simple_20240101_20240201 PARTITION OF audit_simple"
        " FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');"
    )
    cur.execute("BEGIN")
    install(cur, SIMPLE)
    cur.execute("COMMIT")
    assert not objects.backfill_pending(cur, SIMPLE)
    assert rows(cur, "SELECT to_regclass('audit_simple_backfill_seq')") == [(None,)]
    assert layout_status(cur, SIMPLE).status is Status.INSTALLED
    cur.execute(
        "INSERT INTO audit_simple (object_table, object_payload, audit_entry_created, audit_txid_current,"
        " audit_operation) VALUES ('book', '{}', timestamptz '2024-01-20', 1, 'I')"
    )
    assert rows(cur, "SELECT audit_event_id FROM audit_simple") == [(1,)]
    assert objects.backfill(autocommit, SIMPLE) == 0


LEGACY_ADVANCED = (
    ADVANCED_TABLE
    + """
CREATE TABLE logged_actions_20240101_20240201 PARTITION OF logged_actions FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
INSERT INTO logged_actions (schema_name, table_name, relid, action_tstamp_tx, action_tstamp_stm,
                            action_tstamp_clk, action, row_data, changed_fields, statement_only)
SELECT 'public', 'book', 1, t, t, t, 'U', hstore(ARRAY['id', g::text, 'title', 'old']),
       hstore('title', 'new'), false
  FROM generate_series(1, 30000) g, LATERAL (SELECT timestamptz '2024-01-01' + g * interval '1 minute' AS t) x;
"""
)


def test_the_104_advanced_upgrade_converts_hstore_without_a_rewrite(autocommit):
    conn = autocommit
    upgrade_without_rewrite(conn, LEGACY_ADVANCED, ADVANCED)
    cur = conn.cursor()
    assert objects.backfill(conn, ADVANCED, pages=40) == 30000
    assert not objects.backfill_pending(cur, ADVANCED)
    columns = rows(
        cur,
        "SELECT attname, atttypid::regtype::text FROM pg_attribute WHERE attrelid = 'logged_actions'::regclass AND attname LIKE '%%_data%%' OR attrelid = 'logged_actions'::regclass AND attname LIKE 'changed%%' ORDER BY 1",
    )
    assert columns == [("changed_fields", "jsonb"), ("row_data", "jsonb")]
    converted = rows(
        cur, "SELECT row_data, changed_fields FROM logged_actions_view ORDER BY event_id LIMIT 1"
    )
    assert converted == [({"id": "1", "title": "old"}, {"title": "new"})]  # hstore held text
    assert rows(cur, "SELECT count(*) FROM logged_actions WHERE row_data IS NULL") == [(0,)]


@pytest.mark.parametrize("layout", [SIMPLE, ADVANCED], ids=lambda layout: layout.name)
@pytest.mark.parametrize("context", [None, '{"user_id": 7}'], ids=["no context", "context"])
def test_each_row_is_converted_to_jsonb_once_per_image(conn, layout, context):
    """to_jsonb() calls the cast to json of a column's type (for a type that is neither
    composite nor an array); a cast that counts its calls counts the conversions, which a
    flattened subquery would double (once for the key, once for the payload)."""
    cur = conn.cursor()
    install(cur, layout)
    cur.execute("CREATE SEQUENCE conversions")
    cur.execute("CREATE TYPE counted AS ENUM ('a', 'b')")
    cur.execute(
        "CREATE FUNCTION counted_json(counted) RETURNS json LANGUAGE sql VOLATILE"
        " AS $$ SELECT json_build_object('v', $1::text, 'n', nextval('public.conversions')) $$"
    )
    cur.execute("CREATE CAST (counted AS json) WITH FUNCTION counted_json(counted)")
    cur.execute("CREATE TABLE tally (id int PRIMARY KEY, c counted)")
    enable(cur, layout, TableSpec("public", "tally", ("id",)))
    if context:
        cur.execute("SELECT set_config('partitioned_audit.context', %s, true)", [context])

    def conversions_of(statement: str) -> int:
        (before,) = rows(cur, "SELECT nextval('conversions')")[0]
        cur.execute(statement)
        (after,) = rows(cur, "SELECT nextval('conversions')")[0]
        return after - before - 1

    assert conversions_of("INSERT INTO tally SELECT g, 'a' FROM generate_series(1, 3) g") == 3
    assert conversions_of("DELETE FROM tally WHERE id = 3") == 1
    # An UPDATE converts the new image, and in the advanced layout the old one too.
    assert conversions_of("UPDATE tally SET c = 'b'") == (2 if layout is SIMPLE else 4)


def logged_plans(conn: Any, statement: str) -> list[str]:
    """Every plan auto_explain reports for ``statement`` and the queries it runs inside."""
    found: list[str] = []
    if hasattr(conn, "notices"):  # psycopg2 keeps every notice of the connection: start afresh
        del conn.notices[:]
    if hasattr(conn, "add_notice_handler"):  # psycopg 3
        conn.add_notice_handler(lambda diag: found.append(diag.message_primary or ""))
    cur = conn.cursor()
    cur.execute("LOAD 'auto_explain'")
    cur.execute("SET auto_explain.log_min_duration = 0")
    cur.execute("SET auto_explain.log_nested_statements = on")
    cur.execute("SET client_min_messages = log")
    cur.execute(statement)
    cur.execute("RESET client_min_messages")
    found += getattr(conn, "notices", [])  # psycopg2
    return found


def capture_plans(conn: Any, statement: str) -> list[str]:
    """The plans auto_explain reports for the statements ``statement`` runs inside triggers."""
    return [
        plan for plan in logged_plans(conn, statement) if "INSERT INTO" in plan and "logged_actions" in plan
    ]


def test_a_bulk_update_after_single_row_updates_pairs_rows_without_a_nested_loop(conn):
    """plpgsql keeps the capture's plans for the session. Made while every UPDATE changed one
    row, an inner join pairing OLD and NEW is a nested loop, reused for a later bulk UPDATE:
    quadratic in its rows. The capture joins so that no plan can be a nested loop."""
    cur = conn.cursor()
    install(cur, ADVANCED)
    cur.execute("CREATE TABLE item (id int PRIMARY KEY, n int)")
    enable(cur, ADVANCED, TableSpec("public", "item", ("id",)))
    cur.execute("INSERT INTO item SELECT g, 0 FROM generate_series(1, 300) g")
    for i in range(1, 21):  # past plpgsql's five custom plans: the generic plan is in use
        cur.execute("UPDATE item SET n = n + 1 WHERE id = %s", [i])
    plans = capture_plans(conn, "UPDATE item SET n = n + 1")
    assert len(plans) == 1, plans
    assert "Full Join" in plans[0] and "Nested Loop" not in plans[0], plans[0]
    assert rows(cur, "SELECT count(*) FROM logged_actions WHERE action = 'U'") == [(320,)]


def test_skip_unchanged_ignores_excluded_columns_and_works_on_partitions(conn):
    """TableSpec.skip_unchanged: an UPDATE of excluded columns only, or of nothing, leaves
    no simple row, on the table and on a partition written directly."""
    cur = conn.cursor()
    install(cur, SIMPLE)
    cur.execute(
        "CREATE TABLE item (id int, name text, seen timestamptz, PRIMARY KEY (id)) PARTITION BY RANGE (id);"
        " CREATE TABLE item_low PARTITION OF item FOR VALUES FROM (0) TO (100);"
        " INSERT INTO item VALUES (1, 'a', now()), (2, 'b', now())"
    )
    enable(cur, SIMPLE, TableSpec("public", "item", ("id",), excluded=("seen",), skip_unchanged=True))
    cur.execute("UPDATE item SET seen = now() + interval '1 day'")  # excluded only
    cur.execute("UPDATE item SET name = name")  # nothing
    cur.execute("UPDATE item SET name = 'c' WHERE id = 2")
    cur.execute("UPDATE item_low SET name = name, seen = now()")  # the partition's own trigger
    cur.execute("UPDATE item_low SET name = 'd' WHERE id = 1")
    assert rows(
        cur,
        "SELECT object_table, object_pk, object_payload FROM audit_simple"
        " WHERE audit_operation = 'U' ORDER BY audit_event_id",
    ) == [("item", "2", {"id": 2, "name": "c"}), ("item", "1", {"id": 1, "name": "d"})]


@pytest.mark.parametrize("layout", [SIMPLE, ADVANCED], ids=lambda layout: layout.name)
@pytest.mark.parametrize("row_level", [False, True], ids=["statement level", "row level"])
@pytest.mark.parametrize("context", [None, '{"user_id": 7}', "7"], ids=["no context", "object", "number"])
def test_the_capture_runs_no_query_of_its_own_to_read_the_context(conn, layout, row_level, context):
    """The capture reads the context in an expression plpgsql evaluates without the
    executor. A helper the planner cannot inline runs its body as a query of its own, whose
    plan a SQL function builds again in every transaction (tens of microseconds on a
    single-row write): auto_explain, which logs every query the executor starts, sees none
    but the capture's INSERTs; and the context still arrives as an object."""
    cur = conn.cursor()
    install(cur, layout)
    cur.execute("CREATE TABLE item (id int PRIMARY KEY, n int)")
    enable(cur, layout, TableSpec("public", "item", ("id",), row_level=row_level))
    if context:
        cur.execute("SELECT set_config('partitioned_audit.context', %s, true)", [context])
    cur.execute("LOAD 'auto_explain'")
    cur.execute("SET auto_explain.log_verbose = on")
    plans = logged_plans(conn, "INSERT INTO item VALUES (1, 0)")
    inserts = [p for p in plans if "Insert on" in p]
    # the audited INSERT, the audit row's and, in a context, the context row's
    assert len(inserts) == len(plans) == (3 if context else 2), [p.split("\n")[1] for p in plans]
    execute(cur, SQL("SELECT context FROM {}").format(ident(layout.context_table)))
    stored = list(cur.fetchall())
    assert stored == (
        [] if context is None else [(json.loads(context) if context[0] == "{" else {"value": 7},)]
    )
