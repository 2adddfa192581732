"""The archive tier against a real SeaweedFS S3 gateway on loopback and against file://."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from partitioned_audit import ADVANCED, SIMPLE, archive, cli, sealing
from partitioned_audit.partitioning.ranges import PartitionInfo
from partitioned_audit.sql import SQL, execute, ident, literal
from partitioned_audit.store import StoreError, open_store
from tests.engine_db import connect, drop_role_later, scratch_database
from tests.seaweed import SeaweedFS
from tests.test_sealing import Trail, chunk_digest, field_texts, link

#: A fixed "now" for every archive run: no test depends on today's date.
NOW = dt.datetime(2026, 3, 15, 12, tzinfo=dt.UTC)
JAN = (dt.date(2001, 1, 1), dt.date(2001, 2, 1))


@pytest.fixture(scope="session")
def seaweed() -> Iterator[SeaweedFS]:
    server = SeaweedFS()
    server.start()
    yield server
    server.remove()


@pytest.fixture
def s3_env(seaweed: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> SeaweedFS:
    for key, value in seaweed.env().items():
        monkeypatch.setenv(key, value)
    return seaweed


@pytest.fixture(params=["file", "s3"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "file":
        return f"file://{tmp_path}"
    server = request.getfixturevalue("s3_env")
    bucket = f"b{uuid.uuid4().hex[:12]}"
    server.make_bucket(bucket)
    return f"s3://{bucket}/audit"


@pytest.fixture(params=[SIMPLE, ADVANCED], ids=lambda layout: layout.name)
def trail(request: pytest.FixtureRequest) -> Iterator[Trail]:
    """January 2001 holds events 1..1200 (the seal's second chunk straddles it and the
    DEFAULT partition), everything is sealed."""
    with scratch_database(background=True) as dbname:
        t = Trail(dbname, request.param)
        old = PartitionInfo.create(t.layout.table, *JAN)
        t.m.create([old])
        t.write(1, 2500)
        t.tamper(
            SQL("UPDATE {} SET {} = '2001-01-10' WHERE {} <= 1200").format(
                t.table, ident(t.layout.time_column), t.event
            )
        )
        t.m.seal(chunk_size=1000)
        t.old = old  # type: ignore[attr-defined]
        yield t
        t.conn.close()


def rows_of(t: Trail, partition: str) -> list[tuple[Any, ...]]:
    return t.run(SQL("SELECT * FROM {} ORDER BY 1, 2, 3").format(ident(t.schema, partition)))


def glob_count(url: str, store: Any) -> int:
    """What ``read_parquet('<URL>/**/*.parquet')`` counts (for S3, through pyarrow's S3
    filesystem, since DuckDB cannot load its httpfs extension here)."""
    if url.startswith("file://"):
        if not list(Path(url[7:]).glob("**/*.parquet")):
            return 0  # (DuckDB refuses a glob matching nothing)
        return int(
            duckdb.sql(f"SELECT count(*) FROM read_parquet('{url[7:]}/**/*.parquet')").fetchall()[0][0]
        )
    from pyarrow import fs

    infos = store.fs.get_file_info(fs.FileSelector(store.root, recursive=True, allow_not_found=True))
    paths = [i.path for i in infos if i.path.endswith(".parquet")]
    return sum(pq.ParquetFile(store.fs.open_input_file(p)).metadata.num_rows for p in paths)


def test_archive_drop_verify_restore_round_trip(trail, url):
    before = rows_of(trail, trail.old.partition)
    store = open_store(url)
    done = archive.archive(trail.m, store, 30, drop=True, now=NOW)
    assert [(a.partition, a.state, a.rows, a.dropped) for a in done] == [
        (trail.old, "archived", len(before), True)
    ]
    assert trail.run("SELECT to_regclass(%s)", [trail.old.partition]) == [(None,)]
    assert trail.verify().ok
    findings, partitions, rows = archive.verify_archive(trail.m, store)
    assert (findings, partitions, rows) == ([], 1, len(before))
    assert glob_count(url, store) == len(before)
    # The columns are the read view's: a query written against the view runs on the archive.
    archived = pq.read_table(store.fs.open_input_file(store.path(trail.old.partition, "data.parquet")))
    cur = trail.conn.cursor()
    execute(cur, SQL("SELECT * FROM {} LIMIT 0").format(ident(trail.schema, trail.layout.view)))
    view = [d[0] for d in cur.description]
    assert archived.column_names[: len(view)] == view
    manifest = json.loads(store.read_bytes(store.path(trail.old.partition, "manifest.json")))
    assert manifest["rows"] == len(before) and manifest["seals"]["chunks"]
    assert manifest["files"][0]["sha256"] and manifest["range"][0].startswith("2001-01-01")
    archive.restore(trail.m, store, trail.old.partition)
    assert rows_of(trail, trail.old.partition) == before
    result = trail.verify()
    assert result.ok, [p.describe() for p in result.problems]
    assert [f.kind for f in result.retired] == ["restored"]


def test_without_drop_the_partition_stays_and_list_shows_it_archived(trail, tmp_path, capsys):
    url = f"file://{tmp_path}"
    done = archive.archive(trail.m, open_store(url), 30, now=NOW)
    assert [a.dropped for a in done] == [False]
    assert rows_of(trail, trail.old.partition)
    dsn = f"dbname={trail.dbname} " + _dsn_tail()
    assert cli.main(["--dsn", dsn, "--layout", trail.layout.name, "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["partitions"]
    (jan,) = [p for p in listed if p["name"] == trail.old.partition]
    assert jan["archived"] == f"{url}/{trail.old.partition}/manifest.json"
    assert all(p["archived"] is None for p in listed if p["name"] != trail.old.partition)
    # A second run finds the published copy, checks it, and writes nothing new.
    again = archive.archive(trail.m, open_store(url), 30, now=NOW)
    assert [a.state for a in again] == ["kept"]


def _dsn_tail() -> str:
    from django.conf import settings

    dsn = settings.SERVER.dsn("x", None)
    return " ".join(part for part in dsn.split() if not part.startswith("dbname="))


def change_archived(store: Any, partition: str, column: str, row: int, value: str) -> str | None:
    """Rewrite ``partition``'s data file with ``value`` in ``column`` of row ``row``, as one
    changing the object would; returns the value it replaced."""
    path = store.path(partition, "data.parquet")
    table = pq.read_table(store.fs.open_input_file(path))
    values = table.column(column).to_pylist()
    old, values[row] = values[row], value
    table = table.set_column(table.column_names.index(column), column, pa.array(values, pa.string()))
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    store.write_bytes(path, sink.getvalue())
    return old


def test_an_object_changed_after_upload_is_reported_with_its_name(trail, url):
    store = open_store(url)
    archive.archive(trail.m, store, 30, drop=True, now=NOW)
    old = change_archived(store, trail.old.partition, "object_pk", 5, "")
    assert old
    findings, _, _ = archive.verify_archive(trail.m, store)
    assert findings and all(
        f.partitions == store.url_of(trail.old.partition, "data.parquet") for f in findings
    )
    assert any("SHA-256" in f.detail for f in findings)
    assert any("differs from its seal" in f.detail for f in findings)
    # The command exits 1, naming the file.
    dsn = f"dbname={trail.dbname} " + _dsn_tail()
    env = {**os.environ}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "partitioned_audit.cli",
            "--dsn",
            dsn,
            "--layout",
            trail.layout.name,
            "verify",
            f"--archive={url}",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert store.url_of(trail.old.partition, "data.parquet") in result.stderr
    # Restore refuses it and changes nothing.
    with pytest.raises(archive.ArchiveError, match="nothing restored"):
        archive.restore(trail.m, store, trail.old.partition)
    assert trail.run("SELECT to_regclass(%s)", [trail.old.partition]) == [(None,)]


def test_a_missing_bucket_is_an_error_and_never_created(s3_env):
    with pytest.raises(StoreError) as info:
        open_store("s3://no-such-bucket/audit")
    assert str(info.value) == (
        f"bucket no-such-bucket does not exist at {s3_env.endpoint}; create it first (the archive never does)"
    )
    assert s3_env.filesystem().get_file_info("no-such-bucket").type.name == "NotFound"


def test_a_wrong_key_is_an_error(s3_env, monkeypatch):
    bucket = f"b{uuid.uuid4().hex[:12]}"
    s3_env.make_bucket(bucket)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(StoreError) as info:
        open_store(f"s3://{bucket}/audit")
    assert str(info.value).startswith(f"cannot reach s3://{bucket}/audit at {s3_env.endpoint}: ")


def test_a_missing_directory_is_an_error(tmp_path):
    with pytest.raises(StoreError, match="does not exist; create it first"):
        open_store(f"file://{tmp_path}/nowhere")


@pytest.mark.parametrize("bad", ["s3:///prefix", "file://relative/path", "http://x/y", "", "s3://b/p?x=1"])
def test_malformed_urls_are_refused(bad):
    from partitioned_audit.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        open_store(bad)


def test_a_second_archive_at_the_same_time_fails_and_the_first_completes(trail, tmp_path):
    from partitioned_audit.partitioning.maintenance import Maintainer
    from tests.engine_db import connect

    store = open_store(f"file://{tmp_path}")
    inside, release = threading.Event(), threading.Event()
    result: dict[str, Any] = {}

    def slow(info: Any, rows: int, total: int) -> None:
        inside.set()
        release.wait(30)

    def first() -> None:
        result["done"] = archive.archive(trail.m, store, 30, drop=True, now=NOW, progress=slow)

    thread = threading.Thread(target=first)
    thread.start()
    assert inside.wait(30)
    other = connect(trail.dbname, autocommit=True)
    try:
        with pytest.raises(archive.ArchiveBusy, match="another archive or restore run"):
            archive.archive(Maintainer(other, trail.layout), store, 30, drop=True, now=NOW)
    finally:
        other.close()
        release.set()
        thread.join(60)
    assert [a.dropped for a in result["done"]] == [True]
    assert archive.verify_archive(trail.m, store)[0] == []


def test_the_store_stopping_mid_upload_loses_nothing_and_the_next_run_completes(trail, s3_env):
    """The session's SeaweedFS is stopped in the middle of the upload, then started again."""
    bucket = f"b{uuid.uuid4().hex[:12]}"
    s3_env.make_bucket(bucket)
    url = f"s3://{bucket}/trail"
    store = open_store(url)
    before = rows_of(trail, trail.old.partition)

    def stop(info: Any, rows: int, total: int) -> None:
        if s3_env.process is not None:
            s3_env.stop()

    try:
        with pytest.raises(StoreError):
            archive.archive(trail.m, store, 30, drop=True, now=NOW, progress=stop, batch_rows=100)
    finally:
        if s3_env.process is None:
            s3_env.start()
    assert rows_of(trail, trail.old.partition) == before
    assert glob_count(url, open_store(url)) == 0
    done = archive.archive(trail.m, open_store(url), 30, drop=True, now=NOW)
    assert [a.dropped for a in done] == [True]
    assert glob_count(url, open_store(url)) == len(before)
    assert archive.verify_archive(trail.m, open_store(url))[0] == []


def test_a_run_killed_mid_write_is_completed_by_the_next(tmp_path):
    """A real process, killed while it writes; nothing half-written is visible, nothing lost.
    (20,000 rows in row groups of 200: a hundred fetches and writes, so the kill lands
    while it writes, as it did with 300,000 rows in the default row groups.)"""
    with scratch_database(background=True) as dbname:
        t = Trail(dbname, SIMPLE)
        old = PartitionInfo.create(t.layout.table, *JAN)
        t.m.create([old])
        t.run("SELECT set_config('partitioned_audit.maintenance', 'on', false)")
        t.run(
            "INSERT INTO audit_simple (object_table, object_payload, audit_txid_current, audit_operation,"
            " audit_entry_created) SELECT 'invoice', jsonb_build_object('id', g, 'note', md5(g::text)), 1, 'I',"
            " '2001-01-05'::timestamptz + g * interval '1 second' FROM generate_series(1, 20000) g"
        )
        t.m.seal(chunk_size=1000)
        dsn = f"dbname={dbname} " + _dsn_tail()
        args = [
            "--dsn",
            dsn,
            "archive",
            "--older-than",
            "30",
            "--to",
            f"file://{tmp_path}",
            "--drop",
            "--yes",
            "--json",
            "--batch-rows",
            "200",
        ]
        process = subprocess.Popen(
            [sys.executable, "-m", "partitioned_audit.cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        partial = tmp_path / old.partition / "data.parquet.partial"
        deadline = time.monotonic() + 60
        # (past the 4 bytes a Parquet file opens with: a row group is written)
        while not (partial.exists() and partial.stat().st_size > 4) and time.monotonic() < deadline:
            time.sleep(0.002)
        process.kill()
        assert process.wait() == -signal.SIGKILL  # (killed, not done)
        # The server ends the killed client's session (and its lock) once it sees the socket close.
        deadline = time.monotonic() + 30
        mine = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        while t.run(mine) != [(0,)]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert not (tmp_path / old.partition / "manifest.json").exists()
        assert glob_count(f"file://{tmp_path}", None) == 0
        assert t.run(SQL("SELECT count(*) FROM {}").format(ident(old.partition))) == [(20000,)]
        assert cli.main(args[:-2]) == 0  # (the next run, in the default row groups)
        assert glob_count(f"file://{tmp_path}", None) == 20000
        assert t.run("SELECT to_regclass(%s)", [old.partition]) == [(None,)]
        assert t.verify().ok
        t.conn.close()


def test_archive_needs_yes_to_drop_and_older_than(trail, tmp_path, capsys):
    dsn = f"dbname={trail.dbname} " + _dsn_tail()
    assert (
        cli.main(["--dsn", dsn, "archive", "--older-than", "30", "--to", f"file://{tmp_path}", "--drop"]) == 2
    )
    assert capsys.readouterr().err == (
        "partitioned-audit: archive --drop drops each partition once its copy is checked: add --yes to do it\n"
    )
    assert cli.main(["--dsn", dsn, "archive", "--to", f"file://{tmp_path}"]) == 2
    assert capsys.readouterr().err == "partitioned-audit: archive needs --older-than DAYS\n"
    assert rows_of(trail, trail.old.partition)


def test_restore_refuses_what_it_cannot_do_and_changes_nothing(trail, tmp_path):
    from partitioned_audit.errors import PartitionError

    store = open_store(f"file://{tmp_path}")
    with pytest.raises(archive.ArchiveError) as info:
        archive.restore(trail.m, store, trail.old.partition)
    assert str(info.value) == (
        f"no archive of public.{trail.old.partition} at file://{tmp_path}/{trail.old.partition}/manifest.json"
    )
    archive.archive(trail.m, store, 30, now=NOW)  # kept in PostgreSQL: restore has nothing to do
    with pytest.raises(PartitionError) as refused:
        archive.restore(trail.m, store, trail.old.partition)
    assert str(refused.value) == (
        f"public.{trail.old.partition} holds the range of {trail.old.partition} in the audit table;"
        " nothing to restore (list-all shows it)"
    )
    with pytest.raises(archive.ArchiveError, match="is not a partition name of"):
        archive.restore(trail.m, store, "invoice")


def test_rows_under_several_seals_and_rows_not_sealed_yet_are_archived_and_checked(tmp_path):
    with scratch_database(background=True) as dbname:
        t = Trail(dbname, SIMPLE)
        old = PartitionInfo.create(t.layout.table, *JAN)
        t.m.create([old])
        move = SQL("UPDATE {} SET {} = '2001-01-10' WHERE {} > {}").format(
            t.table,
            ident(t.layout.time_column),
            t.event,
            SQL("coalesce((SELECT max(last_event_id) FROM audit_simple_seal), 0)"),
        )
        for first in (1, 401, 801):
            t.write(first, 400)
            t.tamper(move)
            if first < 801:  # the last 400 rows stay unsealed
                t.m.seal(chunk_size=150)
        store = open_store(f"file://{tmp_path}")
        (done,) = archive.archive(t.m, store, 30, drop=False, now=NOW)
        assert done.rows == 1200
        manifest = json.loads(store.read_bytes(store.path(old.partition, "manifest.json")))
        assert {c["seal_id"] for c in manifest["seals"]["chunks"]} == {1, 2}
        assert manifest["seals"]["sealed_through"] == 800
        assert archive.verify_archive(t.m, store)[0] == []
        # A changed unsealed row is caught by the file's SHA-256 alone; a sealed one by its seal too.
        change_archived(store, old.partition, "object_pk", 500, "changed")
        details = [f.detail for f in archive.verify_archive(t.m, store)[0]]
        assert any("SHA-256" in d for d in details)
        assert any(d.startswith("chunk 0 of seal 2 differs from its seal") for d in details)
        t.conn.close()


def test_people_get_a_table_and_a_progress_bar_with_rows_per_second(trail, tmp_path, capsys):
    dsn = f"dbname={trail.dbname} " + _dsn_tail()
    rows = len(rows_of(trail, trail.old.partition))
    args = [
        "--dsn",
        dsn,
        "--layout",
        trail.layout.name,
        "archive",
        "--older-than",
        "30",
        "--to",
        f"file://{tmp_path}",
    ]
    with time_machine_travel(NOW):
        assert cli.main(args) == 0
    out, err = capsys.readouterr()
    assert f"|  {trail.old.partition}  |" in out and "|  archived  |" in out and f"|  {rows}  |" in out
    assert f"1 partition(s), {rows} row(s) archived to file://{tmp_path}" in out
    assert trail.old.partition in err and "rows/s" in err


def time_machine_travel(now: dt.datetime) -> Any:
    import time_machine

    return time_machine.travel(now, tick=False)


# ---------------------------------------------------------------------------------------
# The context table: who wrote and what they declared, archived and restored with the rows
# ---------------------------------------------------------------------------------------


def backdate(t: Trail, txids: list[int], when: str) -> None:
    """Move the audit rows and the context rows of transactions ``txids`` to ``when``, as if
    written then (the server's clock cannot be set back)."""
    t.tamper(
        SQL("UPDATE {} SET created = {} WHERE txid = ANY ({})").format(
            ident(t.schema, t.layout.context_table), literal(when), literal(txids)
        )
    )
    t.tamper(
        SQL("UPDATE {} SET {} = {} WHERE {} = ANY ({})").format(
            t.table,
            ident(t.layout.time_column),
            literal(when),
            ident(t.layout.txid_column),
            literal(txids),
        )
    )


@pytest.fixture(params=[SIMPLE, ADVANCED], ids=lambda layout: layout.name)
def context_trail(request: pytest.FixtureRequest) -> Iterator[tuple[Trail, str]]:
    """January 2001 holds three transactions: two by the login role ``clerk`` (one inside
    an audit context, one outside any), one by the owner inside another context; a fourth,
    by ``clerk`` in a context, is newer. Everything is sealed in the format new seals use."""
    clerk = f"dpa_clerk_{uuid.uuid4().hex[:8]}"
    admin = connect("postgres", autocommit=True)
    execute(admin.cursor(), SQL("CREATE ROLE {} LOGIN").format(ident(clerk)))
    try:
        with scratch_database(background=True) as dbname:
            t = Trail(dbname, request.param)
            t.run("GRANT SELECT, INSERT, UPDATE ON invoice TO " + clerk)
            old = PartitionInfo.create(t.layout.table, *JAN)
            t.m.create([old])
            writer = connect(dbname, autocommit=False, login=(clerk, ""))
            txids = []
            for context, statement in (
                (
                    '{"user_id": 7, "via": "import"}',
                    "INSERT INTO invoice SELECT g, g, 'n' FROM generate_series(1, 600) g",
                ),
                ("", "INSERT INTO invoice SELECT g, g, 'n' FROM generate_series(601, 900) g"),
                ('{"user_id": 9}', "INSERT INTO invoice SELECT g, g, 'n' FROM generate_series(2001, 2300) g"),
            ):
                cur = writer.cursor()
                cur.execute("SELECT set_config('partitioned_audit.context', %s, true)", [context])
                cur.execute(statement)
                cur.execute("SELECT txid_current()")
                txids.append(cur.fetchone()[0])
                writer.commit()
            writer.close()
            t.run("BEGIN")
            t.run(
                "SELECT set_config('partitioned_audit.context', %s, true)", ['{"user_id": 8, "why": "fix"}']
            )
            t.run("UPDATE invoice SET note = 'fixed' WHERE id <= 300")
            (owner_txid,) = t.run("SELECT txid_current()")[0]
            t.run("COMMIT")
            backdate(t, [txids[0], txids[1], owner_txid], "2001-01-10 08:00:00+00")
            t.m.seal(chunk_size=500)
            t.old = old  # type: ignore[attr-defined]
            yield t, clerk
            t.conn.close()
    finally:
        admin.close()
        drop_role_later(clerk)  # (after the database holding its grants)


def shown(t: Trail) -> list[tuple[Any, ...]]:
    """(event id, audit_context, session_user_name) of January's rows, as the view shows them."""
    cur = t.conn.cursor()
    execute(
        cur,
        SQL("SELECT * FROM {} WHERE {} < '2001-02-01' ORDER BY 1").format(
            ident(t.schema, t.layout.view), ident(t.layout.time_column)
        ),
    )
    names = [d[0] for d in cur.description]
    at = [0, names.index("audit_context"), names.index("session_user_name")]
    return [tuple(row[i] for i in at) for row in cur.fetchall()]


def context_rows(t: Trail) -> list[tuple[Any, ...]]:
    """January's context partition, whole."""
    name = t.layout.context_partition(t.old.partition)
    return t.run(SQL("SELECT * FROM {} ORDER BY context_id").format(ident(t.schema, name)))


def test_the_context_and_login_role_are_archived_checked_and_restored(context_trail, url):
    t, clerk = context_trail
    before, contexts = shown(t), context_rows(t)
    (owner,) = t.run("SELECT session_user::text")[0]
    # What the fixture meant to write: a context row per transaction in a context, none for
    # the write outside any (its login role is on its audit rows); the view showing them.
    assert len(contexts) == 2
    assert {(json.dumps(c, sort_keys=True) if c else None, who) for _, c, who in before} == {
        ('{"user_id": 7, "via": "import"}', clerk),
        (None, clerk),
        ('{"user_id": 8, "why": "fix"}', owner),
    }
    store = open_store(url)
    (done,) = archive.archive(t.m, store, 30, drop=True, now=NOW)
    assert done.dropped and done.rows == len(before)
    context_partition = t.layout.context_partition(t.old.partition)
    assert t.run("SELECT to_regclass(%s)", [context_partition]) == [(None,)]
    assert t.verify().ok
    assert archive.verify_archive(t.m, store)[0] == []
    # The archive holds every field the seals hash, the context row's among them.
    manifest = json.loads(store.read_bytes(store.path(t.old.partition, "manifest.json")))
    assert set(archive.sealed_fields(t.layout)) <= {c["stores"] for c in manifest["columns"]}
    assert {int(c["format"]) for c in manifest["seals"]["chunks"]} == {sealing.FORMAT}
    archive.restore(t.m, store, t.old.partition)
    assert context_rows(t) == contexts
    assert shown(t) == before
    # Restored as maintenance makes it: no parallel scan of it for a context search.
    assert t.run("SELECT reloptions FROM pg_class WHERE oid = to_regclass(%s)", [context_partition]) == [
        (["parallel_workers=0"],)
    ]
    result = t.verify()
    assert result.ok, [p.describe() for p in result.problems]
    assert [f.kind for f in result.retired] == ["restored"]


def test_a_changed_context_in_the_archive_differs_from_its_seal(context_trail, tmp_path):
    t, clerk = context_trail
    store = open_store(f"file://{tmp_path}")
    archive.archive(t.m, store, 30, drop=True, now=NOW)
    manifest = json.loads(store.read_bytes(store.path(t.old.partition, "manifest.json")))
    # The login role as the seals read it: the view's column, or the column stored beside it.
    (column,) = [c["name"] for c in manifest["columns"] if c["stores"] == "c.session_user_name"]
    assert change_archived(store, t.old.partition, column, 0, "someone_else") == clerk
    details = [f.detail for f in archive.verify_archive(t.m, store)[0]]
    assert any("SHA-256" in d for d in details)
    assert any(d.startswith("chunk 0 of seal 1 differs from its seal") for d in details)


@pytest.mark.parametrize("layout", [SIMPLE, ADVANCED], ids=lambda layout: layout.name)
def test_seals_of_formats_1_and_2_made_before_the_context_table_are_checked_and_restored(layout, tmp_path):
    """Seal 1 in format 1 and seal 2 in format 2 (made by earlier versions: written here by
    hand, as the documented encoding says), seal 3 in the format new seals use, all over January's rows."""
    with scratch_database(background=True) as dbname:
        t = Trail(dbname, layout)
        old = PartitionInfo.create(layout.table, *JAN)
        t.m.create([old])
        t.write(1, 60)
        t.tamper(SQL("UPDATE {} SET {} = '2001-01-10'").format(t.table, ident(layout.time_column)))
        if layout.sealed_from:
            # (the rows those versions sealed had none of the columns added since: NULL there)
            t.tamper(
                SQL("UPDATE {} SET {} WHERE {} IN (SELECT {} FROM {} ORDER BY 1 LIMIT 40)").format(
                    t.table,
                    SQL(", ").join(SQL("{} = NULL").format(ident(name)) for name in layout.sealed_from),
                    t.event,
                    t.event,
                    t.table,
                )
            )
        rows = field_texts(t, 2)  # (format 1 hashes the same fields)
        ids = sorted(rows)
        where = f"{t.schema}.{old.partition}"
        seals = ident(t.schema, layout.seal_table)
        previous = bytes(32)
        first = 1
        for seal_id, form, last in ((1, 1, ids[19]), (2, 2, ids[39])):
            covered = [i for i in ids if first <= i <= last]
            groups: dict[int, list[list[str | None]]] = {}
            for i in covered:
                groups.setdefault((i - first) // 10, []).append(rows[i])
            chunks = [[seal_id, k, len(g), chunk_digest(form, g), where] for k, g in sorted(groups.items())]
            extra = (
                None
                if form == 1
                else t.run("""SELECT '{"format": 2, "pending": [], "closes": []}'::jsonb::text""")[0][0]
            )
            sealed_at = t.run("SELECT now()::text")[0][0]
            header = [str(seal_id), "seal", sealed_at, str(first), str(last), str(len(covered)), "10", None]
            digest = link(previous, header, chunks, extra)
            t.insert_past_the_seal_trigger(
                SQL(
                    "INSERT INTO {} VALUES (%s, 'seal', %s, %s, %s, %s, 10, NULL,"
                    " %s, %s, %s, %s, %s, %s, %s, %s::jsonb)"
                ).format(seals),
                [
                    seal_id,
                    sealed_at,
                    first,
                    last,
                    len(covered),
                    *(list(c) for c in zip(*chunks, strict=True)),
                    previous,
                    digest,
                    extra,
                ],
            )
            previous, first = digest, last + 1
        assert t.m.seal(chunk_size=10).rows == len(ids) - 40
        assert t.verify().ok
        store = open_store(f"file://{tmp_path}")
        before = rows_of(t, old.partition)
        (done,) = archive.archive(t.m, store, 30, drop=True, now=NOW)
        assert done.dropped
        manifest = json.loads(store.read_bytes(store.path(old.partition, "manifest.json")))
        assert sorted({(c["seal_id"], c["format"]) for c in manifest["seals"]["chunks"]}) == [
            (1, 1),
            (2, 2),
            (3, sealing.FORMAT),
        ]
        assert archive.verify_archive(t.m, store)[0] == []
        archive.restore(t.m, store, old.partition)
        assert rows_of(t, old.partition) == before
        result = t.verify()
        assert result.ok, [p.describe() for p in result.problems]
        t.conn.close()


def test_an_archive_made_before_the_simple_login_role_column_is_checked_and_restored(tmp_path):
    """An archive of rows sealed in format 3, made before the simple layout's
    ``session_user_name`` column, holds no field of it: its chunks are checked from the
    fields format 3 hashes, and restore brings its rows back with the column NULL, as the
    rows read it before they were archived."""
    import hashlib

    with scratch_database(background=True) as dbname:
        t = Trail(dbname, SIMPLE)
        old = PartitionInfo.create(SIMPLE.table, *JAN)
        t.m.create([old])
        t.write(1, 30)
        t.tamper(
            SQL("UPDATE {} SET audit_entry_created = '2001-01-10', session_user_name = NULL").format(t.table)
        )
        # Seal 1 in format 3, as the version before the column made it.
        rows = field_texts(t, 3)
        ids = sorted(rows)
        where = f"{t.schema}.{old.partition}"
        groups: dict[int, list[list[str | None]]] = {}
        for i in ids:
            groups.setdefault((i - 1) // 10, []).append(rows[i])
        chunks = [[1, k, len(g), chunk_digest(3, g), where] for k, g in sorted(groups.items())]
        extra = t.run("""SELECT '{"format": 3, "pending": [], "closes": []}'::jsonb::text""")[0][0]
        sealed_at = t.run("SELECT now()::text")[0][0]
        header = ["1", "seal", sealed_at, "1", str(ids[-1]), str(len(ids)), "10", None]
        digest = link(bytes(32), header, chunks, extra)
        t.insert_past_the_seal_trigger(
            SQL(
                "INSERT INTO {} VALUES (1, 'seal', %s, 1, %s, %s, 10, NULL, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)"
            ).format(ident(t.schema, SIMPLE.seal_table)),
            [
                sealed_at,
                ids[-1],
                len(ids),
                *(list(c) for c in zip(*chunks, strict=True)),
                bytes(32),
                digest,
                extra,
            ],
        )
        assert t.verify(expect=digest.hex()).ok
        store = open_store(f"file://{tmp_path}")
        before = rows_of(t, old.partition)
        (done,) = archive.archive(t.m, store, 30, drop=True, now=NOW)
        assert done.dropped
        # What the archiver wrote before the column: no column storing it.
        path = store.path(old.partition, "data.parquet")
        table = pq.read_table(store.fs.open_input_file(path)).drop_columns(["dpa_stored_session_user_name"])
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        store.write_bytes(path, sink.getvalue())
        manifest_path = store.path(old.partition, "manifest.json")
        manifest = json.loads(store.read_bytes(manifest_path))
        manifest["columns"] = [c for c in manifest["columns"] if c["stores"] != "session_user_name"]
        (data,) = manifest["files"]
        data.update(bytes=len(sink.getvalue()), sha256=hashlib.sha256(sink.getvalue()).hexdigest())
        store.write_bytes(manifest_path, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())
        assert {int(c["format"]) for c in manifest["seals"]["chunks"]} == {3}

        assert archive.verify_archive(t.m, store)[0] == []
        archive.restore(t.m, store, old.partition)
        assert rows_of(t, old.partition) == before
        result = t.verify(expect=digest.hex())
        assert result.ok, [p.describe() for p in result.problems]
        t.conn.close()


def test_an_install_not_migrated_since_the_login_role_column_stops_offline_verify_and_the_archive_clearly(
    tmp_path, capsys
):
    """The package upgraded, ``migrate`` not run yet: the simple layout's audit table has no
    ``session_user_name``. Verify offline, archive and restore, which read every column of
    this version with plain SELECTs, stop with an error that says the install is OUTDATED and
    how to bring it up to date, not the driver's "column does not exist"."""
    from partitioned_audit import OutdatedInstall

    with scratch_database(background=True) as dbname:
        t = Trail(dbname, SIMPLE)
        jan = PartitionInfo.create(SIMPLE.table, *JAN)
        feb = PartitionInfo.create(SIMPLE.table, dt.date(2001, 2, 1), dt.date(2001, 3, 1))
        t.m.create([jan, feb])
        t.write(1, 20)
        t.tamper(
            SQL(
                "UPDATE {t} SET audit_entry_created = CASE WHEN {e} <= 10 THEN '2001-01-10'::timestamptz"
                " ELSE '2001-02-10'::timestamptz END"
            ).format(t=t.table, e=t.event)
        )
        t.m.seal()
        store = open_store(f"file://{tmp_path}")
        assert archive.archive_partition(t.m, store, jan, drop=True).dropped
        t.as_before_the_login_role_column()
        message = (
            f"the audit table {t.schema}.{SIMPLE.table} has no column session_user_name: the simple layout's"
            " install is OUTDATED, older than this version; bring the audit objects up to date first"
            " (python manage.py migrate, or partitioned_audit.install())"
        )
        for step in (
            lambda: t.m.verify(offline=True),
            lambda: archive.archive(t.m, store, 30, drop=True, now=NOW),
            lambda: archive.restore(t.m, store, jan.partition),
        ):
            with pytest.raises(OutdatedInstall) as info:
                step()
            assert str(info.value) == message
        dsn = f"dbname={dbname} " + _dsn_tail()
        assert cli.main(["--dsn", dsn, "--layout", "simple", "verify", "--offline"]) == 2
        assert capsys.readouterr().err == f"partitioned-audit: {message}\n"
        assert len(rows_of(t, feb.partition)) == 10
        t.conn.close()


def test_a_partition_changed_after_its_archive_is_not_dropped_nor_its_context_rows(context_trail, tmp_path):
    t, clerk = context_trail
    store = open_store(f"file://{tmp_path}")
    (done,) = archive.archive(t.m, store, 30, drop=False, now=NOW)
    contexts = context_rows(t)
    t.run("""SELECT set_config('partitioned_audit.context', '{"user_id": 5}', false)""")
    t.run("INSERT INTO invoice VALUES (5000, 1, 'late')")
    t.run("SELECT set_config('partitioned_audit.context', '', false)")
    (txid,) = t.run(
        SQL("SELECT {} FROM {} ORDER BY {} DESC LIMIT 1").format(
            ident(t.layout.txid_column), t.table, t.event
        )
    )[0]
    backdate(t, [txid], "2001-01-20 00:00:00+00")
    with pytest.raises(archive.ArchiveError) as info:
        archive.archive(t.m, store, 30, drop=True, now=NOW)
    assert str(info.value).startswith(f"{done.manifest} exists but does not match public.{t.old.partition}: ")
    assert len(context_rows(t)) == len(contexts) + 1
    assert len(rows_of(t, t.old.partition)) == done.rows + 1


def test_an_entry_verify_does_not_count_vouches_for_no_archived_row(trail, tmp_path):
    """A sealed row of January altered, then an entry appended past the seal table's
    trigger (dropped by whoever owns it) that re-digests the altered chunk: verify does not
    count that entry (its range ends before it starts), so neither does the archive, which
    refuses the rows and publishes nothing."""
    t = trail
    payload = ident("object_payload" if t.layout.name == "simple" else "row_data")
    t.tamper(
        SQL("UPDATE {} SET {p} = {p} || '{{\"amount\": 0}}' WHERE {}").format(t.table, t.where(5), p=payload)
    )
    seals = ident(t.schema, t.layout.seal_table)
    fields = SQL(
        "2, 'seal', now(), s.last_event_id + 1, s.last_event_id, c.row_count, s.chunk_size, NULL::text,"
        " ARRAY[c.seal_id], ARRAY[c.chunk], ARRAY[c.row_count], ARRAY[c.digest], ARRAY[c.partitions]"
    )
    t.run("SELECT set_config('partitioned_audit.maintenance', 'on', false)")  # (past the guard)
    t.run(SQL("DROP TRIGGER {} ON {}").format(ident(sealing.APPEND_ONLY_TRIGGER), seals))
    t.run("SELECT set_config('partitioned_audit.maintenance', '', false)")
    t.run(
        SQL(
            "INSERT INTO {seals} (seal_id, kind, sealed_at, first_event_id, last_event_id, row_count, chunk_size,"
            " partition_name, chunk_seal, chunk_index, chunk_rows, chunk_digest, chunk_partitions, extra,"
            " previous, digest)"
            " SELECT {fields}, {extra}::jsonb, s.digest, {link}(s.digest, {fields}, {extra}::jsonb)"
            " FROM {seals} s, {chunks}(ARRAY[1::bigint], ARRAY[s.first_event_id], ARRAY[s.chunk_size],"
            " ARRAY[(s.extra ->> 'format')::integer], s.first_event_id, s.last_event_id, NULL, '{{}}') c"
            " WHERE s.seal_id = 1 AND c.chunk = 0"
        ).format(
            seals=seals,
            fields=fields,
            extra=literal(json.dumps({"format": sealing.FORMAT, "pending": [], "closes": []})),
            link=ident(t.schema, sealing.LINK_FUNCTION),
            chunks=ident(t.schema, t.layout.seal_function("chunks")),
        )
    )
    ((last,),) = t.run(SQL("SELECT last_event_id FROM {} WHERE seal_id = 1").format(seals))
    assert [f.detail for f in t.verify().problems if f.kind == "chain"] == [
        f"seal 2 is not counted: it covers events {last + 1}..{last}, which end before they start"
    ]
    store = open_store(f"file://{tmp_path}")
    with pytest.raises(archive.ArchiveError) as info:
        archive.archive(t.m, store, 30, drop=True, now=NOW)
    assert "chunk 0 of seal 1 differs from its seal" in str(info.value)
    assert "nothing was published" in str(info.value)
    assert glob_count(f"file://{tmp_path}", None) == 0
    assert rows_of(t, t.old.partition)


def test_batch_rows_sets_the_row_groups_and_must_be_1_or_more(trail, tmp_path, capsys):
    dsn = f"dbname={trail.dbname} " + _dsn_tail()
    args = ["--dsn", dsn, "--layout", trail.layout.name, "archive", "--older-than", "30"]
    args += ["--to", f"file://{tmp_path}", "--json"]
    assert cli.main([*args, "--batch-rows", "0"]) == 2
    assert capsys.readouterr().err == "partitioned-audit: --batch-rows must be 1 or more, got 0\n"
    with time_machine_travel(NOW):
        assert cli.main([*args, "--batch-rows", "500"]) == 0
    (done,) = json.loads(capsys.readouterr().out)["partitions"]
    parquet = pq.ParquetFile(f"{tmp_path}/{trail.old.partition}/data.parquet")
    assert parquet.metadata.num_rows == done["rows"] > 1000
    assert [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)] == [500, 500] + [
        done["rows"] - 1000
    ]
    assert archive.verify_archive(trail.m, open_store(f"file://{tmp_path}"))[0] == []
