"""Where the bytes and the time of the audit context go, at millions of audit rows.

    python -m bench.context_scale fill --rows 1000000      # both layouts, through the capture
    python -m bench.context_scale measure                  # bytes per column and index, reads

``fill`` writes rows through the real capture in real transactions (a procedure that
commits after each one): 80 % of the transactions inside a five-key request context, a
user among 1,000 per context, one of them behind 5 % of the transactions; 70 % of the
transactions run one statement, 20 % two, 10 % three; a statement changes one row, one in
twenty ten rows. Then it spreads the transactions over 13 monthly partitions (a transaction
keeps its own time). ``measure`` reports bytes per audit row by column and by index, and
the medians of the reads that users run (``filter_context()`` newest first, one object's
history), with the server's default settings.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from bench.run import ROW_COLUMNS, connect, get_server, install_audit, recreate_database, run
from partitioned_audit import ADVANCED, SIMPLE, Layout, TableSpec, enable
from partitioned_audit.layouts import set_maintenance
from partitioned_audit.sql import SQL, ident

DB = "dpa_ctx_bench"
SCHEMA = {"simple": "public", "advanced": "adv"}

GENERATE = """
CREATE OR REPLACE PROCEDURE {schema}.dpa_fill(transactions integer, seed double precision)
LANGUAGE plpgsql AS $$
DECLARE
    u integer; statements integer; r double precision; top bigint; target bigint;
BEGIN
    PERFORM setseed(seed);
    SELECT max(id) INTO top FROM {item};
    FOR i IN 1..transactions LOOP
        IF random() < 0.8 THEN
            u := CASE WHEN random() < 0.05 THEN 1 ELSE 2 + floor(random() * 999)::integer END;
            PERFORM set_config('partitioned_audit.context', json_build_object(
                'user_id', u, 'username', 'user' || u, 'method', 'POST',
                'path', '/orders/' || (i % 5000) || '/', 'request_id', md5(i::text || seed::text))::text, true);
        END IF;
        r := random();
        statements := CASE WHEN r < 0.7 THEN 1 WHEN r < 0.9 THEN 2 ELSE 3 END;
        FOR s IN 1..statements LOOP
            r := random();
            target := 1 + floor(random() * top)::bigint;  -- a variable: random() in WHERE is per row
            IF r < 0.40 THEN
                INSERT INTO {item} (account, amount, note, created, flag)
                VALUES (i % 1000, 12.34, 'order line ' || i, now(), true) RETURNING id INTO top;
            ELSIF r < 0.90 THEN
                UPDATE {item} SET amount = amount + 1, note = 'changed in ' || i
                 WHERE id = target;
            ELSIF r < 0.95 THEN
                DELETE FROM {item} WHERE id = target;
            ELSE
                UPDATE {item} SET flag = NOT flag WHERE id BETWEEN target AND target + 9;
            END IF;
        END LOOP;
        COMMIT;
    END LOOP;
END
$$
"""


def fill(rows: int) -> None:
    server = get_server()
    recreate_database(server, DB, "off")
    with connect(server, DB) as conn:
        for layout in (SIMPLE, ADVANCED):
            schema = SCHEMA[layout.name]
            run(conn, SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident(schema)))
            install_audit(conn, layout, schema, False, past_months=12)
            item = ident(schema, "item")
            run(conn, SQL("CREATE TABLE {} (" + ROW_COLUMNS + ")").format(item))
            run(
                conn,
                SQL(
                    "INSERT INTO {} (account, amount, note, created, flag)"
                    " SELECT i % 1000, 1, 'order line', now(), true FROM generate_series(1, 100000) i"
                ).format(item),
            )
            enable(conn.cursor(), layout, TableSpec(schema, "item", ("id",)), schema=schema)
            run(conn, SQL(GENERATE).format(schema=ident(schema), item=item))
            started, batch, seed = time.perf_counter(), 20_000, 0.1
            while count(conn, layout, schema) < rows:
                run(conn, SQL("CALL {}.dpa_fill(%s, %s)").format(ident(schema)), [batch, seed])
                seed += 0.01
                print(
                    f"{layout.name}: {count(conn, layout, schema):,} rows, {time.perf_counter() - started:.0f} s"
                )
            spread(conn, layout, schema)
        # The spread moved rows between partitions: compact them, as a trail written in
        # order would be.
        run(conn, "VACUUM FULL")
        run(conn, "ANALYZE")


def count(conn: Any, layout: Layout, schema: str) -> int:
    return int(run(conn, SQL("SELECT count(*) FROM {}").format(ident(schema, layout.table)))[0][0])


def spread(conn: Any, layout: Layout, schema: str) -> None:
    """Move each transaction back by 0 to 12 months (its txid decides), rows and context alike."""
    time_column = ident(layout.time_column)
    shift = SQL("(({} % 13) * interval '1 month')").format(ident(layout.txid_column))
    with conn.transaction():
        run(conn, set_maintenance(True))
        run(conn, "SET LOCAL session_replication_role = replica")  # no append-only trigger
        run(
            conn,
            SQL("UPDATE {} SET {} = {} - {} WHERE {} % 13 <> 0").format(
                ident(schema, layout.table), time_column, time_column, shift, ident(layout.txid_column)
            ),
        )
        contexts = layout.context_table
        if run(conn, "SELECT to_regclass(%s) IS NOT NULL", [f"{schema}.{contexts}"])[0][0]:
            run(
                conn,
                SQL(
                    "UPDATE {} SET created = created - ((txid % 13) * interval '1 month') WHERE txid % 13 <> 0"
                ).format(ident(schema, contexts)),
            )


def sizes(conn: Any, layout: Layout, schema: str) -> None:
    rows = count(conn, layout, schema)
    print(f"\n== {layout.name}: {rows:,} audit rows")
    parents = [layout.table]
    if run(conn, "SELECT to_regclass(%s) IS NOT NULL", [f"{schema}.{layout.context_table}"])[0][0]:
        parents.append(layout.context_table)
    total = 0
    for parent in parents:
        heap = run(
            conn,
            "SELECT coalesce(sum(pg_table_size(i.inhrelid)), 0) FROM pg_inherits i WHERE i.inhparent = %s::regclass",
            [f"{schema}.{parent}"],
        )[0][0]
        print(f"  {parent} heap (with TOAST): {heap / rows:.1f} B/row")
        total += heap
        for name, size in run(
            conn,
            "SELECT pi.inhparent::regclass::text, sum(pg_relation_size(pi.inhrelid))"
            "  FROM pg_inherits pi JOIN pg_index x ON x.indexrelid = pi.inhrelid"
            "  JOIN pg_inherits pt ON pt.inhrelid = x.indrelid"
            " WHERE pt.inhparent = %s::regclass GROUP BY 1 ORDER BY 1",
            [f"{schema}.{parent}"],
        ):
            print(f"  index {name}: {size / rows:.1f} B/row")
            total += size
    print(f"  total: {total / rows:.1f} B/row")
    columns = [
        c
        for (c,) in run(
            conn,
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            [f"{schema}.{layout.table}"],
        )
    ]
    select = SQL(", ").join(SQL("avg(pg_column_size({}))::numeric(8,1)").format(ident(c)) for c in columns)
    values = run(
        conn, SQL("SELECT {} FROM {} TABLESAMPLE SYSTEM (2)").format(select, ident(schema, layout.table))
    )[0]
    print("  columns: " + ", ".join(f"{c} {v}" for c, v in zip(columns, values, strict=True)))


def orm() -> Any:
    """Django set up on ``DB`` (both layouts' schemas on the search path): the read models."""
    import os

    import django
    from django.conf import settings

    os.environ["DPA_DB_NAME"] = DB
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
    django.setup()
    settings.DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c search_path=public,adv"
    from django_partitioned_audit.models import AdvancedAuditEntry, SimpleAuditEntry

    return {"simple": SimpleAuditEntry, "advanced": AdvancedAuditEntry}


def median_ms(call: Any, repeat: int = 21) -> float:
    call()  # warm up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def server_ms(qs: Any) -> tuple[float, float]:
    """Median execution and planning time (ms) of ``qs``'s SQL, from EXPLAIN ANALYZE."""
    from django.db import connection

    sql, params = qs.query.sql_with_params()
    executions, plans = [], []
    with connection.cursor() as cursor:
        for _ in range(7):
            cursor.execute("EXPLAIN (ANALYZE, SUMMARY, FORMAT JSON) " + sql, params)
            plan = cursor.fetchone()[0]
            plan = json.loads(plan) if isinstance(plan, str) else plan
            executions.append(plan[0]["Execution Time"])
            plans.append(plan[0]["Planning Time"])
    return statistics.median(executions), statistics.median(plans)


def reads(conn: Any, layout: Layout, schema: str, model: Any) -> None:
    """The reads users run, through the read models, with the server's settings."""
    contexts = ident(schema, layout.context_table)
    light = run(
        conn,
        SQL(
            "SELECT context ->> 'user_id' FROM {} WHERE context ? 'user_id'"
            " GROUP BY 1 ORDER BY count(*), 1 LIMIT 1 OFFSET 500"
        ).format(contexts),
    )[0][0]
    request = run(
        conn,
        SQL(
            "SELECT context ->> 'request_id' FROM {} WHERE context IS NOT NULL ORDER BY context_id DESC LIMIT 1 OFFSET 5000"
        ).format(contexts),
    )[0][0]
    obj = run(
        conn,
        SQL("SELECT object_pk FROM {} ORDER BY {} DESC LIMIT 1 OFFSET 7000").format(
            ident(schema, layout.table), ident(layout.event_column)
        ),
    )[0][0]
    objects = model.objects.all()
    table = "table_name" if layout is ADVANCED else "object_table"
    cases = {
        "filter_context(user_id=busiest).newest_first()[:100]": objects.filter_context(
            user_id=1
        ).newest_first()[:100],
        "filter_context(user_id=light).newest_first()[:100]": objects.filter_context(
            user_id=int(light)
        ).newest_first()[:100],
        "filter_context(user_id=busiest).order_by('-pk')[:100]": objects.filter_context(user_id=1).order_by(
            "-pk"
        )[:100],
        "filter_context(user_id=light).order_by('-pk')[:100]": objects.filter_context(
            user_id=int(light)
        ).order_by("-pk")[:100],
        "filter_context(request_id=...).order_by('-pk')[:100]": objects.filter_context(
            request_id=request
        ).order_by("-pk")[:100],
        "one object's entries, first page": objects.filter(**{table: "item"}, object_pk=obj).order_by("pk")[
            :100
        ],
    }
    for label, qs in cases.items():
        wall = median_ms(lambda qs=qs: list(qs.all()))
        execution, planning = server_ms(qs)
        print(f"  {label}: ORM {wall:.2f} ms, SQL {execution:.2f} ms + planning {planning:.2f} ms")


def main() -> None:
    global DB  # noqa: PLW0603 - one database per run
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=["fill", "measure"])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--db", default=DB)
    args = parser.parse_args()
    DB = args.db
    if args.action == "fill":
        fill(args.rows)
        return
    models = orm()
    with connect(get_server(), DB) as conn:
        for layout in (SIMPLE, ADVANCED):
            sizes(conn, layout, SCHEMA[layout.name])
            reads(conn, layout, SCHEMA[layout.name], models[layout.name])


if __name__ == "__main__":
    main()
