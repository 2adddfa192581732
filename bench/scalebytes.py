"""Bytes per audit row of the scale trail's workload, this project's layouts beside
django-pghistory, every one recording the same transactions.

    python -m bench.scalebytes --rows 1000000
    python -m bench.scalebytes --rows 200000 --only pghistory --only simple

For each variant a new database (``dpa_scalebytes_<variant>`` unless ``--db-prefix`` says
otherwise; dropped first) gets the three
application tables of ``bench/scale.py`` and their auditing: the simple or the advanced
layout as ``bench/scale.py`` installs it, or django-pghistory at its row level (its
default; inserts, updates and deletes, an event table per model, its context table), as its
migrations and pgtrigger's would make them. Then ``scale_fill`` runs until ``--rows`` audit
rows are written, from the same random seed, so every variant records the same statements
in the same transactions: 80 % of them in a request's context of five keys, set as each
project sets its own (``audit_context()``'s ``SET LOCAL`` here; for django-pghistory,
``pghistory.context()``'s two settings, a new context id per transaction, its metadata the
same five keys).

No copies into past months (unlike ``bench/scale.py``): every row is written by the
capture under test, into the current month's partitions. After ``VACUUM ANALYZE`` it
prints, per variant, each relation's size divided by the audit rows (the audited rows, one
per row written: audit rows here, events there), grouped as the trail's heap and indexes
and the context's heap and indexes, and the total of everything. See docs/performance.md,
"Bytes per audit row on the scale workload, beside django-pghistory".
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import psycopg

from bench.run import (
    Server,
    connect,
    get_server,
    install_audit,
    recreate_database,
    run,
    say,
    set_up_pghistory,
)
from bench.scale import (
    BUSIEST,
    BUSIEST_SHARE,
    CONTEXT_JSON,
    CONTEXT_SHARE,
    PAST_MONTHS,
    TABLES,
    USERS,
    fill_procedure,
)
from partitioned_audit import TableSpec, enable, get_layout
from partitioned_audit.sql import SQL, ident

VARIANTS = ("simple", "advanced", "pghistory")
PGHISTORY = "pghistory"
#: What ``pghistory.context()`` sends before each statement of a context: its id and its
#: metadata, both ``SET LOCAL`` (one context per transaction, as one request per transaction).
PGHISTORY_CONTEXT = (
    "PERFORM set_config('pghistory.context_id', gen_random_uuid()::text, true),"
    f" set_config('pghistory.context_metadata', {CONTEXT_JSON}, true);"
)
#: The size of each table (its partitions and their TOAST) and of each of its indexes (their
#: partitions), with the group it counts in; the tables are bound as names.
RELATIONS = """
WITH owner(root, relid, grp) AS (
    SELECT g.name::regclass, t.relid, g.grp
      FROM unnest(%s::text[], %s::text[]) AS g(name, grp),
           LATERAL (SELECT relid FROM pg_partition_tree(g.name::regclass) UNION SELECT g.name::regclass) AS t
)
SELECT o.root::text, o.grp || ' heap',
       sum(pg_relation_size(c.oid) + coalesce(pg_total_relation_size(NULLIF(c.reltoastrelid, 0)), 0))
  FROM owner o JOIN pg_class c ON c.oid = o.relid
 WHERE c.relkind = 'r'
 GROUP BY 1, 2
UNION ALL
SELECT coalesce(pg_partition_root(x.indexrelid), x.indexrelid)::regclass::text, o.grp || ' indexes', sum(pg_relation_size(x.indexrelid))
  FROM owner o JOIN pg_class c ON c.oid = o.relid JOIN pg_index x ON x.indrelid = o.relid
 WHERE c.relkind = 'r'
 GROUP BY 1, 2
"""


def prepare(server: Server, dbname: str, variant: str) -> None:
    """``dbname`` anew, with the application tables and the variant's auditing."""
    recreate_database(server, dbname, "off")
    with connect(server, dbname) as conn:
        run(conn, TABLES)
        if variant == PGHISTORY:
            run(conn, fill_procedure(PGHISTORY_CONTEXT))
            return
        layout = get_layout(variant)
        install_audit(conn, layout, "public", False, past_months=PAST_MONTHS)
        run(conn, fill_procedure())
        with conn.transaction():
            for table in ("scale_customer", "scale_order", "scale_item"):
                enable(conn.cursor(), layout, TableSpec("public", table, ("id",)))


def set_up_django(server: Server, databases: dict[str, str]) -> None:
    import django
    from django.conf import settings

    settings.configure(
        DATABASES={alias: server.django_database(name) for alias, name in databases.items()},
        INSTALLED_APPS=["pgtrigger", "pghistory", "bench.benchapp"],
        USE_TZ=True,
    )
    django.setup()


def groups(variant: str) -> tuple[list[str], list[str]]:
    """The variant's tables and the group each counts in."""
    if variant == PGHISTORY:
        from pghistory.models import Context

        from bench.benchapp.models import SCALE_MODELS

        events = [model.pgh_event_model._meta.db_table for model in SCALE_MODELS]
        return [*events, Context._meta.db_table], ["trail"] * len(events) + ["context"]
    layout = get_layout(variant)
    return [layout.table, layout.context_table], ["trail", "context"]


def measure(conn: psycopg.Connection[Any], variant: str) -> dict[str, Any]:
    tables, kinds = groups(variant)
    trail = [t for t, k in zip(tables, kinds, strict=True) if k == "trail"]
    rows = sum(int(run(conn, SQL("SELECT count(*) FROM {}").format(ident(t)))[0][0]) for t in trail)
    relations = run(conn, RELATIONS, [tables, kinds])
    return {"rows": rows, "relations": relations}


def report(variant: str, measured: dict[str, Any]) -> None:
    rows = measured["rows"]
    by_group: dict[str, int] = {}
    print(f"\n{variant}: {rows:,} audit rows")
    for name, group, size in sorted(measured["relations"], key=lambda r: -r[2]):
        by_group[group] = by_group.get(group, 0) + size
        if size:
            print(f"{size / rows:8.1f}  {group:15}  {name}")
    for group in sorted(by_group):
        print(f"{by_group[group] / rows:8.1f}  {group}")
    print(f"{sum(by_group.values()) / rows:8.1f}  total")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="audit rows to write (default 1,000,000)")
    parser.add_argument("--only", action="append", choices=VARIANTS, help="measure only these (repeatable)")
    parser.add_argument(
        "--db-prefix",
        default="dpa_scalebytes",
        help="each variant's database is PREFIX_<variant> (dropped first)",
    )
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be positive")
    server, variants = get_server(), args.only or list(VARIANTS)
    databases = {variant: f"{args.db_prefix}_{variant}" for variant in variants}
    for variant in variants:
        prepare(server, databases[variant], variant)
    if PGHISTORY in variants:
        set_up_django(server, {"default": databases[PGHISTORY]})
        from bench.benchapp.models import SCALE_MODELS

        set_up_pghistory("default", SCALE_MODELS)
    for variant in variants:
        with connect(server, databases[variant]) as conn:
            run(conn, "SELECT setseed(0.42)")
            run(
                conn,
                "CALL scale_fill(%s, %s, %s, %s, %s)",
                [args.rows, BUSIEST, USERS, CONTEXT_SHARE, BUSIEST_SHARE],
            )
            run(conn, "VACUUM ANALYZE")
            say(f"  {variant}: filled")
            report(variant, measure(conn, variant))
    return 0


if __name__ == "__main__":
    sys.exit(main())
