"""The archive tier: throughput end to end, bytes per archived row, peak memory.

    python -m bench.archive --rows 200000 --large 1000000

Each layout's audit table gets ``rows`` audit rows of a four-column table (as captured by
the triggers, with a context on each statement's first row) in one January 2001 partition,
sealed; then ``partitioned-audit archive --drop --yes`` runs in a process of its own, to
``file://`` and to a SeaweedFS S3 gateway on loopback: read, write zstd Parquet and
upload, every sealed row's digest checked on the way, read back (SHA-256 of the object),
publish, drop. Reported: rows per second end to end,
bytes per archived row beside the partition's bytes per row in PostgreSQL (heap, TOAST and
indexes), and the archiving process's peak RSS, at ``rows`` and at ``large`` rows (memory
must not grow with the partition).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "testproject"))
sys.path.insert(0, str(HERE.parent))

from testproject.dbserver import Server, get_server  # noqa: E402

from bench.run import connect, recreate_database, run, say  # noqa: E402
from partitioned_audit import ADVANCED, SIMPLE, Layout, TableSpec, enable, install  # noqa: E402
from partitioned_audit.partitioning.maintenance import Maintainer  # noqa: E402
from partitioned_audit.partitioning.ranges import PartitionInfo  # noqa: E402
from partitioned_audit.sql import SQL, ident  # noqa: E402

DB = "dpa_bench_archive"
BATCH = 50_000


def fill(server: Server, layout: Layout, rows: int) -> int:
    """A fresh database whose January 2001 partition holds ``rows`` audit rows, sealed;
    returns the partition's size in PostgreSQL (bytes)."""
    recreate_database(server, DB, "off")
    with connect(server, DB) as conn:
        run(conn, "CREATE TABLE item (id integer PRIMARY KEY, name text, amount numeric, at timestamptz)")
        install(conn.cursor(), layout)
        enable(conn.cursor(), layout, TableSpec("public", "item", ("id",)))
        old = PartitionInfo.create(layout.table, dt.date(2001, 1, 1), dt.date(2001, 2, 1))
        Maintainer(conn, layout).create([old])
        for first in range(1, rows + 1, BATCH):
            last = min(rows, first + BATCH - 1)
            with conn.transaction():
                run(conn, "SELECT set_config('partitioned_audit.context', %s, true)", ['{"user_id": 7}'])
                run(
                    conn,
                    "INSERT INTO item SELECT g, 'name ' || g, g * 1.5, now() FROM generate_series(%s::int, %s::int) g",
                    [first, last],
                )
        # Back in time: the rows move into January 2001 (no seal yet, so nothing is frozen).
        run(conn, "SELECT set_config('partitioned_audit.maintenance', 'on', false)")
        run(
            conn,
            SQL("UPDATE {} SET {} = '2001-01-10'").format(ident(layout.table), ident(layout.time_column)),
        )
        run(conn, "SELECT set_config('partitioned_audit.maintenance', '', false)")
        run(conn, "VACUUM FULL")
        Maintainer(conn, layout).seal()
        (size,) = run(conn, "SELECT pg_total_relation_size(%s)", [old.partition])[0]
        (count,) = run(conn, SQL("SELECT count(*) FROM {}").format(ident(old.partition)))[0]
        assert count == rows, (count, rows)
        return int(size)


_RSS = (
    "import resource, sys; from partitioned_audit.cli import main; rc = main(sys.argv[1:]);"
    " print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(rc)"
)


def archive_once(
    server: Server, layout: Layout, url: str, env: dict[str, str], *extra: str
) -> tuple[float, int]:
    """(seconds, peak RSS in bytes) of one ``archive`` in a process of its own, which
    reports its own peak RSS (ru_maxrss, KiB on Linux) as its last line."""
    started = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _RSS,
            "--dsn",
            server.dsn(DB),
            "--layout",
            layout.name,
            "archive",
            "--older-than",
            "30",
            "--to",
            url,
            "--json",
            *extra,
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    return seconds, int(result.stderr.strip().splitlines()[-1]) * 1024


def archived_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*.parquet"))


def measure(server: Server, rows: int, large: int, rounds: int) -> list[dict[str, Any]]:
    from tests.seaweed import SeaweedFS

    results = []
    seaweed = SeaweedFS()
    seaweed.start()
    try:
        for layout in (SIMPLE, ADVANCED):
            for target in ("file", "s3"):
                times, drops, rss, per_row, pg_row = [], [], [], [], []
                for n in range(rounds):
                    pg_size = fill(server, layout, rows)
                    with tempfile.TemporaryDirectory() as directory:
                        if target == "file":
                            url, env = f"file://{directory}", {}
                        else:
                            bucket = f"bench{layout.name}{n}"
                            seaweed.make_bucket(bucket)
                            url, env = f"s3://{bucket}/audit", seaweed.env()
                        # The copy, checked (the target's end to end), then the drop.
                        seconds, peak = archive_once(server, layout, url, env)
                        if target == "file":
                            per_row.append(archived_bytes(Path(directory)) / rows)
                        drop_s, drop_peak = archive_once(server, layout, url, env, "--drop", "--yes")
                    times.append(seconds)
                    drops.append(drop_s)
                    rss.append(max(peak, drop_peak))
                    pg_row.append(pg_size / rows)
                    say(f"archive {layout.name} {target}: {rows / seconds:,.0f} rows/s")
                results.append(
                    {
                        "layout": layout.name,
                        "target": target,
                        "rows": rows,
                        "rows_per_s": rows / statistics.median(times),
                        "drop_s": statistics.median(drops),
                        "bytes_per_row": statistics.median(per_row) if per_row else None,
                        "pg_bytes_per_row": statistics.median(pg_row),
                        "peak_rss_mib": max(rss) / 2**20,
                    }
                )
        # Memory at a partition ``large / rows`` times larger: one run, file://.
        for layout in (SIMPLE,):
            fill(server, layout, large)
            with tempfile.TemporaryDirectory() as directory:
                seconds, peak = archive_once(server, layout, f"file://{directory}", {})
                results.append(
                    {
                        "layout": layout.name,
                        "target": "file",
                        "rows": large,
                        "rows_per_s": large / seconds,
                        "drop_s": None,
                        "bytes_per_row": archived_bytes(Path(directory)) / large,
                        "pg_bytes_per_row": None,
                        "peak_rss_mib": peak / 2**20,
                    }
                )
                say(
                    f"archive {layout.name} file, {large:,} rows: {large / seconds:,.0f} rows/s, {peak / 2**20:.0f} MiB"
                )
    finally:
        seaweed.remove()
    return results


def report(results: list[dict[str, Any]]) -> str:
    lines = [
        "## Archive",
        "",
        "`partitioned-audit archive` end to end in a process of its own (start-up, read through a"
        " server-side cursor, zstd Parquet, upload, every seal digest recomputed from the batches written,"
        " the object read back for its SHA-256, publish),"
        " medians; then `archive --drop --yes` on the archived partition (the copy checked again, then"
        " retention's own check of the partition's seals inside PostgreSQL, detach, drop)."
        " Targets: at least 50,000 rows/s, at most 80 bytes per archived row.",
        "",
        "| layout | to | rows | rows/s | then --drop | bytes/row archived | bytes/row in PostgreSQL | peak RSS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        archived = f"{r['bytes_per_row']:.1f}" if r["bytes_per_row"] is not None else "-"
        in_pg = f"{r['pg_bytes_per_row']:.0f}" if r["pg_bytes_per_row"] is not None else "-"
        drop = f"{r['drop_s']:.1f} s" if r["drop_s"] is not None else "-"
        lines.append(
            f"| {r['layout']} | {r['target']} | {r['rows']:,} | {r['rows_per_s']:,.0f} | {drop} | {archived}"
            f" | {in_pg} | {r['peak_rss_mib']:.0f} MiB |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    global DB  # noqa: PLW0603 - fill() and archive_once() read it
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--db", default=DB, help=f"the scratch database, dropped and made again (default {DB})"
    )
    args = parser.parse_args(argv)
    DB = args.db
    print(report(measure(get_server(), args.rows, args.large, args.rounds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
