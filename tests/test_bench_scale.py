"""The scale bench's generator (bench/scale.py): its copies of the seed are the same trail,
read through the view, with the context table.

The generator runs as the bench runs it, in a process of its own (it speaks psycopg 3,
whatever driver the suite runs on), on the suite's server; each test fills a small database
beside the suite's and drops it after. The checks read it through the suite's driver.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as dj_settings

from partitioned_audit import ADVANCED, SIMPLE, Layout
from partitioned_audit.layouts import CONTEXT_ID_COLUMN
from partitioned_audit.sql import SQL, Composable, ident, render
from tests.engine_db import connect

ROOT = Path(__file__).resolve().parents[1]
SEED, COPIES = 600, 3


def drop_databases(*names: str) -> None:
    admin = connect("postgres", autocommit=True)
    try:
        cursor = admin.cursor()
        for name in names:
            cursor.execute(render(SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident(name)), cursor))
    finally:
        admin.close()


def bench(arguments: list[str]) -> subprocess.CompletedProcess[str]:
    """``python`` with ``arguments`` in the bench's environment: psycopg 3 on the suite's server."""
    env = {**os.environ, "DATABASE_URL": dj_settings.SERVER.url, "DPA_DRIVER": "psycopg", "DPA_EMBEDDED": ""}
    return subprocess.run(
        [sys.executable, *arguments],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def scale_db() -> Iterator[str]:
    name = f"{dj_settings.DATABASES['default']['NAME']}_scale"
    yield name
    drop_databases(name)


def fill(db: str, layout: Layout, before: str = "") -> subprocess.CompletedProcess[str]:
    """``python -m bench.scale`` for ``SEED * COPIES`` rows from a ``SEED``-row seed, after
    running ``before`` in the generator's process."""
    code = f"import sys\nfrom bench import scale\n{before}\nsys.exit(scale.main(sys.argv[1:]))"
    arguments = ["--rows", str(SEED * COPIES), "--seed-rows", str(SEED), "--layout", layout.name, "--db", db]
    return bench(["-c", code, *arguments])


def query(db: str, statement: Composable) -> list[tuple[Any, ...]]:
    conn = connect(db)
    try:
        cursor = conn.cursor()
        cursor.execute(render(statement, cursor))
        return [tuple(row) for row in cursor.fetchall()]
    finally:
        conn.close()


@pytest.mark.parametrize("layout", [SIMPLE, ADVANCED], ids=lambda layout: layout.name)
def test_each_copy_shows_the_seeds_contexts_through_the_view(scale_db: str, layout: Layout) -> None:
    done = fill(scale_db, layout)
    assert done.returncode == 0, done.stderr
    # Each audit row as the view shows it: its transaction id, login role and context.
    rows = query(
        scale_db,
        SQL("SELECT {}, session_user_name, audit_context FROM {} ORDER BY 1").format(
            ident(layout.txid_column), ident("public", layout.view)
        ),
    )
    assert len(rows) == SEED * COPIES
    # Every captured row shows the login role, context or not (on its context row, or on
    # the row itself for an advanced row written outside any context).
    assert {login for _, login, _ in rows} == {dj_settings.SERVER.django_database()["USER"]}
    # The copies are consecutive in transaction ids: split the rows into the three copies.
    copies = [rows[i * SEED : (i + 1) * SEED] for i in range(COPIES)]
    with_context = [[c for _, _, c in copy if c is not None] for copy in copies]
    assert with_context[0], "the seed wrote no context"
    assert len({len(c) for c in with_context}) == 1
    # The busiest user keeps the same rows in each copy; the light users are rotated, each
    # keeping its share; each copy has requests of its own.
    busiest = [sum(c["user_id"] == 1 for c in copy) for copy in with_context]
    assert len(set(busiest)) == 1 and busiest[0] > 0
    shares = [sorted(Counter(c["user_id"] for c in copy).values()) for copy in with_context]
    assert shares[0] == shares[1] == shares[2]
    assert [c["user_id"] for c in with_context[0]] != [c["user_id"] for c in with_context[1]]
    assert all(c["username"] == f"user{c['user_id']}" for copy in with_context for c in copy)
    requests = [{c["request_id"] for c in copy} for copy in with_context]
    assert not requests[0] & requests[1] and not requests[1] & requests[2]
    # A context row for each copied transaction's context, none left over.
    contexts = query(scale_db, SQL("SELECT count(*) FROM {}").format(ident("public", layout.context_table)))
    referenced = query(
        scale_db,
        SQL("SELECT count(DISTINCT {}) FROM {}").format(
            ident(CONTEXT_ID_COLUMN), ident("public", layout.table)
        ),
    )
    assert contexts == referenced


def test_a_copy_that_is_not_the_seeds_stops_the_fill(scale_db: str) -> None:
    # A context copied without its user's rotation: the copies then disagree with the seed.
    done = fill(
        scale_db,
        SIMPLE,
        before="scale.SHIFT_CONTEXT = scale.SHIFT_CONTEXT.replace(\"'user_id', u,\", \"'user_id', 0,\")",
    )
    assert done.returncode != 0
    assert "the copies are not the seed's" in done.stderr, done.stderr


@pytest.fixture
def bytes_prefix() -> Iterator[str]:
    prefix = f"{dj_settings.DATABASES['default']['NAME']}_sb"
    yield prefix
    drop_databases(*(f"{prefix}_{layout.name}" for layout in (SIMPLE, ADVANCED)))


def test_every_variant_of_the_bytes_bench_records_the_same_transactions(bytes_prefix: str) -> None:
    # bench.scalebytes compares variants that must have written the same rows: the seeded
    # workload may draw nothing at random that the server's plans or timing change.
    arguments = ["--rows", "2000", "--only", "simple", "--only", "advanced", "--db-prefix", bytes_prefix]
    done = bench(["-m", "bench.scalebytes", *arguments])
    assert done.returncode == 0, done.stderr
    printed = dict(line.split(": ") for line in done.stdout.splitlines() if line.endswith(" audit rows"))
    assert set(printed) == {"simple", "advanced"}, done.stdout
    application = SQL(
        "SELECT md5(string_agg(t::text, ',' ORDER BY t.id)) FROM (SELECT id, status, total, note FROM {}) t"
    )
    contents, audited = [], []
    for layout in (SIMPLE, ADVANCED):
        db = f"{bytes_prefix}_{layout.name}"
        contents.append(query(db, application.format(ident("scale_order"))))
        (rows,) = query(db, SQL("SELECT count(*) FROM {}").format(ident("public", layout.table)))
        audited.append(rows[0])
        assert printed[layout.name] == f"{rows[0]:,} audit rows"
    assert contents[0] == contents[1]
    assert audited[0] == audited[1] >= 2000
