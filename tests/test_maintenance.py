"""The partition lifecycle through the engine and the standalone CLI, on scratch databases."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings

from partitioned_audit import SIMPLE, TableSpec, enable, install
from partitioned_audit.cli import main
from partitioned_audit.errors import PartitionError
from partitioned_audit.partitioning.maintenance import DETACHED_COMMENT, LockPolicy, Maintainer
from partitioned_audit.partitioning.plan import today_utc
from partitioned_audit.partitioning.ranges import MonthlyTimeRangeGenerator, PartitionInfo
from tests.engine_db import connect, scratch_database

FAST = LockPolicy(lock_timeout_ms=100, attempts=200, pause_ms=100)
LOCK_KEY = "partitioned_audit:public.audit_simple"


def query(conn: Any, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    cur = conn.cursor()
    cur.execute(statement, params)
    return cur.fetchall() if cur.description else []


@pytest.fixture
def database() -> Iterator[str]:
    """A scratch database with the simple layout installed and table ``item`` audited."""
    with scratch_database() as name:
        conn = connect(name, autocommit=True)
        query(conn, "CREATE TABLE item (id serial PRIMARY KEY, v int)")
        install(conn.cursor(), SIMPLE)
        enable(conn.cursor(), SIMPLE, TableSpec("public", "item", ("id",)))
        conn.close()
        yield name


@pytest.fixture
def conn(database: str) -> Iterator[Any]:
    connection = connect(database, autocommit=True)
    yield connection
    connection.close()


def partitions(conn: Any) -> dict[str, str | None]:
    return dict(
        query(
            conn,
            "SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'audit_simple'::regclass",
        )
    )


def months(first: dt.date, count: int) -> list[PartitionInfo]:
    out, start = [], first
    generator = MonthlyTimeRangeGenerator()
    for _ in range(count):
        r = generator.generate_partition_info_for_current_period(start)
        out.append(PartitionInfo.create("audit_simple", r.from_date, r.to_date))
        start = r.to_date
    return out


def test_rows_written_before_any_partition_land_in_their_partition(conn):
    stamps = [
        dt.datetime(2022, m, d, h, tzinfo=dt.UTC)
        for m, d, h in [(1, 31, 23), (2, 1, 0), (2, 28, 23), (3, 1, 0), (3, 9, 5)]
    ]
    stamps.append(dt.datetime(2021, 6, 1, tzinfo=dt.UTC))  # outside every partition the plan makes
    for stamp in stamps:
        query(
            conn,
            "INSERT INTO audit_simple (object_table, object_payload, audit_txid_current, audit_operation,"
            " audit_entry_created) VALUES ('item', '{}', 1, 'I', %s)",
            [stamp],
        )
    manager = Maintainer(conn, SIMPLE, policy=FAST)
    plan = manager.plan(MonthlyTimeRangeGenerator(), 20, now=dt.datetime(2022, 2, 22, tzinfo=dt.UTC))
    created = manager.create(plan.partitions_to_create)
    assert [p.partition for p in created.partitions] == [
        "audit_simple_20220201_20220301",
        "audit_simple_20220301_20220401",
    ]
    assert created.moved_rows == 4
    placed = query(conn, "SELECT tableoid::regclass::text, count(*) FROM audit_simple GROUP BY 1 ORDER BY 1")
    assert placed == [
        ("audit_simple_20220201_20220301", 2),
        ("audit_simple_20220301_20220401", 2),
        ("audit_simple_default", 2),  # Jan 31 and June 2021: no partition covers them yet
    ]
    # Filling January (the partition before the plan's first) empties the rest but June 2021.
    assert manager.create(months(dt.date(2022, 1, 1), 1)).moved_rows == 1
    assert query(conn, "SELECT count(*) FROM audit_simple") == [(6,)]
    assert query(conn, "SELECT audit_entry_created FROM audit_simple_default") == [(stamps[-1],)]
    assert set(partitions(conn).values()) == {None, "partitioned_audit partition"}  # default, ours


def test_retention_detaches_or_drops_only_old_partitions_of_ours(conn):
    manager = Maintainer(conn, SIMPLE, policy=FAST)
    today = today_utc()
    manager.create(months(today.replace(day=1) - dt.timedelta(days=150), 8))
    query(conn, "INSERT INTO item (v) VALUES (1)")
    # A partition someone made by hand is never retired, even when old.
    query(
        conn,
        "CREATE TABLE audit_simple_20100101_20100201 PARTITION OF audit_simple"
        " FOR VALUES FROM ('2010-01-01 00:00+00') TO ('2010-02-01 00:00+00')",
    )
    old = manager.expired(older_than_days=60)
    assert old and all(p.to_date <= today - dt.timedelta(days=60) for p in old)
    assert "audit_simple_20100101_20100201" not in [p.partition for p in old]
    with pytest.raises(PartitionError) as info:
        manager.detach(manager.existing()[:1])
    assert str(info.value) == (
        "public.audit_simple_20100101_20100201 was not created by partitioned_audit "
        "(its comment is None); refusing to detach or drop it"
    )
    detached = manager.detach(old[:1])
    dropped = manager.detach(old[1:], drop=True)
    assert detached + dropped == old
    remaining = partitions(conn)
    assert not any(p.partition in remaining for p in old)
    assert query(conn, "SELECT obj_description(%s::regclass, 'pg_class')", [old[0].partition]) == [
        (DETACHED_COMMENT,)
    ]
    assert query(conn, "SELECT to_regclass(%s)", [old[-1].partition]) == [(None,)]
    # The partition receiving writes is still there and still receives them.
    query(conn, "INSERT INTO item (v) VALUES (2)")
    assert query(
        conn,
        "SELECT count(*) FROM audit_simple WHERE audit_entry_created >= %s",
        [dt.datetime.combine(today, dt.time(0), tzinfo=dt.UTC)],
    ) == [(2,)]


def test_retention_refuses_a_context_partition_wider_than_its_audit_partition(conn):
    """A context partition of the audit partition's name but other bounds (made by hand)
    may hold context rows that rows of other audit partitions point at: kept, with both."""
    manager = Maintainer(conn, SIMPLE, policy=FAST)
    query(
        conn,
        "CREATE TABLE audit_simple_context_20100101_20100201 PARTITION OF audit_simple_context"
        " FOR VALUES FROM ('2009-12-01 00:00+00') TO ('2010-02-01 00:00+00')",
    )
    (jan,) = months(dt.date(2010, 1, 1), 1)
    manager.create([jan])
    with pytest.raises(PartitionError) as info:
        manager.detach([jan], drop=True)
    assert str(info.value) == (
        "public.audit_simple_context_20100101_20100201 does not have the bounds of"
        " audit_simple_20100101_20100201: rows of other audit partitions may point at its"
        " context rows; refusing to detach or drop them"
    )
    assert query(
        conn,
        "SELECT to_regclass('audit_simple_20100101_20100201') IS NOT NULL,"
        " to_regclass('audit_simple_context_20100101_20100201') IS NOT NULL",
    ) == [(True, True)]


def test_two_create_runs_at_once_neither_fails_nor_creates_twice(database, conn):
    holder = connect(database)
    query(holder, "SELECT pg_advisory_xact_lock(hashtext(%s))", [LOCK_KEY])  # a run in progress
    wanted = months(today_utc(), 4)
    results: list[Any] = []
    slept: list[float] = []

    def run() -> None:
        own = connect(database, autocommit=True)
        try:
            results.append(
                Maintainer(own, SIMPLE, policy=FAST, sleep=lambda s: (slept.append(s), time.sleep(s))).create(
                    wanted
                )
            )
        except Exception as exc:  # collected and asserted below
            results.append(exc)
        finally:
            own.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    holder.rollback()
    holder.close()
    for t in threads:
        t.join(30)
    assert all(not isinstance(r, Exception) for r in results), results
    assert sorted(len(r.partitions) for r in results) == [0, 4]
    assert len(slept) >= 2  # both waited for the first run
    assert sorted(p.partition for p in wanted) == sorted(
        n for n in partitions(conn) if n != "audit_simple_default"
    )


def test_maintenance_gives_up_with_a_clear_error_when_the_lock_stays_busy(database, conn):
    holder = connect(database)
    query(holder, "SELECT pg_advisory_xact_lock(hashtext(%s))", [LOCK_KEY])
    pauses: list[float] = []
    manager = Maintainer(
        conn, SIMPLE, policy=LockPolicy(lock_timeout_ms=50, attempts=3, pause_ms=10), sleep=pauses.append
    )
    with pytest.raises(PartitionError) as info:
        manager.create(months(today_utc(), 1))
    assert str(info.value) == (
        "partition maintenance of public.audit_simple could not get its locks within 50 ms in 3 attempts "
        "(another maintenance run or a long transaction on the audit table holds them); nothing was changed, "
        "try again later"
    )
    assert len(pauses) == 2 and list(partitions(conn)) == ["audit_simple_default"]
    holder.rollback()
    holder.close()


#: How long the blocker holds its lock. The assertions compare stalls with half of it, a
#: margin wide enough for a loaded two-core machine (at 2 s a busy run saw a 1.1 s stall).
BLOCKER_S = 4.0


def longest_stall_during_retention(database: str, lock_timeout_ms: int) -> tuple[float, int, int]:
    """Detach old partitions while a writer inserts audited rows non-stop and another
    transaction keeps the audit table locked for ``BLOCKER_S`` seconds.

    Returns:
        (longest single insert in seconds, maintenance attempts that timed out, rows written)
    """
    setup = connect(database, autocommit=True)
    manager = Maintainer(setup, SIMPLE, policy=FAST)
    manager.create(months(today_utc().replace(day=1) - dt.timedelta(days=100), 6))
    stop, stalls, errors = threading.Event(), [0.0], []
    written = [0]

    def writer() -> None:
        own = connect(database, autocommit=True)
        try:
            while not stop.is_set():
                started = time.perf_counter()
                query(own, "INSERT INTO item (v) VALUES (1)")
                stalls[0] = max(stalls[0], time.perf_counter() - started)
                written[0] += 1
        except Exception as exc:  # collected and asserted by the callers
            errors.append(exc)
        finally:
            own.close()

    blocker = connect(database)
    query(blocker, "INSERT INTO item (v) VALUES (0)")  # holds a lock on the audit table until commit
    thread = threading.Thread(target=writer)
    thread.start()
    timeouts: list[float] = []
    release = threading.Timer(BLOCKER_S, blocker.commit)
    release.start()
    time.sleep(0.2)
    retire = Maintainer(
        setup,
        SIMPLE,
        policy=LockPolicy(lock_timeout_ms=lock_timeout_ms, attempts=100, pause_ms=100),
        sleep=lambda s: (timeouts.append(s), time.sleep(s)),
    )
    done = retire.detach(retire.expired(older_than_days=40), drop=True)
    time.sleep(0.2)
    stop.set()
    thread.join(10)
    release.join()
    blocker.close()
    assert not errors, errors
    assert done, "nothing was retired"
    audited = query(setup, "SELECT count(*) FROM audit_simple WHERE object_table = 'item'")[0][0]
    assert audited == query(setup, "SELECT count(*) FROM item")[0][0] == written[0] + 1
    setup.close()
    return stalls[0], len(timeouts), written[0]


def test_writers_wait_at_most_the_lock_timeout_during_retention(database, capsys):
    stall, timeouts, rows = longest_stall_during_retention(database, lock_timeout_ms=100)
    with capsys.disabled():
        print(
            f"\n  retention under a {BLOCKER_S:.0f} s blocker, lock_timeout=100ms: longest writer stall {stall * 1000:.0f} ms, {timeouts} retries, {rows} audited inserts"
        )
    assert timeouts >= 3  # the DDL gave way again and again while the blocker held on
    assert stall < BLOCKER_S / 2  # writers never queued behind the DDL for the blocker's time


def test_without_a_short_lock_timeout_writers_queue_behind_the_ddl(database, capsys):
    stall, timeouts, _ = longest_stall_during_retention(database, lock_timeout_ms=5000)
    with capsys.disabled():
        print(f"\n  same with lock_timeout=5s: longest writer stall {stall * 1000:.0f} ms")
    assert timeouts == 0 and stall > BLOCKER_S / 2


# -- the standalone CLI ------------------------------------------------------------------------


def cli(database: str, *args: str) -> int:
    return main(["--dsn", settings.SERVER.dsn(database), *args])


def test_cli_create_check_list_and_drop(database, conn, capsys):
    assert cli(database, "check", "--extra-days=10") == 1
    err = capsys.readouterr().err
    assert (
        err
        == f"partitioned-audit: check failed: no partition of public.audit_simple covers today ({today_utc()}); run create\n"
    )
    assert cli(database, "create", "check", "--extra-days=40") == 0
    out = capsys.readouterr().out
    assert "Created " in out and "OK: public.audit_simple is covered from" in out
    assert cli(database, "list", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [p["name"] for p in listed["partitions"]] == sorted(
        n for n in partitions(conn) if n != "audit_simple_default"
    )
    assert cli(database, "drop", "--older-than=1") == 0
    assert "No partition ended 1 or more days ago." in capsys.readouterr().out


def test_cli_errors_are_one_line(database, capsys):
    assert cli(database, "--layout=advanced", "list") == 2
    assert capsys.readouterr().err == (
        "partitioned-audit: the advanced layout is not installed here: audit table public.logged_actions "
        "does not exist; install the audit objects first (python manage.py migrate, or "
        "partitioned_audit.install())\n"
    )
    assert main(["--dsn", "postgresql://127.0.0.1:1/none", "list"]) == 2
    assert capsys.readouterr().err.startswith("partitioned-audit: cannot connect: ")
    assert cli(database, "drop") == 2
    assert capsys.readouterr().err == "partitioned-audit: drop needs --older-than DAYS\n"


@pytest.mark.parametrize("zone", ["America/Chicago", "Europe/Berlin", "Asia/Kolkata"])
def test_new_partitions_meet_104_partitions_made_in_local_time(conn, zone):
    """1.0.4 created partitions with bounds in the session's time zone (USE_TZ=False)."""
    query(conn, "BEGIN")
    query(conn, "SELECT set_config('TimeZone', %s, true)", [zone])
    query(
        conn,
        "CREATE TABLE audit_simple_20221101_20221201 PARTITION OF audit_simple"
        " FOR VALUES FROM ('2022-11-01') TO ('2022-12-01')",
    )
    query(conn, "COMMIT")
    query(conn, "COMMENT ON TABLE audit_simple_20221101_20221201 IS 'partitioned_audit partition'")
    manager = Maintainer(conn, SIMPLE, policy=FAST)
    before, after = months(dt.date(2022, 10, 1), 1), months(dt.date(2022, 12, 1), 1)
    assert len(manager.create(before + after).partitions) == 2
    # Every instant around both boundaries has a partition: no overlap, no gap.
    for boundary in (dt.datetime(2022, 11, 1, tzinfo=dt.UTC), dt.datetime(2022, 12, 1, tzinfo=dt.UTC)):
        for hours in range(-14, 15):
            query(
                conn,
                "INSERT INTO audit_simple (object_table, object_payload, audit_txid_current, audit_operation,"
                " audit_entry_created) VALUES ('x', '{}', 1, 'I', %s)",
                [boundary + dt.timedelta(hours=hours)],
            )
    assert query(conn, "SELECT count(*) FROM audit_simple_default") == [(0,)]
    assert query(conn, "SELECT count(*) FROM audit_simple") == [(58,)]


def test_cli_works_on_an_audit_schema_with_a_hostile_name(capsys):
    schema = 'aud"it; trail'
    with scratch_database() as name:
        conn = connect(name, autocommit=True)
        install(conn.cursor(), SIMPLE, schema=schema)
        assert cli(name, "--schema", schema, "create", "check", "list", "--json", "--extra-days=40") == 0
        docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [d["action"] for d in docs] == ["create", "check", "list"]
        assert docs[1]["ok"] is True and len(docs[2]["partitions"]) == len(docs[0]["created"]) >= 2
        found = query(
            conn,
            "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhparent"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = 'audit_simple'",
            [schema],
        )
        assert found == [(len(docs[0]["created"]) + 1,)]  # and the DEFAULT partition
        conn.close()


def test_a_reinstall_never_adopts_a_partition_somebody_else_made(conn):
    """Only the 1.0.4 upgrade adopts uncommented partitions; a later reinstall (here: turning
    the GIN index on, then off) leaves a hand-made one alone, so retention cannot drop it."""
    query(
        conn,
        "CREATE TABLE audit_simple_20100101_20100201 PARTITION OF audit_simple"
        " FOR VALUES FROM ('2010-01-01 00:00+00') TO ('2010-02-01 00:00+00')",
    )
    for gin in (True, False):
        install(conn.cursor(), SIMPLE, gin_index=gin)
    assert partitions(conn)["audit_simple_20100101_20100201"] is None
    manager = Maintainer(conn, SIMPLE, policy=FAST)
    now = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)
    assert "audit_simple_20100101_20100201" not in [p.partition for p in manager.expired(30, now)]
