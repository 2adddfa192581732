"""Tamper evidence: seals cover every settled row, verify finds every kind of tampering.

Each test works on a scratch database of its own, as the superuser (who can do anything,
and is therefore the attacker that only ``verify`` can catch); the application and owner
roles' view is in tests/attacks/test_seals.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from testproject.legacy104 import SIMPLE_TABLE

from partitioned_audit import ADVANCED, SIMPLE, TableSpec, cli, enable, install, objects, sealing
from partitioned_audit.ddl import drop_views
from partitioned_audit.errors import ConfigurationError
from partitioned_audit.layouts import Layout
from partitioned_audit.partitioning.maintenance import Maintainer
from partitioned_audit.partitioning.ranges import PartitionInfo
from partitioned_audit.sealing import SealError
from partitioned_audit.sql import SQL, execute, ident, literal
from tests.engine_db import connect, scratch_database

LAYOUTS = pytest.mark.parametrize("layout", [SIMPLE, ADVANCED], ids=lambda layout: layout.name)


class Trail:
    """One audited table ``invoice`` and the audit objects of ``layout`` in ``schema``."""

    def __init__(self, dbname: str, layout: Layout, schema: str = "public") -> None:
        self.dbname, self.layout, self.schema = dbname, layout, schema
        self.conn = connect(dbname, autocommit=True)
        self.m = Maintainer(self.conn, layout, schema)
        cur = self.conn.cursor()
        cur.execute("CREATE TABLE invoice (id int PRIMARY KEY, amount numeric, note text)")
        cur.execute("BEGIN")
        install(cur, layout, schema)
        enable(cur, layout, TableSpec("public", "invoice", ("id",)), schema=schema)
        cur.execute("COMMIT")

    @property
    def table(self) -> Any:
        return ident(self.schema, self.layout.table)

    @property
    def event(self) -> Any:
        return ident(self.layout.event_column)

    def run(self, statement: Any, params: Any = None) -> list[tuple[Any, ...]]:
        cur = self.conn.cursor()
        execute(cur, statement, params)
        return list(cur.fetchall()) if cur.description else []

    def write(self, first: int, count: int) -> None:
        self.run(
            "INSERT INTO invoice SELECT g, g * 1.5, 'n' || g FROM generate_series(%s::int, %s::int) g",
            [first, first + count - 1],
        )

    def count(self, lo: int, hi: int) -> int:
        """Audit rows with event ids in [lo, hi] (the advanced layout spends an id per statement)."""
        return sum(lo <= i <= hi for i in self.ids())

    @property
    def default(self) -> str:
        return f"{self.schema}.{self.layout.default_partition}"

    def ids(self) -> list[int]:
        return [i for (i,) in self.run(SQL("SELECT {} FROM {} ORDER BY 1").format(self.event, self.table))]

    def tamper(self, statement: Any) -> None:
        """As a superuser stepping past the guard and the freeze, as an attacker would."""
        self.run("SELECT set_config('partitioned_audit.maintenance', 'on', false)")
        self.run(SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(self.table, ident(sealing.FREEZE_TRIGGER)))
        try:
            self.run(statement)
        finally:
            self.run(
                SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER {}").format(
                    self.table, ident(sealing.FREEZE_TRIGGER)
                )
            )
            self.run("SELECT set_config('partitioned_audit.maintenance', '', false)")

    def as_before_the_login_role_column(self) -> None:
        """The simple install as a version before ``session_user_name`` left it: no column,
        and no view reading it."""
        self.run("SELECT set_config('partitioned_audit.maintenance', 'on', false)")
        cur = self.conn.cursor()
        for statement in drop_views(SIMPLE, self.schema):
            execute(cur, statement)
        self.run(SQL("ALTER TABLE {} DROP COLUMN session_user_name").format(self.table))
        self.run("SELECT set_config('partitioned_audit.maintenance', '', false)")

    def insert_past_the_seal_trigger(self, statement: Any, params: Any = None) -> None:
        """Insert seal entries as an earlier version's seal function wrote them: the seal table
        takes a seal only in the current format, so they go in past its trigger, taken off
        and put back as install leaves it."""
        seals = ident(self.schema, self.layout.seal_table)
        trigger = ident(sealing.APPEND_ONLY_TRIGGER)
        self.run("SELECT set_config('partitioned_audit.maintenance', 'on', false)")
        self.run(SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(seals, trigger))
        try:
            self.run(statement, params)
        finally:
            self.run(SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER {}").format(seals, trigger))
            self.run("SELECT set_config('partitioned_audit.maintenance', '', false)")

    def verify(self, expect: str | None = None) -> sealing.Verification:
        """Verify inside the database and offline: both must find exactly the same."""
        inside = self.m.verify(expect)
        outside = self.m.verify(expect, offline=True)
        assert outside == inside
        return inside

    def where(self, event_id: int) -> Any:
        return SQL("{} = {}").format(self.event, literal(event_id))


@pytest.fixture(params=[SIMPLE, ADVANCED], ids=lambda layout: layout.name)
def trail(request: pytest.FixtureRequest) -> Iterator[Trail]:
    with scratch_database() as dbname:
        t = Trail(dbname, request.param)
        yield t
        t.conn.close()


def test_with_no_transaction_in_flight_a_seal_covers_every_committed_row(trail):
    trail.write(1, 2500)
    trail.run("UPDATE invoice SET note = 'x' WHERE id <= 10")
    ids = trail.ids()
    sealed = trail.m.seal(chunk_size=1000)
    assert sealed.sealed and (sealed.first_event_id, sealed.last_event_id) == (1, max(ids))
    assert sealed.rows == len(ids) and sealed.chunks == len({(i - 1) // 1000 for i in ids})
    result = trail.verify(expect=sealed.head)
    assert result.ok and result.rows == len(ids) and result.head == sealed.head
    again = trail.m.seal()
    assert not again.sealed and again.head == sealed.head  # nothing new: the chain stays
    assert trail.run(SQL("SELECT count(*) FROM {}").format(ident(trail.schema, trail.layout.seal_table))) == [
        (1,)
    ]


def test_a_transaction_open_across_seals_is_sealed_around_and_its_rows_later_as_late_rows(trail):
    trail.write(1, 10)
    open_tx = connect(trail.dbname)
    cur = open_tx.cursor()
    cur.execute("INSERT INTO invoice VALUES (100, 1, 'open')")
    execute(cur, SQL("SELECT max({}), txid_current() FROM {}").format(trail.event, trail.table))
    held, txid = cur.fetchone()
    trail.write(11, 5)  # committed, with ids after the open transaction's
    # The committed rows around the open transaction's are sealed; its id stays a gap that
    # only its own transaction may fill.
    first = trail.m.seal(wait_ms=50)
    assert first.sealed and first.last_event_id == first.allocated == max(trail.ids())
    assert first.rows == 15 and first.pending == [txid] and first.waiting_for
    trail.write(20, 5)
    second = trail.m.seal(wait_ms=0)
    assert second.sealed and second.rows == 5 and second.pending == [txid]
    open_tx.commit()
    other = connect(trail.dbname)  # a new writer, open from here on
    other.cursor().execute("INSERT INTO invoice VALUES (200, 1, 'other')")
    assert held in trail.ids() and trail.verify().ok  # a late row of an open seal is no problem
    third = trail.m.seal(wait_ms=0)
    # The first writer has ended: its row, committed into the first seal's range, is added to
    # the chain as a late row; the other writer is open around this seal.
    assert (
        third.sealed
        and third.late_rows == 1
        and third.rows == 1
        and third.pending
        and third.pending != [txid]
    )
    other.commit()
    fourth = trail.m.seal(wait_ms=0)
    assert fourth.sealed and fourth.last_event_id == max(trail.ids()) and fourth.late_rows == 1
    result = trail.verify(expect=fourth.head)
    assert result.ok and result.rows == len(trail.ids()) == 22
    # Once its seal is closed, a gap takes no row: one forged there is found.
    trail.tamper(SQL("DELETE FROM {} WHERE {}").format(trail.table, trail.where(held)))
    assert [p.kind for p in trail.verify().problems] == ["removed"]
    open_tx.close()
    other.close()


def test_a_writer_in_a_savepoint_is_known_by_its_own_transaction_id(trail):
    """Its audit rows carry the top transaction's id, not the savepoint's, which it also holds."""
    writer = connect(trail.dbname)
    cur = writer.cursor()
    cur.execute("INSERT INTO invoice VALUES (1, 1, 'top')")
    for n in range(2, 5):
        cur.execute(f"SAVEPOINT s{n}")
        cur.execute("INSERT INTO invoice VALUES (%s, 1, 'sub')", [n])
    cur.execute("SELECT txid_current()")
    (txid,) = cur.fetchone()
    trail.write(10, 2)
    first = trail.m.seal(wait_ms=0)
    assert first.pending == [txid] and first.rows == 2
    writer.commit()
    second = trail.m.seal(wait_ms=0)
    assert second.late_rows == len(trail.ids()) - 2 and trail.verify().ok
    writer.close()


def test_a_seal_waits_briefly_for_writers_that_are_about_to_commit(trail):
    writer = connect(trail.dbname)
    writer.cursor().execute("INSERT INTO invoice VALUES (1, 1, 'soon')")
    threading.Timer(0.2, writer.commit).start()
    sealed = trail.m.seal(wait_ms=5000)
    assert sealed.sealed and sealed.last_event_id == max(trail.ids()) and not sealed.waiting_for
    writer.close()


def test_an_empty_seal_changes_nothing(trail):
    assert not trail.m.seal().sealed  # nothing written yet
    assert trail.verify().ok and trail.verify().head is None
    trail.write(1, 3)
    head = trail.m.seal().head
    for _ in range(3):
        assert trail.m.seal().head == head
    (count,) = trail.run(SQL("SELECT count(*) FROM {}").format(ident(trail.schema, trail.layout.seal_table)))[
        0
    ]
    assert count == 1


def test_ids_of_rolled_back_transactions_are_sealed_as_empty(trail):
    trail.write(1, 3)
    aborted = connect(trail.dbname)
    aborted.cursor().execute("INSERT INTO invoice VALUES (50, 1, 'gone')")
    aborted.rollback()
    trail.write(4, 2)
    sealed = trail.m.seal()
    assert sealed.rows == 5 and sealed.last_event_id == max(trail.ids()) and trail.verify().ok
    # A row forged later into the gap the rollback left is found.
    gap = sorted(set(range(1, sealed.last_event_id + 1)) - set(trail.ids()))[0]
    forge = SQL(
        "INSERT INTO {t} SELECT (jsonb_populate_record(NULL::{t}, to_jsonb(a) || jsonb_build_object({name}, {gap}))).*"
        " FROM {t} a WHERE {where}"
    )
    trail.tamper(
        forge.format(
            t=trail.table,
            name=literal(trail.layout.event_column),
            gap=literal(gap),
            where=trail.where(max(trail.ids())),
        )
    )
    problems = trail.verify().problems
    assert [(p.kind, p.first_event_id <= gap <= p.last_event_id) for p in problems] == [("added", True)]


# ---------------------------------------------------------------------------------------
# Tampering, as a superuser: each kind is caught and located.
# ---------------------------------------------------------------------------------------


@pytest.fixture
def sealed(trail: Trail) -> Trail:
    trail.write(1, 3000)
    trail.m.seal(chunk_size=1000)
    assert trail.verify().ok
    return trail


def only_problem(t: Trail) -> sealing.Finding:
    problems = t.verify().problems
    assert len(problems) == 1, [p.describe() for p in problems]
    return problems[0]


def test_an_updated_row_is_reported_changed_with_its_chunk_and_partition(sealed):
    payload = "object_payload" if sealed.layout is SIMPLE else "row_data"
    sealed.tamper(
        SQL("UPDATE {} SET {} = {} || '{{\"amount\": 0}}' WHERE {}").format(
            sealed.table, ident(payload), ident(payload), sealed.where(1500)
        )
    )
    problem = only_problem(sealed)
    assert (problem.kind, problem.first_event_id, problem.last_event_id) == ("changed", 1001, 2000)
    assert problem.expected_rows == problem.found_rows == sealed.count(1001, 2000)
    assert problem.partitions == sealed.default


def test_a_deleted_row_is_reported_removed(sealed):
    sealed.tamper(SQL("DELETE FROM {} WHERE {}").format(sealed.table, sealed.where(2999)))
    problem = only_problem(sealed)
    assert (problem.kind, problem.first_event_id, problem.last_event_id) == ("removed", 2001, 3000)
    assert (problem.expected_rows, problem.found_rows) == (
        sealed.count(2001, 3000) + 1,
        sealed.count(2001, 3000),
    )


def test_a_forged_row_in_a_sealed_range_is_reported_added(sealed):
    sealed.tamper(
        SQL("INSERT INTO {} SELECT * FROM {} WHERE {}").format(sealed.table, sealed.table, sealed.where(10))
    )
    problem = only_problem(sealed)
    assert (problem.kind, problem.first_event_id) == ("added", 1)
    assert problem.found_rows == problem.expected_rows + 1 == sealed.count(1, 1000)


def test_a_row_forged_with_an_id_below_every_seal_is_reported_added(sealed):
    sealed.tamper(
        SQL("INSERT INTO {} SELECT * FROM {} WHERE {}").format(sealed.table, sealed.table, sealed.where(10))
    )
    sealed.tamper(
        SQL("UPDATE {} SET {} = -5 WHERE ctid = (SELECT max(ctid) FROM {} WHERE {})").format(
            sealed.table, sealed.event, sealed.table, sealed.where(10)
        )
    )
    problem = only_problem(sealed)
    assert (problem.kind, problem.first_event_id, problem.seal_id) == ("added", -5, None)


def test_swapped_event_ids_are_reported_changed_in_both_chunks(sealed):
    swap = SQL("UPDATE {t} SET {e} = CASE WHEN {e} = 5 THEN 2005 ELSE 5 END WHERE {e} IN (5, 2005)").format(
        t=sealed.table, e=sealed.event
    )
    sealed.tamper(swap)
    found = [(p.kind, p.first_event_id) for p in sealed.verify().problems]
    assert found == [("changed", 1), ("changed", 2001)]


def test_a_changed_timestamp_is_reported_changed_even_when_the_row_moves_partition(sealed):
    sealed.m.create([PartitionInfo.create(sealed.layout.table, dt.date(2001, 1, 1), dt.date(2001, 2, 1))])
    sealed.tamper(
        SQL("UPDATE {} SET {} = '2001-01-15' WHERE {}").format(
            sealed.table, ident(sealed.layout.time_column), sealed.where(42)
        )
    )
    problem = only_problem(sealed)
    assert (problem.kind, problem.first_event_id) == ("changed", 1)
    assert f"{sealed.layout.table}_20010101_20010201" in problem.partitions


@pytest.mark.parametrize(
    "remove",
    ["DROP TABLE {part}", "TRUNCATE {part}", "ALTER TABLE {table} DETACH PARTITION {part}"],
    ids=["drop", "truncate", "detach"],
)
def test_a_partition_removed_without_retention_is_reported_with_its_name(trail, remove):
    january = PartitionInfo.create(trail.layout.table, dt.date(2001, 1, 1), dt.date(2001, 2, 1))
    trail.m.create([january])
    trail.write(1, 1500)
    time_col = ident(trail.layout.time_column)
    # The first 700 rows as if written in January 2001 (moving them there is the set-up).
    trail.tamper(
        SQL("UPDATE {} SET {} = '2001-01-10' WHERE {} <= 700").format(trail.table, time_col, trail.event)
    )
    trail.m.seal(chunk_size=1000)
    assert trail.verify().ok
    sealed_rows, left = trail.count(1, 1000), trail.count(701, 1000)
    trail.run("SELECT set_config('partitioned_audit.maintenance', 'on', false)")
    trail.run(SQL(remove).format(part=ident(trail.schema, january.partition), table=trail.table))
    problems = trail.verify().problems
    found = [(p.kind, p.first_event_id, p.expected_rows, p.found_rows, p.partitions) for p in problems]
    assert found == [("removed", 1, sealed_rows, left, trail.default)]
    assert f"(sealed in {trail.schema}.{january.partition} {trail.default})" in problems[0].detail


def test_an_altered_seal_breaks_the_chain(sealed):
    seals = ident(sealed.schema, sealed.layout.seal_table)
    sealed.run("SELECT set_config('partitioned_audit.maintenance', 'on', false)")
    sealed.run(SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(seals, ident(sealing.APPEND_ONLY_TRIGGER)))
    sealed.run(SQL("UPDATE {} SET row_count = row_count - 1").format(seals))
    kinds = {p.kind for p in sealed.verify().problems}
    assert kinds == {"chain"}


def test_a_superuser_who_rewrites_rows_and_every_seal_is_caught_by_the_head_kept_outside(sealed):
    kept = sealed.verify().head
    sealed.tamper(SQL("DELETE FROM {} WHERE {}").format(sealed.table, sealed.where(7)))
    seals = ident(sealed.schema, sealed.layout.seal_table)
    sealed.run("SELECT set_config('partitioned_audit.maintenance', 'on', false)")
    sealed.run(SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(seals, ident(sealing.APPEND_ONLY_TRIGGER)))
    sealed.run(SQL("DELETE FROM {}").format(seals))
    sealed.m.seal()  # a fresh, self-consistent chain over the altered rows
    assert sealed.verify().ok  # without the head, nothing to compare with
    result = sealed.verify(expect=kept)
    assert [p.kind for p in result.problems] == ["head"] and kept in result.problems[0].detail


def test_a_chain_cut_short_is_caught_by_the_head(sealed):
    first_seal_ends = sealed.verify().last_event_id
    sealed.write(5000, 10)
    kept = sealed.m.seal().head
    seals = ident(sealed.schema, sealed.layout.seal_table)
    sealed.run("SELECT set_config('partitioned_audit.maintenance', 'on', false)")
    sealed.run(SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(seals, ident(sealing.APPEND_ONLY_TRIGGER)))
    sealed.run(SQL("DELETE FROM {} WHERE seal_id = 2").format(seals))
    sealed.tamper(
        SQL("DELETE FROM {} WHERE {} > {}").format(sealed.table, sealed.event, literal(first_seal_ends))
    )
    assert sealed.verify().ok
    assert [p.kind for p in sealed.verify(expect=kept).problems] == ["head"]
    # An older head is still in a longer chain: that is not a problem.
    assert sealed.verify(expect=sealed.verify().head).ok


# ---------------------------------------------------------------------------------------
# Retention and the DEFAULT partition
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("drop", [True, False], ids=["drop", "detach"])
def test_retention_keeps_the_chain_and_says_what_it_removed(trail, drop):
    old = PartitionInfo.create(trail.layout.table, dt.date(2001, 1, 1), dt.date(2001, 2, 1))
    trail.m.create([old])
    trail.write(1, 2500)
    trail.tamper(
        SQL("UPDATE {} SET {} = '2001-01-10' WHERE {} <= 1200").format(
            trail.table, ident(trail.layout.time_column), trail.event
        )
    )
    trail.m.seal(chunk_size=1000)
    kept = trail.verify().head
    moved = [i for i in trail.ids() if i <= 1200]
    assert trail.m.detach([old], drop=drop) == [old]
    result = trail.verify(expect=kept)
    assert result.ok, [p.describe() for p in result.problems]
    (retired,) = result.retired
    assert (retired.first_event_id, retired.last_event_id, retired.expected_rows) == (
        min(moved),
        1200,
        len(moved),
    )
    assert (
        retired.partitions == f"{trail.schema}.{old.partition}"
        and ("dropped" if drop else "detached") in retired.detail
    )
    assert result.rows == len(trail.ids()) == 2500 - len(moved)
    # The chunk the partition shared with the DEFAULT partition still catches a change.
    left = trail.count(1001, 2000)
    trail.tamper(SQL("DELETE FROM {} WHERE {}").format(trail.table, trail.where(1500)))
    problem = only_problem(trail)
    assert (problem.kind, problem.first_event_id, problem.expected_rows) == ("removed", 1001, left)


def test_retention_refuses_a_partition_whose_sealed_rows_were_altered(trail):
    old = PartitionInfo.create(trail.layout.table, dt.date(2001, 1, 1), dt.date(2001, 2, 1))
    trail.m.create([old])
    trail.write(1, 100)
    trail.tamper(
        SQL("UPDATE {} SET {} = '2001-01-10' WHERE {} <= 50").format(
            trail.table, ident(trail.layout.time_column), trail.event
        )
    )
    trail.m.seal()
    trail.tamper(SQL("DELETE FROM {} WHERE {}").format(trail.table, trail.where(3)))
    with pytest.raises(SealError, match="no longer matches its seal"):
        trail.m.detach([old], drop=True)
    assert trail.run(SQL("SELECT to_regclass({})").format(literal(f"{trail.schema}.{old.partition}")))[0][0]


def test_rows_sealed_in_the_default_partition_keep_verifying_once_create_moves_them(trail):
    trail.write(1, 1500)
    # Rows no partition covers wait in the DEFAULT partition (March 2001 here) and get sealed there.
    trail.tamper(
        SQL("UPDATE {} SET {} = '2001-03-05' WHERE {} <= 600").format(
            trail.table, ident(trail.layout.time_column), trail.event
        )
    )
    trail.m.seal()
    march = PartitionInfo.create(trail.layout.table, dt.date(2001, 3, 1), dt.date(2001, 4, 1))
    assert trail.m.create([march]).moved_rows == trail.count(1, 600)
    result = trail.verify()
    assert result.ok and result.rows == 1500
    (where,) = trail.run(
        SQL("SELECT DISTINCT tableoid::regclass::text FROM {} WHERE {} <= 600").format(
            trail.table, trail.event
        )
    )
    assert where == (march.partition,)


# ---------------------------------------------------------------------------------------
# The canonical encoding, re-implemented from docs/tamper-evidence.md
# ---------------------------------------------------------------------------------------


def record_text(fields: list[str | None]) -> str:
    """PostgreSQL's text of ROW(...): a field is quoted when empty or holding a quote,
    backslash, parenthesis, comma or white space; quotes and backslashes inside are doubled;
    NULL is nothing at all."""
    out = []
    for value in fields:
        if value is None:
            out.append("")
        elif value == "" or any(c in value for c in '"\\(),') or any(c.isspace() for c in value):
            out.append('"' + value.replace("\\", "\\\\").replace('"', '""') + '"')
        else:
            out.append(value)
    return "(" + ",".join(out) + ")"


def row_digest(fields: list[str | None]) -> bytes:
    """Format 2: SHA-256 over the fields' pieces in column order, from the UTF-8 bytes of each
    field's text: 0x00 for NULL; 0x01, the length in 4 bytes (big-endian) and the bytes when
    at most 65 536 bytes long; else 0x02 and their SHA-256."""
    pieces = []
    for value in fields:
        if value is None:
            pieces.append(b"\x00")
            continue
        data = value.encode()
        if len(data) <= 65_536:
            pieces.append(b"\x01" + len(data).to_bytes(4, "big") + data)
        else:
            pieces.append(b"\x02" + hashlib.sha256(data).digest())
    return hashlib.sha256(b"".join(pieces)).digest()


def chunk_digest(form: int, rows: list[list[str | None]]) -> bytes:
    """A chunk's digest from its rows' field texts in event-id order, in format ``form``."""
    if form == 1:
        return hashlib.sha256("".join(record_text(f) + "\n" for f in rows).encode()).digest()
    return hashlib.sha256(b"".join(row_digest(f) for f in rows)).digest()


def link(previous: bytes, header: list[str | None], chunks: list[list[Any]], extra: str | None) -> bytes:
    """A seal's digest: the previous digest, the header, the chunk lines, then (format 2 on)
    the text of ``extra``."""
    chunk_lines = "".join(
        record_text([str(s), str(k), str(n), bytes(d).hex(), p]) + "\n" for s, k, n, d, p in chunks
    )
    text = f"{previous.hex()}\n{record_text(header)}\n{chunk_lines}" + ("" if extra is None else extra + "\n")
    return hashlib.sha256(text.encode()).digest()


def field_texts(trail: Trail, form: int) -> dict[int, list[str | None]]:
    """Each audit row's fields that format ``form`` hashes, as its type's output function
    writes them (what COPY prints): the columns the format covers (format 4 adds the simple
    layout's ``session_user_name``), then from format 3 on the row's context id, and its
    context row's login role and context."""
    conn = connect(trail.dbname, autocommit=True)
    cur = conn.cursor()
    cur.execute("SET TimeZone = 'UTC'")
    names = [SQL("e.{}").format(ident(c)) for c in trail.layout.sealed_columns(form)]
    if form >= 3:
        names += [SQL("e.audit_context_id"), SQL("c.session_user_name"), SQL("c.context")]
    columns = SQL(", ").join(
        SQL("CASE WHEN {c} IS NOT NULL THEN format('%s', {c}) END").format(c=c) for c in names
    )
    layout = trail.layout
    execute(
        cur,
        SQL(
            "SELECT e.{}, {} FROM {} e LEFT JOIN {} c ON c.txid = e.{} AND c.created = e.{}"
            " AND c.context_id = e.audit_context_id ORDER BY 1"
        ).format(
            trail.event,
            columns,
            trail.table,
            ident(trail.schema, layout.context_table),
            ident(layout.txid_column),
            ident(layout.time_column),
        ),
    )
    rows = {event_id: fields for event_id, *fields in cur.fetchall()}
    conn.close()
    return rows


def test_a_third_party_recomputes_every_digest_from_the_documented_encoding(trail):
    trail.write(1, 1200)
    trail.run("UPDATE invoice SET note = E'a \"quoted\", (odd)\\\\ line\\nnext' WHERE id = 3")
    trail.run("DELETE FROM invoice WHERE id = 4")
    # Fields around the length at which a field is hashed apart (65 536 bytes), in UTF-8.
    trail.run("UPDATE invoice SET note = repeat('é', 32768) WHERE id = 5")
    trail.run("UPDATE invoice SET note = repeat('é', 32769) WHERE id = 6")
    trail.m.seal(chunk_size=500)
    trail.write(2000, 3)
    head = trail.m.seal(chunk_size=7).head
    rows = field_texts(trail, sealing.FORMAT)
    seals = trail.run(
        SQL(
            "SELECT seal_id, kind, sealed_at::text, first_event_id, last_event_id, row_count, chunk_size,"
            " partition_name, chunk_seal, chunk_index, chunk_rows, chunk_digest, chunk_partitions, previous, digest,"
            " extra::text FROM {} ORDER BY 1"
        ).format(ident(trail.schema, trail.layout.seal_table))
    )
    previous = bytes(32)
    for seal_id, kind, at, first, last, count, size, part, cs, ks, ns, ds, ps, prev, digest, extra in seals:
        assert json.loads(extra) == {"format": sealing.FORMAT, "pending": [], "closes": []}
        lines: dict[int, list[list[str | None]]] = {}
        for event_id, fields in rows.items():
            if first <= event_id <= last:
                lines.setdefault((event_id - first) // size, []).append(fields)
        assert sorted(lines) == list(ks) and [len(v) for _, v in sorted(lines.items())] == list(ns)
        for k, d in zip(ks, ds, strict=True):
            assert chunk_digest(sealing.FORMAT, lines[k]) == bytes(d)
        header = [str(seal_id), kind, at, str(first), str(last), str(count), str(size), part]
        computed = link(previous, header, list(zip(cs, ks, ns, ds, ps, strict=True)), extra)
        assert bytes(prev) == previous and bytes(digest) == computed
        previous = computed
    assert previous.hex() == head


def test_seals_of_format_1_made_before_the_upgrade_keep_verifying(trail):
    """A chain sealed by the format-1 functions (the rows' lines hashed whole) is recomputed
    with format 1, and new seals chain on from it in the current format."""
    trail.write(1, 30)
    if trail.layout.sealed_from:
        # (rows written then had none of the columns added since: they read NULL there)
        trail.run(
            SQL("UPDATE {} SET {}").format(
                trail.table,
                SQL(", ").join(SQL("{} = NULL").format(ident(name)) for name in trail.layout.sealed_from),
            )
        )
    rows = field_texts(trail, 1)
    ids = sorted(rows)
    sealed_at = trail.run("SELECT now()::text")[0][0]
    chunks = [
        [1, k, len(group), chunk_digest(1, group), trail.default]
        for k, group in enumerate(
            [[rows[i] for i in ids if (i - 1) // 10 == k] for k in range(max(ids) // 10 + 1)]
        )
        if group
    ]
    header = ["1", "seal", sealed_at, "1", str(max(ids)), str(len(ids)), "10", None]
    digest = link(bytes(32), header, chunks, None)
    seals = ident(trail.schema, trail.layout.seal_table)
    trail.insert_past_the_seal_trigger(
        SQL(
            "INSERT INTO {} VALUES (1, 'seal', %s, 1, %s, %s, 10, NULL, %s, %s, %s, %s, %s, %s, %s, NULL)"
        ).format(seals),
        [sealed_at, max(ids), len(ids), *(list(c) for c in zip(*chunks, strict=True)), bytes(32), digest],
    )
    result = trail.verify(expect=digest.hex())
    assert result.ok and result.rows == len(ids), [p.describe() for p in result.problems]
    trail.write(100, 5)
    new = trail.m.seal()
    assert new.rows == 5 and trail.verify(expect=digest.hex()).ok
    trail.tamper(SQL("DELETE FROM {} WHERE {}").format(trail.table, trail.where(12)))
    assert [(p.kind, p.seal_id, p.first_event_id) for p in trail.verify().problems] == [("removed", 1, 11)]


def append_seal(trail: Trail, seal_format: int, last: int, pending: Sequence[int] = ()) -> Any:
    """An INSERT of the chain's next entry: a seal of ``seal_format`` (chunks of 10 ids) from
    the event after the last one sealed to ``last``, hashed by the installed chunks function
    in that format's encoding and linked as the seal function links; open when ``pending``
    names transactions (format 2 and later: format 1 has no ``extra`` to list them in)."""
    seals = ident(trail.schema, trail.layout.seal_table)
    assert seal_format > 1 or not pending  # noqa: S101
    extra = (
        None
        if seal_format == 1
        else json.dumps({"format": seal_format, "pending": list(pending), "closes": []})
    )
    return SQL(
        "WITH s AS (SELECT (SELECT coalesce(max(seal_id), 0) + 1 FROM {seals}) AS id,"
        " coalesce((SELECT digest FROM {seals} ORDER BY seal_id DESC LIMIT 1), {genesis}) AS previous,"
        " (SELECT coalesce(max(last_event_id), 0) + 1 FROM {seals} WHERE kind = 'seal') AS first,"
        " {last}::bigint AS last),"
        " e AS (SELECT s.id, 'seal'::text AS kind, now() AS sealed_at, s.first, s.last, sum(c.row_count)::bigint AS n,"
        " 10 AS size, NULL::text AS part, array_agg(c.seal_id ORDER BY c.chunk) AS cs,"
        " array_agg(c.chunk ORDER BY c.chunk) AS ks, array_agg(c.row_count ORDER BY c.chunk) AS ns,"
        " array_agg(c.digest ORDER BY c.chunk) AS ds, array_agg(c.partitions ORDER BY c.chunk) AS ps,"
        " {extra}::jsonb AS extra, s.previous"
        " FROM s, {chunks}(ARRAY[s.id], ARRAY[s.first], ARRAY[10], ARRAY[{format}], s.first, s.last, NULL, '{{}}') c"
        " GROUP BY s.id, s.first, s.last, s.previous)"
        " INSERT INTO {seals} (seal_id, kind, sealed_at, first_event_id, last_event_id, row_count, chunk_size,"
        " partition_name, chunk_seal, chunk_index, chunk_rows, chunk_digest, chunk_partitions, extra, previous, digest)"
        " SELECT e.*, {link}(e.previous, e.id, e.kind, e.sealed_at, e.first, e.last, e.n, e.size, e.part, e.cs, e.ks,"
        " e.ns, e.ds, e.ps, e.extra) FROM e"
    ).format(
        seals=seals,
        genesis=SQL("decode({}, 'hex')").format(literal(sealing.GENESIS)),
        last=literal(last),
        extra=literal(extra),
        format=literal(seal_format),
        chunks=ident(trail.schema, trail.layout.seal_function("chunks")),
        link=ident(trail.schema, sealing.LINK_FUNCTION),
    )


def test_a_seal_format_never_goes_down_along_the_chain(trail):
    """Seals of formats 1, 2 and 3, as the versions before each upgrade made them, then
    seals of the current format verify; a seal of an earlier format after them (slipped past
    the seal table's trigger, which refuses it) is not counted, inside the database and
    offline, and its rows are left unsealed."""
    trail.run("""SELECT set_config('partitioned_audit.context', '{"user_id": 7}', false)""")
    trail.write(1, 40)
    trail.run("SELECT set_config('partitioned_audit.context', '', false)")
    if trail.layout.sealed_from:
        # (rows written before format 4 had none of the columns it added: NULL there)
        trail.tamper(
            SQL("UPDATE {} SET {}").format(
                trail.table,
                SQL(", ").join(SQL("{} = NULL").format(ident(name)) for name in trail.layout.sealed_from),
            )
        )
    ids = trail.ids()
    for seal_format, last in zip((1, 2, 3), (ids[9], ids[19], ids[29]), strict=True):
        trail.insert_past_the_seal_trigger(append_seal(trail, seal_format, last))
    head = trail.m.seal(chunk_size=10).head
    trail.write(100, 10)
    later = trail.m.seal(chunk_size=10)
    result = trail.verify(expect=head)
    assert result.ok and result.rows == len(trail.ids()), [p.describe() for p in result.problems]
    formats = trail.run(
        SQL("SELECT coalesce((extra ->> 'format')::int, 1) FROM {} ORDER BY seal_id").format(
            ident(trail.schema, trail.layout.seal_table)
        )
    )
    assert [f for (f,) in formats] == [1, 2, 3, sealing.FORMAT, sealing.FORMAT]
    trail.write(200, 10)
    with pytest.raises(Exception, match="its format 3 is lower than format 4 of seal 4 before it"):
        trail.run(append_seal(trail, 3, max(trail.ids())))
    trail.insert_past_the_seal_trigger(append_seal(trail, 3, max(trail.ids())))
    result = trail.verify(expect=later.head)
    assert [p.describe() for p in result.problems] == [
        f"chain: seal 6 events {later.last_event_id + 1}..{max(trail.ids())}: seal 6 is not counted:"
        f" its format 3 is lower than format {sealing.FORMAT} of seal 4 before it"
    ]
    assert result.last_event_id == later.last_event_id


def later_columns_emptied(trail: Trail) -> Any:
    """An UPDATE emptying the columns formats after 3 added (``Layout.sealed_from``) in the
    rows not sealed yet: rows written before format 4 have none there."""
    return SQL("UPDATE {} SET {}").format(
        trail.table,
        SQL(", ").join(SQL("{} = NULL").format(ident(name)) for name in trail.layout.sealed_from),
    )


@pytest.mark.parametrize("late", [3, 15], ids=["beside-sealed-rows", "alone-in-a-chunk"])
@pytest.mark.parametrize("seal_format", [2, 3])
def test_a_seal_left_open_across_an_upgrade_is_closed_in_its_own_format(trail, seal_format, late):
    """The last seal before an upgrade, of an earlier format, is open: a transaction still
    held rows in its range. It commits, the package is upgraded, and the first seal of the
    current format closes it: the late rows' chunks are recomputed in the open seal's format
    (a chunk holding sealed rows and late rows; with 15 late rows also one holding late rows
    only), the seal table's trigger takes them, and verify passes inside the database and
    offline, every row counted once. A format-1 seal cannot be open: it has no ``extra`` to
    list pending transactions in."""
    trail.run("""SELECT set_config('partitioned_audit.context', '{"user_id": 7}', false)""")
    trail.write(1, 5)
    open_tx = connect(trail.dbname)
    cur = open_tx.cursor()
    cur.execute("""SELECT set_config('partitioned_audit.context', '{"user_id": 8}', true)""")
    execute(cur, "INSERT INTO invoice SELECT g, g, 'open' FROM generate_series(100, %s) g", [99 + late])
    cur.execute("SELECT txid_current()")
    (txid,) = cur.fetchone()
    trail.write(20, 5)  # committed, with ids after the open transaction's
    trail.run("SELECT set_config('partitioned_audit.context', '', false)")
    if trail.layout.sealed_from:  # (each writer empties its own rows: the other's it cannot see)
        trail.run(later_columns_emptied(trail))
        execute(cur, later_columns_emptied(trail))
    trail.insert_past_the_seal_trigger(append_seal(trail, seal_format, max(trail.ids()), pending=[txid]))
    open_tx.commit()
    open_tx.close()
    where_late = SQL("{} = {}").format(ident(trail.layout.txid_column), literal(txid))
    late_ids = [
        i
        for (i,) in trail.run(SQL("SELECT {} FROM {} WHERE {}").format(trail.event, trail.table, where_late))
    ]
    chunks = {k: {i in late_ids for i in trail.ids() if (i - 1) // 10 == k} for k in (0, 1)}
    assert len(late_ids) == late and chunks[0] == {False, True} and (late < 10 or chunks[1] == {True})
    before = trail.verify()  # the late rows of a seal still open: no problem
    assert before.ok and before.rows == len(trail.ids()) - late, [p.describe() for p in before.problems]
    trail.write(200, 5)  # after the upgrade
    closing = trail.m.seal(chunk_size=10, wait_ms=0)
    assert closing.sealed and closing.late_rows == late and closing.pending == []
    entry = trail.run(
        SQL("SELECT extra -> 'closes', chunk_seal, chunk_index FROM {} WHERE seal_id = %s").format(
            ident(trail.schema, trail.layout.seal_table)
        ),
        [closing.seal_id],
    )
    closes, chunk_seal, chunk_index = entry[0]
    carried = [k for s, k in zip(chunk_seal, chunk_index, strict=True) if s == 1]
    assert closes == [1] and carried == sorted({(i - 1) // 10 for i in late_ids})
    result = trail.verify(expect=closing.head)
    assert result.ok and result.rows == len(trail.ids()), [p.describe() for p in result.problems]
    assert_the_spec_verifier_agrees(trail, closing.head)
    # Closed, its chunks hold the late rows: a late row rewritten is found, in its chunk.
    trail.tamper(
        SQL("UPDATE {} SET {} = {} + 1 WHERE {}").format(
            trail.table,
            ident(trail.layout.txid_column),
            ident(trail.layout.txid_column),
            trail.where(late_ids[-1]),
        )
    )
    assert [(p.kind, p.seal_id) for p in trail.verify().problems] == [("changed", 1)]


def test_an_install_whose_entry_check_predates_the_format_rule_is_outdated_until_installed(trail):
    """The entry check gained arguments (the highest format before an entry): an install
    still holding the earlier function is OUTDATED, and install replaces it, leaving no
    function of the earlier arguments beside it."""
    from partitioned_audit.layouts import SEAL_HELPERS

    trail.write(1, 5)
    trail.m.seal()
    name = ident(trail.schema, sealing.ENTRY_PROBLEM_FUNCTION)
    arguments = dict(SEAL_HELPERS)[sealing.ENTRY_PROBLEM_FUNCTION]
    earlier = arguments.removesuffix(", integer, bigint")
    assert earlier != arguments
    trail.run("SELECT set_config('partitioned_audit.maintenance', 'on', false)")
    trail.run(SQL("DROP FUNCTION {}({})").format(name, SQL(arguments)))
    trail.run(
        SQL("CREATE FUNCTION {}({}) RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT NULL::text'").format(
            name, SQL(earlier)
        )
    )
    trail.run("SELECT set_config('partitioned_audit.maintenance', '', false)")
    cur = trail.conn.cursor()
    assert objects.function_problems(cur, trail.layout) == {sealing.ENTRY_PROBLEM_FUNCTION: "it is missing"}
    assert objects.layout_status(cur, trail.layout).status is objects.Status.OUTDATED
    cur.execute("BEGIN")
    assert install(cur, trail.layout) is objects.Status.OUTDATED
    cur.execute("COMMIT")
    assert objects.layout_status(cur, trail.layout).status is objects.Status.INSTALLED
    found = trail.run(
        "SELECT pg_get_function_identity_arguments(p.oid) FROM pg_proc p"
        " JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = %s AND p.proname = %s",
        [trail.schema, sealing.ENTRY_PROBLEM_FUNCTION],
    )
    assert len(found) == 1 and found[0][0].endswith("top_format integer, top_seal bigint")
    trail.write(10, 5)
    assert trail.m.seal().rows == 5 and trail.verify().ok


def test_an_install_before_the_simple_login_role_column_gains_it_and_keeps_its_seals():
    """An install made before the simple layout's ``session_user_name`` (its audit rows
    without the column, each with a context row, sealed in format 3) is OUTDATED; install
    adds the column without rewriting a partition; the format-3 seal keeps verifying (its
    digest does not take the column in), and the format-4 seals made since cover it: a
    login role rewritten there is found, inside the database and offline."""
    with scratch_database() as dbname:
        t = Trail(dbname, SIMPLE)
        t.run("""SELECT set_config('partitioned_audit.context', '{"user_id": 5}', false)""")
        t.write(1, 12)
        t.run("SELECT set_config('partitioned_audit.context', '', false)")
        # The install before the column: its views did not read it, its rows had none.
        t.as_before_the_login_role_column()
        cur = t.conn.cursor()
        assert objects.layout_status(cur, SIMPLE).status is objects.Status.OUTDATED
        # A seal of format 3 over those rows, as the documented encoding makes it.
        rows = field_texts(t, 3)
        ids = sorted(rows)
        assert len(ids) == 12 and all(r[-2] is not None for r in rows.values())  # a context row each
        extra = t.run("""SELECT '{"format": 3, "pending": [], "closes": []}'::jsonb::text""")[0][0]
        chunks = [
            [1, k, len(group), chunk_digest(3, group), t.default]
            for k, group in enumerate([[rows[i] for i in ids if (i - 1) // 5 == k] for k in range(3)])
        ]
        sealed_at = t.run("SELECT now()::text")[0][0]
        header = ["1", "seal", sealed_at, "1", str(max(ids)), str(len(ids)), "5", None]
        digest = link(bytes(32), header, chunks, extra)
        t.insert_past_the_seal_trigger(
            SQL(
                "INSERT INTO {} VALUES (1, 'seal', %s, 1, %s, %s, 5, NULL, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)"
            ).format(ident(t.schema, SIMPLE.seal_table)),
            [
                sealed_at,
                max(ids),
                len(ids),
                *(list(c) for c in zip(*chunks, strict=True)),
                bytes(32),
                digest,
                extra,
            ],
        )

        files = (
            "SELECT relname, relfilenode FROM pg_class WHERE relname LIKE 'audit_simple%' AND relkind = 'r'"
        )
        before = sorted(t.run(files))
        cur.execute("BEGIN")
        install(cur, SIMPLE)
        cur.execute("COMMIT")
        assert sorted(t.run(files)) == before  # ADD COLUMN rewrote nothing
        assert objects.layout_status(cur, SIMPLE).status is objects.Status.INSTALLED
        result = t.verify(expect=digest.hex())
        assert result.ok and result.rows == 12, [p.describe() for p in result.problems]

        t.write(100, 10)  # outside any context: the login role on the audit row alone
        new = t.m.seal(chunk_size=5)
        assert new.rows == 10 and t.verify(expect=new.head).ok
        assert t.run(
            SQL(
                "SELECT count(*) FROM {} WHERE session_user_name = session_user AND audit_context_id IS NULL"
            ).format(t.table)
        ) == [(10,)]
        t.tamper(
            SQL("UPDATE {} SET session_user_name = 'admin' WHERE {}").format(t.table, t.where(ids[-1] + 3))
        )
        problems = t.verify(expect=new.head).problems
        assert [(p.kind, p.seal_id) for p in problems] == [("changed", 2)]
        t.conn.close()


def test_a_changed_context_row_or_reference_under_sealed_rows_is_found(trail):
    """Format 3 covers who wrote a row and what it declared: a context row rewritten (the
    login role, the context), or a row pointed at another context row, changes the sealed
    rows' digests, inside the database and offline."""
    trail.run("""SELECT set_config('partitioned_audit.context', '{"user_id": 7}', false)""")
    trail.write(1, 10)
    trail.run("""SELECT set_config('partitioned_audit.context', '{"user_id": 8}', false)""")
    trail.write(100, 10)
    trail.run("SELECT set_config('partitioned_audit.context', '', false)")
    head = trail.m.seal(chunk_size=5).head
    assert trail.verify(expect=head).ok
    contexts = ident(trail.schema, trail.layout.context_table)
    (first, last) = trail.run(SQL("SELECT min(context_id), max(context_id) FROM {}").format(contexts))[0]
    trail.tamper(
        SQL("UPDATE {} SET session_user_name = 'admin' WHERE context_id = {}").format(
            contexts, literal(first)
        )
    )
    changed = trail.verify(expect=head).problems
    assert changed and {p.kind for p in changed} == {"changed"} and {p.seal_id for p in changed} == {1}
    login = trail.run("SELECT session_user::text")[0][0]
    trail.run("SELECT set_config('partitioned_audit.maintenance', 'on', false)")
    trail.run(
        SQL("UPDATE {} SET session_user_name = %s WHERE context_id = {}").format(contexts, literal(first)),
        [login],
    )
    trail.run("SELECT set_config('partitioned_audit.maintenance', '', false)")
    assert trail.verify(expect=head).ok  # as it was: nothing found
    trail.tamper(
        SQL("UPDATE {} SET audit_context_id = {} WHERE audit_context_id = {}").format(
            trail.table, literal(last), literal(first)
        )
    )
    assert {p.kind for p in trail.verify(expect=head).problems} == {"changed"}


def test_the_login_role_of_a_write_outside_any_context_is_sealed(trail):
    """Outside any context both layouts keep the login role on the audit row
    (``session_user_name``) and make no context row: rewritten under sealed rows, it is
    found, inside the database and offline."""
    trail.write(1, 10)
    head = trail.m.seal(chunk_size=5).head
    assert trail.verify(expect=head).ok
    contexts = ident(trail.schema, trail.layout.context_table)
    assert trail.run(SQL("SELECT count(*) FROM {}").format(contexts)) == [(0,)]
    assert trail.run(
        SQL(
            "SELECT count(*) FROM {} WHERE audit_context_id IS NULL AND session_user_name = session_user"
        ).format(trail.table)
    ) == [(10,)]
    trail.tamper(
        SQL("UPDATE {} SET session_user_name = 'admin' WHERE {}").format(trail.table, trail.where(7))
    )
    changed = trail.verify(expect=head).problems
    assert [(p.kind, p.seal_id, p.first_event_id <= 7 <= p.last_event_id) for p in changed] == [
        ("changed", 1, True)
    ]


# ---------------------------------------------------------------------------------------
# Where it runs: any schema, upgraded 1.0.4 rows, under load, concurrently, bad input
# ---------------------------------------------------------------------------------------


@LAYOUTS
def test_a_hostile_audit_schema_seals_and_verifies(layout):
    with scratch_database() as dbname:
        t = Trail(dbname, layout, schema='audit "trail"; x')
        t.write(1, 50)
        sealed = t.m.seal()
        assert sealed.rows == 50 and t.verify(expect=sealed.head).ok
        t.tamper(SQL("DELETE FROM {} WHERE {}").format(t.table, t.where(2)))
        assert [p.kind for p in t.verify().problems] == ["removed"]
        t.conn.close()


def test_the_sealing_functions_run_the_text_of_their_templates(trail):
    """Each sealing function runs the text of its template in ``templates/``, byte for byte;
    the header above the marker line is not deployed (nor hashed into the function digest)."""
    import re

    from partitioned_audit.ddl import DEPLOYED_BELOW, deployed, template
    from partitioned_audit.layouts import SEAL_FUNCTIONS, SEAL_HELPERS
    from partitioned_audit.sql import render

    cur = trail.conn.cursor()
    rendered = render(sealing.create_functions(trail.layout, trail.schema), cur)
    # (in the order the templates are created)
    names = [sealing.LINK_FUNCTION, sealing.ENTRY_PROBLEM_FUNCTION, sealing.APPEND_ONLY_FUNCTION] + [
        trail.layout.seal_function(which) for which in ("chunks", "freeze", "seal", "retire", "verify")
    ]
    assert len(sealing.TEMPLATES) == len(names) == len(SEAL_HELPERS) + len(SEAL_FUNCTIONS)
    for name, file in zip(names, sealing.TEMPLATES, strict=True):
        header = template(file).partition(DEPLOYED_BELOW)[0]
        assert header.startswith(f"-- {name.replace(trail.layout.name, '<layout>')}")
        assert DEPLOYED_BELOW not in deployed(file)
        assert not any(line in rendered for line in header.splitlines())
    bodies = re.findall(r"AS \$fn\$(.*?)\$fn\$", rendered, re.S)
    cur.execute(
        "SELECT p.prosrc, p.proconfig FROM unnest(%s::text[]) WITH ORDINALITY AS f(name, o)"
        " JOIN pg_proc p ON p.proname = f.name JOIN pg_namespace n ON n.oid = p.pronamespace AND n.nspname = %s"
        " ORDER BY f.o",
        [names, trail.schema],
    )
    found = cur.fetchall()
    assert [body for body, _ in found] == bodies
    # Every function that turns rows or seals into text fixes the same settings.
    canonical = {
        tuple(c for c in config if not c.startswith("work_mem=")) for body, config in found if len(config) > 1
    }
    assert canonical == {
        (
            "search_path=pg_catalog, pg_temp",
            "TimeZone=UTC",
            "DateStyle=ISO, YMD",
            "IntervalStyle=postgres",
            "extra_float_digits=1",
        )
    }
    assert sum(len(config) > 1 for _, config in found) == 5  # link, chunks, seal, retire, verify


def test_the_rows_of_an_upgraded_104_table_are_sealed_once_numbered():
    with scratch_database() as dbname:
        conn = connect(dbname, autocommit=True)
        cur = conn.cursor()
        cur.execute(SIMPLE_TABLE)
        cur.execute(
            "CREATE TABLE audit_simple_20240101_20240201 PARTITION OF audit_simple FOR VALUES FROM ('2024-01-01') TO ('2024-02-01')"
        )
        cur.execute(
            "INSERT INTO audit_simple (object_table, object_payload, audit_entry_created, audit_txid_current, audit_operation)"
            " SELECT 'book', jsonb_build_object('id', g), timestamptz '2024-01-02' + g * interval '1 second', 1, 'I' FROM generate_series(1, 2000) g"
        )
        cur.execute("BEGIN")
        install(cur, SIMPLE)
        cur.execute("COMMIT")
        m = Maintainer(conn, SIMPLE)
        with pytest.raises(SealError, match="1.0.4 rows waiting"):
            m.seal()
        cur.execute("SELECT count(*) FROM audit_simple_seal")
        assert cur.fetchone() == (0,)
        # The upgrade reserved ids up to a bound read from the partition's size (a gap
        # follows the 2000 old rows); the seal covers them up to it.
        cur.execute("SELECT last_value FROM audit_simple_audit_event_id_seq")
        (reserved,) = cur.fetchone()
        assert reserved >= 2000
        objects.backfill(conn, SIMPLE)
        sealed = m.seal()
        assert (sealed.first_event_id, sealed.last_event_id, sealed.rows) == (1, reserved, 2000)
        assert m.verify().ok
        cur.execute("SELECT set_config('partitioned_audit.maintenance', 'on', false)")
        with pytest.raises(Exception, match="is sealed"):
            cur.execute("UPDATE audit_simple SET object_payload = '{}' WHERE audit_event_id = 1")
        conn.close()


def test_sealing_under_writer_load_blocks_no_writer_and_misses_no_row(trail):
    stop = threading.Event()
    stalls: list[float] = []

    def writer(offset: int) -> None:
        conn = connect(trail.dbname, autocommit=True)
        n = offset
        while not stop.is_set():
            started = time.monotonic()
            conn.cursor().execute("INSERT INTO invoice VALUES (%s, 1, 'w')", [n])
            stalls.append(time.monotonic() - started)
            n += 1
        conn.close()

    threads = [threading.Thread(target=writer, args=(k * 1_000_000,)) for k in range(2)]
    for thread in threads:
        thread.start()
    try:
        seals = []
        for _ in range(6):
            time.sleep(0.2)
            seals.append(trail.m.seal(wait_ms=200))
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    final = trail.m.seal()
    assert final.last_event_id == max(trail.ids())
    assert sum(s.sealed for s in seals) >= 3
    result = trail.verify(expect=seals[0].head or final.head)
    assert result.ok and result.rows == len(trail.ids())
    print(f"\n  {len(stalls)} audited inserts during 6 seals; longest {max(stalls) * 1000:.0f} ms")
    assert max(stalls) < 1.0  # a seal waits for writers; writers never wait for a seal


def test_two_seals_at_once_make_one_chain(trail):
    trail.write(1, 3000)
    results: list[Any] = []

    def run() -> None:
        conn = connect(trail.dbname, autocommit=True)
        results.append(Maintainer(conn, trail.layout, trail.schema).seal())
        conn.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.sealed for r in results) == [False, True]
    assert trail.verify().ok and trail.verify().rows == 3000


def test_bad_arguments_and_states_are_refused_with_a_reason(trail):
    trail.write(1, 5)
    with pytest.raises(ConfigurationError, match="chunk_size"):
        trail.m.seal(chunk_size=0)
    with pytest.raises(ConfigurationError, match="wait_ms"):
        trail.m.seal(wait_ms=-1)
    with pytest.raises(ConfigurationError, match="64 hexadecimal"):
        trail.verify(expect="not-a-digest")
    conn = connect(trail.dbname)
    cur = conn.cursor()
    cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    with pytest.raises(SealError, match="READ COMMITTED"):
        sealing.seal(cur, trail.layout, trail.schema)
    conn.rollback()
    conn.close()
    seq = ident(trail.schema, trail.layout.sequence)
    trail.run(SQL("ALTER SEQUENCE {} CACHE 10").format(seq))
    with pytest.raises(SealError, match="caches ids"):
        trail.m.seal()
    trail.run(SQL("ALTER SEQUENCE {} CACHE 1").format(seq))
    trail.run("SELECT set_config('partitioned_audit.maintenance', 'on', false)")
    trail.run(SQL("DROP TRIGGER {} ON {}").format(ident(sealing.FREEZE_TRIGGER), trail.table))
    with pytest.raises(SealError, match="missing"):
        trail.m.seal()
    assert (
        objects.layout_status(trail.conn.cursor(), trail.layout, trail.schema).status
        is objects.Status.OUTDATED
    )
    cur = trail.conn.cursor()
    cur.execute("BEGIN")
    install(cur, trail.layout, trail.schema)
    cur.execute("COMMIT")
    assert trail.m.seal().rows == 5


def test_the_command_line_seals_prints_the_head_and_verify_exits_1_on_tampering(trail, capsys):
    from django.conf import settings

    dsn = settings.SERVER.dsn(trail.dbname)
    base = ["--dsn", dsn, "--layout", trail.layout.name]
    trail.write(1, 20)
    assert cli.main([*base, "seal", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["sealed"] and document["rows"] == 20
    head = document["head"]
    assert cli.main([*base, "verify", "--expect", head]) == 0
    assert head in capsys.readouterr().out
    trail.tamper(SQL("DELETE FROM {} WHERE {}").format(trail.table, trail.where(3)))
    assert cli.main([*base, "verify", "--expect", head]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""  # the one finding is the error line, said once
    assert captured.err == (
        f"partitioned-audit: verify failed: removed: seal 1 events 1..{max(trail.ids())} in "
        f"{trail.default}: 1 of 20 sealed rows are missing\n"
    )


@pytest.mark.django_db
def test_manage_partition_tables_seals_and_verifies_the_project_trail():
    from django.core.management import CommandError, call_command
    from library.models import Book

    from tests.helpers import partition_command

    Book.objects.create(isbn="s1", title="sealed")
    seal_doc, verify_doc = (
        json.loads(line) for line in partition_command("seal", "verify", "--json").splitlines()
    )
    assert seal_doc["action"] == "seal" and seal_doc["sealed"] and seal_doc["rows"] >= 1
    assert verify_doc == {**verify_doc, "ok": True, "head": seal_doc["head"], "problems": []}
    text = partition_command("verify", "--expect", seal_doc["head"])
    assert text.startswith("OK: 1 seal(s) cover events") and seal_doc["head"] in text
    assert partition_command("verify", "--offline", "--expect", seal_doc["head"]) == text
    with pytest.raises(CommandError, match="verify failed: head: .* is not in the chain") as failed:
        call_command(
            "manage_partition_tables", "verify", "--offline", "--expect", "cd" * 32, stdout=io.StringIO()
        )
    assert failed.value.returncode == 1
    with pytest.raises(CommandError, match="verify failed: head: .* is not in the chain") as failed:
        call_command("manage_partition_tables", "verify", "--expect", "ab" * 32, stdout=io.StringIO())
    assert failed.value.returncode == 1


# ---------------------------------------------------------------------------------------
# verify --offline trusts no function in the database
# ---------------------------------------------------------------------------------------


def test_a_verify_function_replaced_with_a_liar_is_caught_offline_and_by_status(trail, capsys):
    from django.conf import settings

    trail.write(1, 20)
    done = trail.m.seal()
    head = done.head
    assert head is not None
    base = [
        "--dsn",
        settings.SERVER.dsn(trail.dbname),
        "--layout",
        trail.layout.name,
        "verify",
        "--expect",
        head,
    ]
    # A superuser (stepping past the guard) replaces verify with one that always says all is well.
    trail.run("SELECT set_config('partitioned_audit.maintenance', 'on', false)")
    trail.run(
        SQL(
            "CREATE OR REPLACE FUNCTION {}(expect bytea) RETURNS TABLE (kind text, seal_id bigint,"
            " first_event_id bigint, last_event_id bigint, expected_rows bigint, found_rows bigint,"
            " partitions text, detail text) LANGUAGE sql AS $$ SELECT 'summary', 1::bigint, 1::bigint,"
            " 20::bigint, 20::bigint, NULL::bigint, NULL::text, {} $$"
        ).format(ident(trail.schema, trail.layout.seal_function("verify")), literal(head))
    )
    trail.run("SELECT set_config('partitioned_audit.maintenance', '', false)")
    trail.tamper(SQL("DELETE FROM {} WHERE {}").format(trail.table, trail.where(3)))
    assert cli.main(base) == 0  # the liar
    assert capsys.readouterr().out.startswith("OK: 1 seal(s) cover events 1..20, 20 row(s) present")
    assert cli.main([*base, "--offline"]) == 1
    assert capsys.readouterr().err == (
        f"partitioned-audit: verify failed: removed: seal 1 events 1..{done.last_event_id} in "
        f"{trail.default}: 1 of 20 sealed rows are missing\n"
    )
    # The replaced function is noticed, and install puts the real one back.
    cur = trail.conn.cursor()
    assert objects.layout_status(cur, trail.layout, trail.schema).status is objects.Status.OUTDATED
    cur.execute("BEGIN")
    assert install(cur, trail.layout, trail.schema) is objects.Status.OUTDATED
    cur.execute("COMMIT")
    assert objects.layout_status(cur, trail.layout, trail.schema).status is objects.Status.INSTALLED
    assert cli.main(base) == 1


def test_a_second_verifier_written_from_the_docs_alone_finds_the_same_head_and_digests(trail):
    old = PartitionInfo.create(trail.layout.table, dt.date(2001, 1, 1), dt.date(2001, 2, 1))
    trail.m.create([old])
    trail.write(1, 300)
    for i, note in enumerate(
        ['a "quoted", (odd)\\ line\nnext', "", None, "tab\there", "nb\u00a0sp", "v\x0bt"]
    ):
        trail.run("UPDATE invoice SET note = %s WHERE id = %s", [note, i + 1])
    trail.run("DELETE FROM invoice WHERE id = 10")
    trail.tamper(
        SQL("UPDATE {} SET {} = '2001-01-10' WHERE {} <= 40").format(
            trail.table, ident(trail.layout.time_column), trail.event
        )
    )
    trail.m.seal(chunk_size=100)
    trail.write(1000, 30)
    trail.m.seal(chunk_size=7)
    trail.m.detach([old], drop=True)  # a retention entry replaces chunks of seal 1
    trail.write(2000, 5)
    head = trail.m.seal(chunk_size=3).head
    digests = assert_the_spec_verifier_agrees(trail, head)
    assert len(digests) >= 10 and trail.verify(expect=head).ok


def assert_the_spec_verifier_agrees(trail: Trail, head: str | None) -> dict[tuple[int, int], bytes]:
    """Recompute the chain with tests/spec_verifier.py: it finds ``head``, and for each
    chunk the digest of the newest entry naming it (empty chunks aside). Returns them."""
    from tests import spec_verifier

    conn = connect(trail.dbname, autocommit=True)
    try:
        found_head, digests = spec_verifier.recompute(conn.cursor(), trail.layout.table)
        cur = conn.cursor()
        execute(
            cur,
            SQL("SELECT seal_id, chunk_seal, chunk_index, chunk_digest FROM {} ORDER BY 1").format(
                ident(trail.schema, trail.layout.seal_table)
            ),
        )
        expected = {}
        for _, seals, indexes, chunk_digests in cur.fetchall():
            expected.update({(s, k): bytes(d) for s, k, d in zip(seals, indexes, chunk_digests, strict=True)})
    finally:
        conn.close()
    assert found_head == head
    empty = hashlib.sha256(b"").digest()
    assert {k: d for k, d in expected.items() if d != empty} == digests
    return digests


def test_a_locked_transaction_id_maps_to_its_full_id_on_either_side_of_the_next_one(conn):
    # A seal lists the writers' full transaction ids as pending; one that took its id between
    # the seal reading the next id and listing the writers was once mapped to a negative id,
    # a seal that verify then refused ("pending transactions ... are not lists of ids").
    cases = [  # (the next id when read, the 32-bit id in pg_locks, its full id)
        (100, 95, 95),  # an open transaction, before the next id
        (100, 105, 105),  # one that took its id after the next id was read
        (2**32 + 10, 5, 2**32 + 5),  # in the second epoch
        (2**32 + 10, 12, 2**32 + 12),  # in the second epoch, after the next id was read
        (2**32 + 5, 2**32 - 3, 2**32 - 3),  # from the first epoch, still open in the second
        (2**32 - 2, 3, 2**32 + 3),  # the next id was read just before the epoch turned
    ]
    cur = conn.cursor()
    mapped = []
    for next_xid, locked, _ in cases:
        execute(
            cur,
            SQL("SELECT {} FROM (SELECT {}::bigint AS _next, {}::text::xid AS transactionid) AS t").format(
                SQL(sealing._FULL_XID), literal(next_xid), literal(locked)
            ),
        )
        mapped.append(cur.fetchone()[0])
    assert mapped == [full for _, _, full in cases]
