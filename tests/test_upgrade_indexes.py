"""An upgrade builds the audit table's new indexes partition by partition, CONCURRENTLY:
the migration's transaction only declares them, and audited writes never wait for a build.

The trail of an earlier 2.0 layout (no context table, no ``audit_context_id``, a BRIN on the
event id) is made from a fresh install by taking those away, with rows in a dated
partition and in the DEFAULT one.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from testproject.legacy104 import SIMPLE_TABLE

from partitioned_audit import (
    ADVANCED,
    SIMPLE,
    Layout,
    Status,
    TableSpec,
    enable,
    install,
    layout_status,
    objects,
    sealing,
)
from partitioned_audit.ddl import drop_views
from partitioned_audit.errors import AuditError, ConfigurationError
from partitioned_audit.partitioning.maintenance import LockPolicy
from partitioned_audit.sql import SQL, execute, sqlstate
from tests.engine_db import connect
from tests.helpers import sql

QUERY_CANCELED = "57014"


def rows(cur: Any, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    cur.execute(query, params)
    return list(cur.fetchall())


@pytest.fixture
def autocommit(dbname: str) -> Iterator[Any]:
    c = connect(dbname, autocommit=True)
    yield c
    c.close()


def earlier_layout(dbname: str, conn: Any, layout: Layout) -> None:
    """A fresh install taken back to the layout before the context table, holding rows in
    January 2024 and in the DEFAULT partition."""
    install_in_transaction(dbname, layout)
    t = layout.table
    cur = conn.cursor()
    cur.execute(
        f"CREATE TABLE {t}_20240101_20240201 PARTITION OF {t} FOR VALUES FROM ('2024-01-01') TO ('2024-02-01')"
    )
    cur.execute("CREATE TABLE book (id int PRIMARY KEY, title text)")
    enable(cur, layout, TableSpec("public", "book", ("id",)))
    # rows in the dated partition (their capture time is moved there) and in the DEFAULT one
    cur.execute("INSERT INTO book SELECT g, 'old' FROM generate_series(1, 3000) g")
    cur.execute("SELECT set_config('partitioned_audit.maintenance', 'on', false)")
    cur.execute(f"ALTER TABLE {t} DISABLE TRIGGER USER")
    time_column = layout.time_column
    cur.execute(
        f"UPDATE {t} SET {time_column} = timestamptz '2024-01-10' WHERE {layout.event_column} % 2 = 0"  # noqa: S608
    )
    cur.execute(f"ALTER TABLE {t} ENABLE TRIGGER USER")
    for statement in drop_views(layout, "public"):  # the read view and those built on it
        execute(cur, statement)
    cur.execute(f"DROP INDEX {layout.event_index}, {layout.context_id_index}")
    cur.execute(f"CREATE INDEX {t}_event_brin ON {t} USING brin ({layout.event_column})")
    cur.execute(f"ALTER TABLE {t} DROP COLUMN audit_context_id")
    cur.execute(f"DROP TABLE {layout.context_table} CASCADE")
    cur.execute(f"COMMENT ON FUNCTION {layout.function}() IS 'partitioned_audit an older version'")
    cur.execute("SELECT set_config('partitioned_audit.maintenance', '', false)")


def install_in_transaction(dbname: str, layout: Layout) -> None:
    """What the migration does: install() in one transaction."""
    c = connect(dbname)
    try:
        install(c.cursor(), layout)
        c.commit()
    finally:
        c.close()


def partition_indexes(cur: Any, table: str) -> dict[str, tuple[str, bool, str | None]]:
    """Each index on a partition of ``table``: (partition, valid, the parent index it is attached to)."""
    found = rows(
        cur,
        """
        SELECT i.relname, c.relname, x.indisvalid, p.relname
          FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid
          JOIN pg_index x ON x.indrelid = c.oid JOIN pg_class i ON i.oid = x.indexrelid
          LEFT JOIN pg_inherits hi ON hi.inhrelid = i.oid LEFT JOIN pg_class p ON p.oid = hi.inhparent
         WHERE h.inhparent = %s::regclass
        """,
        [table],
    )
    return {name: (partition, valid, parent) for name, partition, valid, parent in found}


def wait_until(predicate: Any, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("layout", [SIMPLE, ADVANCED], ids=lambda layout: layout.name)
def test_the_upgrade_declares_the_indexes_and_builds_them_while_writers_go_on(dbname, autocommit, layout):
    earlier_layout(dbname, autocommit, layout)
    cur = autocommit.cursor()
    before = partition_indexes(cur, layout.table)

    # The migration's transaction changes the catalog only: no partition gets an index there.
    install_in_transaction(dbname, layout)
    # (the event id's BRIN it replaces is dropped, a catalog change too)
    assert partition_indexes(cur, layout.table) == {
        name: found for name, found in before.items() if found[2] != f"{layout.table}_event_brin"
    }
    pending = [layout.context_id_index, layout.event_index]
    assert objects.indexes_pending(cur, layout) == sorted(pending)
    assert layout_status(cur, layout).status is Status.INSTALLED
    t = layout.table

    # A transaction that wrote to the DEFAULT partition and stays open holds the build there,
    # half way: CREATE INDEX CONCURRENTLY waits for it.
    holder = connect(dbname)
    holder.cursor().execute("INSERT INTO book VALUES (10001, 'held')")
    builder = connect(dbname, autocommit=True)
    builder_pid = rows(builder.cursor(), "SELECT pg_backend_pid()")[0][0]
    failure: list[BaseException] = []

    def build() -> None:
        try:
            objects.build_indexes(builder, layout)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=build)
    thread.start()
    try:
        wait_until(
            lambda: (
                rows(
                    cur,
                    "SELECT wait_event_type = 'Lock' AND query LIKE 'CREATE INDEX CONCURRENTLY%%'"
                    " FROM pg_stat_activity WHERE pid = %s",
                    [builder_pid],
                )
                == [(True,)]
            ),
            "the build waits on the DEFAULT partition",
        )
        # Half way: January's index is built and attached, the parent index still invalid.
        first = pending[0]  # built first: the pending indexes are taken in name order
        january = f"{t}_20240101_20240201{first.removeprefix(t)}"
        assert partition_indexes(cur, t)[january] == (f"{t}_20240101_20240201", True, first)
        assert objects.indexes_pending(cur, layout) == sorted(pending)

        # Audited writes go on, into the very partition being indexed, and never wait.
        writer = connect(dbname, autocommit=True)
        wcur = writer.cursor()
        wcur.execute("SET lock_timeout = '1s'")
        for key in range(20001, 20021):
            wcur.execute("INSERT INTO book VALUES (%s, 'during the build')", [key])
        wcur.execute("UPDATE book SET title = 'changed during the build' WHERE id BETWEEN 1 AND 100")
        writer.close()
        assert thread.is_alive() and not failure

        # The build is stopped there: it leaves an INVALID index on the DEFAULT partition.
        cur.execute("SELECT pg_cancel_backend(%s)", [builder_pid])
        thread.join(30)
        assert not thread.is_alive()
    finally:
        holder.commit()
        holder.close()
        thread.join(30)
        builder.close()
    assert len(failure) == 1 and sqlstate(failure[0]) == QUERY_CANCELED, failure
    left = f"{t}_default{first.removeprefix(t)}"
    assert partition_indexes(cur, t)[left] == (f"{t}_default", False, None)

    # A partition created meanwhile comes with its indexes.
    cur.execute(
        f"CREATE TABLE {t}_20240201_20240301 PARTITION OF {t} FOR VALUES FROM ('2024-02-01') TO ('2024-03-01')"
    )

    # The next run drops the INVALID index, builds it again and finishes the others.
    done = objects.build_indexes(autocommit, layout)
    assert done.rebuilt == [left]
    assert sorted(done.completed) == sorted(pending)
    assert not [name for name in done.built if name.startswith(f"{t}_20240201_20240301")]
    assert objects.indexes_pending(cur, layout) == []
    indexes = partition_indexes(cur, t)
    assert all(valid for _, valid, _ in indexes.values())
    for index in pending:
        attached = sorted(partition for partition, _, parent in indexes.values() if parent == index)
        assert attached == [f"{t}_20240101_20240201", f"{t}_20240201_20240301", f"{t}_default"]
    assert objects.build_indexes(autocommit, layout).built == []  # nothing left to do

    # Nothing was lost, the objects are current and the sealed trail verifies.
    assert rows(cur, "SELECT count(*) FROM book") == [(3021,)]
    assert layout_status(cur, layout).status is Status.INSTALLED
    cur.execute("BEGIN")
    sealing.seal(cur, layout)
    cur.execute("COMMIT")
    verification = sealing.verify(cur, layout)
    assert verification.problems == [] and verification.rows > 3000


def test_a_104_upgrade_declares_every_index_and_the_build_finishes_them(dbname, autocommit):
    cur = autocommit.cursor()
    cur.execute(SIMPLE_TABLE)
    cur.execute(
        "CREATE TABLE audit_simple_20240101_20240201 PARTITION OF audit_simple"
        " FOR VALUES FROM ('2024-01-01') TO ('2024-02-01')"
    )
    cur.execute(
        "INSERT INTO audit_simple (object_table, object_payload, audit_entry_created, audit_txid_current,"
        " audit_operation) SELECT 'book', jsonb_build_object('id', g),"
        " timestamptz '2024-01-01' + g * interval '1 minute', g, 'I' FROM generate_series(1, 5000) g"
    )
    install_in_transaction(dbname, SIMPLE)
    # Only the DEFAULT partition, created empty after the indexes were declared, has them.
    assert {partition for partition, _, _ in partition_indexes(cur, "audit_simple").values()} == {
        "audit_simple_default"
    }
    wanted = sorted([SIMPLE.object_index, SIMPLE.time_index, SIMPLE.event_index, SIMPLE.context_id_index])
    assert objects.indexes_pending(cur, SIMPLE) == wanted
    assert objects.backfill(autocommit, SIMPLE) == 5000
    # While another run builds them (it holds the advisory lock), a second one does nothing.
    other = connect(dbname, autocommit=True)
    lock = ["partitioned_audit:public.audit_simple:indexes"]
    other.cursor().execute("SELECT pg_advisory_lock(hashtext(%s))", lock)
    assert objects.build_indexes(autocommit, SIMPLE).built == []
    # Released before the build below: a closed connection's backend may hold it a moment longer.
    other.cursor().execute("SELECT pg_advisory_unlock(hashtext(%s))", lock)
    other.close()
    assert objects.indexes_pending(cur, SIMPLE) == wanted
    done = objects.build_indexes(autocommit, SIMPLE)
    assert sorted(done.completed) == wanted and objects.indexes_pending(cur, SIMPLE) == []
    assert rows(
        cur, "SELECT count(*) FROM audit_simple WHERE object_table = 'book' AND object_pk IS NULL"
    ) == [(5000,)]


def test_build_indexes_refuses_a_connection_inside_a_transaction(dbname, conn):
    with pytest.raises(ConfigurationError) as caught:
        objects.build_indexes(conn, SIMPLE)
    assert str(caught.value) == (
        "build_indexes() needs a connection in autocommit mode: CREATE INDEX CONCURRENTLY "
        "cannot run inside a transaction block"
    )


def test_migrate_builds_the_indexes_an_upgrade_declared(transactional_db):
    """``migrate`` runs the build after the migrations, then the database checks pass."""
    sql("DROP INDEX audit_simple_context_id")
    sql("CREATE INDEX audit_simple_context_id ON ONLY audit_simple (audit_context_id)")
    assert sql("SELECT indisvalid FROM pg_index WHERE indexrelid = 'audit_simple_context_id'::regclass") == [
        (False,)
    ]
    from django.core import checks

    from django_partitioned_audit.checks import check_capture_triggers

    assert [
        m.id for m in check_capture_triggers(databases=["default"]) if m.id == "partitioned_audit.W024"
    ] == ["partitioned_audit.W024"]
    out = io.StringIO()
    call_command("migrate", verbosity=1, stdout=out)
    assert "Building index(es) audit_simple_context_id partition by partition" in out.getvalue()
    assert sql("SELECT indisvalid FROM pg_index WHERE indexrelid = 'audit_simple_context_id'::regclass") == [
        (True,)
    ]
    call_command("check", "--database", "default")
    assert not [
        m
        for m in check_capture_triggers(databases=["default"])
        if m.level >= checks.WARNING and m.id != "partitioned_audit.W022"
    ]


@pytest.fixture
def unattached_index(dbname: str, autocommit: Any) -> Iterator[Any]:
    """A partition whose index is built but not yet attached to its parent's, and a
    connection holding the partition locked (ACCESS EXCLUSIVE) in an open transaction."""
    cur = autocommit.cursor()
    cur.execute("CREATE TABLE trail (t int) PARTITION BY RANGE (t)")
    cur.execute("CREATE TABLE trail_1 PARTITION OF trail FOR VALUES FROM (0) TO (10)")
    cur.execute("CREATE INDEX trail_t ON ONLY trail (t)")
    cur.execute("CREATE INDEX trail_1_t ON trail_1 (t)")
    holder = connect(dbname)
    holder.cursor().execute("LOCK TABLE trail_1 IN ACCESS EXCLUSIVE MODE")
    yield holder
    holder.rollback()
    holder.close()


def attached(cur: Any) -> bool:
    return rows(cur, "SELECT count(*) FROM pg_inherits WHERE inhrelid = 'trail_1_t'::regclass") == [(1,)]


def test_attaching_an_index_waits_for_a_held_partition_between_short_attempts(autocommit, unattached_index):

    pauses: list[float] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 2:
            unattached_index.commit()  # the long transaction ends

    statement = SQL("ALTER INDEX trail_t ATTACH PARTITION trail_1_t")
    objects._attach(autocommit, statement, LockPolicy(lock_timeout_ms=50, attempts=5, pause_ms=10), pause)
    assert len(pauses) == 2 and all(0.005 <= p <= 0.015 for p in pauses)
    assert attached(autocommit.cursor())
    # Each attempt ran in a transaction of its own, whose lock_timeout went with it.
    assert rows(autocommit.cursor(), "SELECT current_setting('lock_timeout')") == [("0",)]


def test_attaching_an_index_gives_up_with_a_clear_error_when_the_partition_stays_held(
    autocommit, unattached_index
):

    pauses: list[float] = []
    statement = SQL("ALTER INDEX trail_t ATTACH PARTITION trail_1_t")
    with pytest.raises(AuditError) as caught:
        objects._attach(
            autocommit, statement, LockPolicy(lock_timeout_ms=50, attempts=3, pause_ms=10), pauses.append
        )
    assert str(caught.value) == (
        "ALTER INDEX trail_t ATTACH PARTITION trail_1_t could not get its lock within 50 ms in 3 attempts "
        "(a long transaction writes to that partition); the index is built, run this again later to attach it"
    )
    assert len(pauses) == 2 and not attached(autocommit.cursor())
