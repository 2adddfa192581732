"""What the 1.0.4 upgrade of the simple layout locks, and for how long, on a large table.

    python -m bench.upgrade --rows 1000000

Builds a 1.0.4-shaped ``audit_simple`` (12 monthly partitions, ``--rows`` rows), then runs
the upgrade (``install()``, in one transaction as the migration does, then ``backfill()``,
batch by batch) while a second connection keeps inserting audit rows, one per transaction,
as capture triggers do. Prints how long each phase took and the longest any insert waited.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(ROOT / "testproject")]

from testproject.dbserver import get_server  # noqa: E402

from partitioned_audit import SIMPLE, install, objects  # noqa: E402

LEGACY = """
CREATE TABLE audit_simple (
    object_table character varying(63) NOT NULL,
    object_payload jsonb NOT NULL,
    audit_entry_created timestamp with time zone NOT NULL DEFAULT now(),
    audit_entry_created_statement_timestamp timestamp with time zone NOT NULL DEFAULT statement_timestamp(),
    audit_txid_current bigint NOT NULL,
    audit_operation character varying(1) NOT NULL
) PARTITION BY RANGE (audit_entry_created);
"""
INSERT = (
    "INSERT INTO audit_simple (object_table, object_payload, audit_entry_created, audit_txid_current,"
    " audit_operation) VALUES ('book', '{\"id\": 1, \"title\": \"a title\"}', now(), 1, 'I')"
)


class Writer(threading.Thread):
    """Inserts audit rows until stopped, remembering the longest wait per phase."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.phase = "before"
        self.longest: dict[str, float] = {}
        self.stop = False

    def run(self) -> None:
        while not self.stop:
            start = time.perf_counter()
            self.conn.execute(INSERT)
            waited = time.perf_counter() - start
            self.longest[self.phase] = max(self.longest.get(self.phase, 0.0), waited)
            time.sleep(0.002)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    options = parser.parse_args()
    server = get_server()
    dbname = f"dpa_upgrade_{int(time.time())}"
    admin = psycopg.connect(server.dsn("postgres"), autocommit=True)
    admin.execute(f'CREATE DATABASE "{dbname}"')
    try:
        dsn = server.dsn(dbname)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(LEGACY)
            for month in range(1, 13):
                start, end = f"2024-{month:02d}-01", f"{2024 + month // 12}-{month % 12 + 1:02d}-01"
                name = f"audit_simple_{start.replace('-', '')}_{end.replace('-', '')}"
                conn.execute(
                    f"CREATE TABLE {name} PARTITION OF audit_simple FOR VALUES FROM ('{start}') TO ('{end}')"
                )
            # The writer's rows land in a partition of today, as live audit rows would.
            conn.execute(
                "CREATE TABLE audit_simple_now PARTITION OF audit_simple FOR VALUES FROM ('2025-01-01') TO ('2100-01-01')"
            )
            conn.execute(
                "INSERT INTO audit_simple (object_table, object_payload, audit_entry_created, audit_txid_current,"
                " audit_operation) SELECT 'book', jsonb_build_object('id', g, 'title', 'a title of a book'),"
                " timestamptz '2024-01-01' + (g::float / %s) * interval '365 days', g, 'I'"
                " FROM generate_series(1, %s) g",
                [options.rows, options.rows],
            )
            conn.execute("VACUUM ANALYZE audit_simple")
        writer = Writer(dsn)
        writer.start()
        time.sleep(0.5)
        with psycopg.connect(dsn) as conn:
            writer.phase = "install"
            start = time.perf_counter()
            install(conn.cursor(), SIMPLE)
            conn.commit()
            installed = time.perf_counter() - start
        with psycopg.connect(dsn, autocommit=True) as conn:
            writer.phase = "backfill"
            start = time.perf_counter()
            numbered = objects.backfill(conn, SIMPLE)
            backfilled = time.perf_counter() - start
        writer.phase = "after"
        time.sleep(0.5)
        writer.stop = True
        writer.join()
        print(f"{options.rows:,} rows of 1.0.4; {numbered:,} numbered by the backfill")
        print(f"install (one transaction, writers wait): {installed * 1000:.0f} ms")
        print(f"backfill (batches, writers go on): {backfilled * 1000:.0f} ms")
        for phase in ("before", "install", "backfill", "after"):
            print(f"longest audited insert {phase}: {writer.longest.get(phase, 0) * 1000:.1f} ms")
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        admin.close()


if __name__ == "__main__":
    main()
