"""The scale bench's generator (bench/scale.py): its copies of the seed are the same trail,
read through the view, with the context table.

Each test fills a small database of its own (the generator drops and creates it) beside the
suite's, and drops it after.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.conf import settings as dj_settings

from bench import scale
from bench.run import connect, run
from partitioned_audit import ADVANCED, SIMPLE, Layout
from partitioned_audit.layouts import CONTEXT_ID_COLUMN
from partitioned_audit.sql import SQL, ident

SEED, COPIES = 600, 3


@pytest.fixture
def scale_db() -> Iterator[str]:
    name = f"{dj_settings.DATABASES['default']['NAME']}_scale"
    yield name
    with connect(dj_settings.SERVER, "postgres") as admin:
        run(admin, SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident(name)))


def view_rows(conn: psycopg.Connection[Any], layout: Layout) -> list[tuple[Any, ...]]:
    """Each audit row as the view shows it: its transaction id, login role and context."""
    return run(
        conn,
        SQL("SELECT {}, session_user_name, audit_context FROM {} ORDER BY 1").format(
            ident(layout.txid_column), ident("public", layout.view)
        ),
    )


@pytest.mark.parametrize("layout", [SIMPLE, ADVANCED], ids=lambda layout: layout.name)
def test_each_copy_shows_the_seeds_contexts_through_the_view(scale_db: str, layout: Layout) -> None:
    scale.fill(dj_settings.SERVER, scale_db, layout, SEED * COPIES, SEED)
    with connect(dj_settings.SERVER, scale_db) as conn:
        rows = view_rows(conn, layout)
        contexts = run(conn, SQL("SELECT count(*) FROM {}").format(ident("public", layout.context_table)))
        referenced = run(
            conn,
            SQL("SELECT count(DISTINCT {}) FROM {}").format(
                ident(CONTEXT_ID_COLUMN), ident("public", layout.table)
            ),
        )
    assert len(rows) == SEED * COPIES
    # Every captured row has a context row: the login role, context or not.
    assert {login for _, login, _ in rows} == {dj_settings.SERVER.django_database()["USER"]}
    # The copies are consecutive in transaction ids: split the rows into the three copies.
    copies = [rows[i * SEED : (i + 1) * SEED] for i in range(COPIES)]
    with_context = [[c for _, _, c in copy if c is not None] for copy in copies]
    assert with_context[0], "the seed wrote no context"
    assert len({len(c) for c in with_context}) == 1
    # The busiest user keeps the same rows in each copy; the light users are rotated, each
    # keeping its share; each copy has requests of its own.
    busiest = [sum(c["user_id"] == scale.BUSIEST for c in copy) for copy in with_context]
    assert len(set(busiest)) == 1 and busiest[0] > 0
    shares = [sorted(Counter(c["user_id"] for c in copy).values()) for copy in with_context]
    assert shares[0] == shares[1] == shares[2]
    assert [c["user_id"] for c in with_context[0]] != [c["user_id"] for c in with_context[1]]
    assert all(c["username"] == f"user{c['user_id']}" for copy in with_context for c in copy)
    requests = [{c["request_id"] for c in copy} for copy in with_context]
    assert not requests[0] & requests[1] and not requests[1] & requests[2]
    # A context row for each copied transaction's context, none left over.
    assert contexts == referenced


def test_a_copy_that_is_not_the_seeds_stops_the_fill(scale_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A context copied without its user's rotation: the copies then disagree with the seed.
    monkeypatch.setattr(scale, "SHIFT_CONTEXT", scale.SHIFT_CONTEXT.replace("'user_id', u,", "'user_id', 0,"))
    with pytest.raises(RuntimeError, match="the copies are not the seed's"):
        scale.fill(dj_settings.SERVER, scale_db, SIMPLE, SEED * COPIES, SEED)
