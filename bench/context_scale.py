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
import datetime as dt
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
        run(conn, "VACUUM ANALYZE")


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
        contexts = getattr(layout, "context_table", None)
        if contexts:
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
    select = ", ".join(f"avg(pg_column_size({c}))::numeric(8,1)" for c in columns)
    values = run(
        conn, SQL("SELECT " + select + " FROM {} TABLESAMPLE SYSTEM (2)").format(ident(schema, layout.table))
    )[0]
    print("  columns: " + ", ".join(f"{c} {v}" for c, v in zip(columns, values, strict=True)))


def timed(conn: Any, sql: str, params: Any = None, repeat: int = 15) -> tuple[float, float]:
    """Median wall time (ms) as the client sees it, and median planning time."""
    walls, plans = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        run(conn, sql, params)
        walls.append((time.perf_counter() - started) * 1000)
        plan = run(conn, "EXPLAIN (ANALYZE, SUMMARY, FORMAT JSON) " + sql, params)[0][0][0]
        plans.append(plan["Planning Time"])
    return statistics.median(walls), statistics.median(plans)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=["fill", "measure"])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    if args.action == "fill":
        fill(args.rows)
        return
    with connect(get_server(), DB) as conn:
        for layout in (SIMPLE, ADVANCED):
            sizes(conn, layout, SCHEMA[layout.name])
            reads(conn, layout, SCHEMA[layout.name])


def reads(conn: Any, layout: Layout, schema: str) -> None:
    """The reads users run, as the read models send them, with the server's settings."""
    view = ident(schema, layout.view)
    key, time_column = ("id" if layout is SIMPLE else "event_id"), layout.time_column
    light = run(
        conn,
        SQL(
            "SELECT (audit_context ->> 'user_id') FROM {} WHERE audit_context ? 'user_id'"
            " GROUP BY 1 ORDER BY count(*), 1 LIMIT 1 OFFSET 500"
        ).format(view),
    )[0][0]
    request = run(
        conn,
        SQL(
            "SELECT audit_context ->> 'request_id' FROM {} WHERE audit_context IS NOT NULL"
            " ORDER BY {} DESC LIMIT 1 OFFSET 5000"
        ).format(view, ident(key)),
    )[0][0]
    obj = run(
        conn,
        SQL("SELECT object_pk FROM {} WHERE {} = 'item' ORDER BY {} DESC LIMIT 1 OFFSET 7000").format(
            ident(schema, layout.table), ident(layout.table_column), ident(layout.event_column)
        ),
    )[0][0]
    for label, sql in context_reads(layout, schema, view, key, time_column).items():
        for who, value in (("busiest user", "1"), ("light user", str(light)), ("request", request)):
            if (who == "request") != ("request" in label):
                continue
            wall, plan = timed(conn, sql, [value])
            print(f"  {label}, {who}: {wall:.2f} ms (planning {plan:.2f} ms)")
    history = SQL(
        "SELECT * FROM {} WHERE {} = 'item' AND object_schema = %s AND object_pk = %s ORDER BY {} LIMIT 100"
    ).format(view, ident(layout.table_column), ident(key))
    if layout is ADVANCED:
        history = SQL(
            "SELECT * FROM {} WHERE table_name = 'item' AND schema_name = %s AND object_pk = %s ORDER BY event_id LIMIT 100"
        ).format(view)
    wall, plan = timed(conn, history.as_string(conn), [schema, obj])
    print(f"  history of one object: {wall:.2f} ms (planning {plan:.2f} ms)")


def context_reads(layout: Layout, schema: str, view: Any, key: str, time_column: str) -> dict[str, str]:
    """What ``filter_context(k=v).order_by(...)[:100]`` sends, by read."""
    table = ident(schema, layout.table)
    reads = {}
    for name, param in (("user_id", "%s"), ("request_id", "%s")):
        both = f"(audit_context @> jsonb_build_object('{name}', {param}::text) OR audit_context @> jsonb_build_object('{name}', ({param})::text::jsonb))"
        if name == "request_id":
            both = f"audit_context @> jsonb_build_object('{name}', {param}::text)"
        heads = f"jsonb_typeof(audit_context) = 'object' AND {both.replace(param, '$1')}"
        _ = heads
        reads[f"filter_context({name}=) newest 100 by pk" + (" request" if name == "request_id" else "")] = (
            SQL(
                "WITH p AS (SELECT %s AS v) SELECT * FROM {view}, p WHERE "
                + both.replace(param, "p.v")
                + " AND {txid} IN (SELECT {txid} FROM {table}, p WHERE jsonb_typeof(audit_context) = 'object' AND "
                + both.replace(param, "p.v")
                + ") AND {time} IN (SELECT {time} FROM {table}, p WHERE jsonb_typeof(audit_context) = 'object' AND "
                + both.replace(param, "p.v")
                + ") ORDER BY {key} DESC LIMIT 100"
            )
            .format(
                view=view,
                table=table,
                txid=ident(layout.txid_column),
                time=ident(time_column),
                key=ident(key),
            )
            .as_string(None)
        )
    return reads


if __name__ == "__main__":
    main()
