"""What the 1.0.4 upgrade locks, and for how long, on a large table.

    python -m bench.upgrade --rows 1000000 --layout simple     # or advanced
    python -m bench.upgrade --rows 1000000 --from pre-context  # a 2.0 trail of before the context table

Builds a 1.0.4-shaped audit table (12 monthly partitions, ``--rows`` rows), or with
``--from pre-context`` the trail of a 2.0 pre-release (no context table, no
``audit_context_id``, a BRIN on the event id, which the upgrade replaces), then runs
the upgrade as ``migrate`` does (``install()`` in one transaction, then ``backfill()``,
batch by batch, then ``build_indexes()``, partition by partition, CONCURRENTLY) while a
second connection keeps inserting audit rows, one per transaction, as capture triggers do.
Prints how long each phase took, how many rows the writer inserted meanwhile and the
longest any insert waited.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(ROOT / "testproject")]

from testproject.legacy104 import ADVANCED_TABLE, SIMPLE_TABLE  # noqa: E402

from bench.ab import scratch_database  # noqa: E402
from partitioned_audit import get_layout, install, objects  # noqa: E402
from partitioned_audit.ddl import drop_views  # noqa: E402

# (DDL, one audit row as a capture writes it, SELECT list of n rows spread over 2024 by g)
SHAPES = {
    "simple": (
        SIMPLE_TABLE,
        "INSERT INTO audit_simple (object_table, object_payload, audit_entry_created, audit_txid_current,"
        " audit_operation) VALUES ('book', '{\"id\": 1, \"title\": \"a title\"}', now(), 1, 'I')",
        "INSERT INTO audit_simple (object_table, object_payload, audit_entry_created, audit_txid_current,"
        " audit_operation) SELECT 'book', jsonb_build_object('id', g, 'title', 'a title of a book'),"
        " timestamptz '2024-01-01' + (g::float / %s) * interval '365 days', g, 'I'"
        " FROM generate_series(1, %s) g",
    ),
    "advanced": (
        ADVANCED_TABLE,
        # A row valid before and after the upgrade (row_data changes type): a TRUNCATE entry.
        "INSERT INTO logged_actions (schema_name, table_name, relid, action_tstamp_tx, action_tstamp_stm,"
        " action_tstamp_clk, action, statement_only) VALUES ('public', 'book', 1, now(), now(), now(), 'T', true)",
        "INSERT INTO logged_actions (schema_name, table_name, relid, action_tstamp_tx, action_tstamp_stm,"
        " action_tstamp_clk, action, row_data, changed_fields, statement_only)"
        " SELECT 'public', 'book', 1, t, t, t, 'U', hstore(ARRAY['id', g::text, 'title', 'a title of a book']),"
        " hstore('title', 'new'), false FROM generate_series(1, %s) g,"
        " LATERAL (SELECT timestamptz '2024-01-01' + (g::float / %s) * interval '365 days' AS t) x",
    ),
}


# A trail of 2.0 before the context table, filled with the same rows as 1.0.4's above.
PRE_CONTEXT_FILL = {
    "simple": "INSERT INTO audit_simple (object_table, object_payload, audit_entry_created, audit_txid_current,"
    " audit_operation, object_schema, object_pk) SELECT 'book', jsonb_build_object('id', g, 'title',"
    " 'a title of a book'), timestamptz '2024-01-01' + (g::float / %s) * interval '365 days', g, 'I',"
    " 'public', g::text FROM generate_series(1, %s) g",
    "advanced": "INSERT INTO logged_actions (schema_name, table_name, relid, action_tstamp_tx, action_tstamp_stm,"
    " action_tstamp_clk, action, row_data, changed_fields, statement_only, object_pk)"
    " SELECT 'public', 'book', 1, t, t, t, 'U', jsonb_build_object('id', g, 'title', 'a title of a book'),"
    " jsonb_build_object('title', 'new'), false, g::text FROM generate_series(1, %s) g,"
    " LATERAL (SELECT timestamptz '2024-01-01' + (g::float / %s) * interval '365 days' AS t) x",
}


def pre_context_trail(conn: psycopg.Connection, layout: Any, rows: int) -> None:
    """Install this version, fill it, then take away what the context table upgrade adds."""
    with conn.transaction():
        install(conn.cursor(), layout)
    t = layout.table
    conn.execute("SELECT set_config('partitioned_audit.maintenance', 'on', false)")
    for statement in drop_views(layout, "public"):  # the read view and those built on it
        conn.execute(statement)
    conn.execute(f"DROP INDEX {layout.event_index}, {layout.context_id_index}")
    conn.execute(f"ALTER TABLE {t} DROP COLUMN audit_context_id")
    conn.execute(f"DROP TABLE {layout.context_table} CASCADE")
    conn.execute(f"COMMENT ON FUNCTION {layout.function}() IS 'partitioned_audit an older version'")
    make_partitions(conn, layout)
    conn.execute(PRE_CONTEXT_FILL[layout.name], [rows, rows])
    conn.execute(f"CREATE INDEX {t}_event_brin ON {t} USING brin ({layout.event_column})")
    conn.execute("SELECT set_config('partitioned_audit.maintenance', '', false)")


def make_partitions(conn: psycopg.Connection, layout: Any) -> None:
    for month in range(1, 13):
        start, end = f"2024-{month:02d}-01", f"{2024 + month // 12}-{month % 12 + 1:02d}-01"
        name = f"{layout.table}_{start.replace('-', '')}_{end.replace('-', '')}"
        conn.execute(
            f"CREATE TABLE {name} PARTITION OF {layout.table} FOR VALUES FROM ('{start}') TO ('{end}')"
        )
    # The writer's rows land in a partition of today, as live audit rows would.
    conn.execute(
        f"CREATE TABLE {layout.table}_now PARTITION OF {layout.table}"
        " FOR VALUES FROM ('2025-01-01') TO ('2100-01-01')"
    )


def objects_none() -> Any:
    return argparse.Namespace(built=[], completed=[])


class Writer(threading.Thread):
    """Inserts audit rows until stopped, remembering the longest wait per phase."""

    def __init__(self, dsn: str, insert: str) -> None:
        super().__init__(daemon=True)
        self.insert = insert
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.phase = "before"
        self.longest: dict[str, float] = {}
        self.count: dict[str, int] = {}
        self.stop = False

    def run(self) -> None:
        while not self.stop:
            start = time.perf_counter()
            self.conn.execute(self.insert)
            waited = time.perf_counter() - start
            self.longest[self.phase] = max(self.longest.get(self.phase, 0.0), waited)
            self.count[self.phase] = self.count.get(self.phase, 0) + 1
            time.sleep(0.002)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--layout", choices=sorted(SHAPES), default="simple")
    parser.add_argument(
        "--from",
        dest="origin",
        choices=("1.0.4", "pre-context"),
        default="1.0.4",
        help="the trail upgraded: 1.0.4's, or 2.0's before the context table (default: 1.0.4)",
    )
    options = parser.parse_args()
    layout = get_layout(options.layout)
    ddl, insert, fill = SHAPES[options.layout]
    with scratch_database("dpa_upgrade") as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            if options.origin == "pre-context":
                pre_context_trail(conn, layout, options.rows)
            else:
                conn.execute(ddl)
                make_partitions(conn, layout)
                conn.execute(fill, [options.rows, options.rows])
            conn.execute(f"VACUUM ANALYZE {layout.table}")
        writer = Writer(dsn, insert)
        writer.start()
        time.sleep(0.5)
        with psycopg.connect(dsn) as conn:
            writer.phase = "install"
            start = time.perf_counter()
            install(conn.cursor(), layout)
            conn.commit()
            installed = time.perf_counter() - start
        with psycopg.connect(dsn, autocommit=True) as conn:
            writer.phase = "backfill"
            start = time.perf_counter()
            numbered = objects.backfill(conn, layout)
            backfilled = time.perf_counter() - start
            writer.phase = "indexes"
            start = time.perf_counter()
            # A tree of before build_indexes() (``--against``-style runs of an older checkout)
            # built them inside install().
            build = getattr(objects, "build_indexes", None)
            built = build(conn, layout) if build else objects_none()
            indexed = time.perf_counter() - start
        writer.phase = "after"
        time.sleep(0.5)
        writer.stop = True
        writer.join()
        print(
            f"{options.layout}: {options.rows:,} rows of {options.origin}; {numbered:,} finished by the backfill"
        )
        print(f"install (one transaction, writers wait): {installed * 1000:.0f} ms")
        print(f"backfill (batches, writers go on): {backfilled * 1000:.0f} ms")
        print(
            f"indexes ({len(built.built)} partition indexes CONCURRENTLY, then attached; writers go on):"
            f" {indexed * 1000:.0f} ms; valid: {', '.join(built.completed)}"
        )
        for phase in ("before", "install", "backfill", "indexes", "after"):
            print(
                f"audited inserts {phase}: {writer.count.get(phase, 0)},"
                f" longest {writer.longest.get(phase, 0) * 1000:.1f} ms"
            )


if __name__ == "__main__":
    main()
