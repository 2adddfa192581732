"""Where the capture's time goes, measured inside the server.

    python -m bench.inside simple          # or advanced; --rounds 7 --bulk 20000

The shipped capture function of a layout against edited copies of it, each auditing its
own copy of the six-column table, and two references: the table unaudited, and a
row trigger copying the row's typed columns into an unpartitioned table with three B-trees
(what django-pghistory does). A ``DO`` loop runs 2,000 single-row INSERTs, UPDATEs and
DELETEs in one transaction, so the client round trip and the commit drop out; then one
statement of ``--bulk`` rows each. The report gives µs added to the unaudited table: per
statement, the minimum of the rounds (the least disturbed run); per row of the bulk
statements, the median.

``--commit-each`` commits after every statement of the loops (a ``DO`` block run outside a
transaction may ``COMMIT``), so the per-transaction work the loop otherwise does once (the
transaction id, the locks taken and released, the commit record, the cached plans checked
again) is counted in every write, as it is in an application's autocommit ``save()``; the
client round trip still drops out.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import time

from bench.run import ROW_COLUMNS, connect, get_server, install_audit, recreate_database, run
from partitioned_audit import ADVANCED, SIMPLE, TableSpec, enable
from partitioned_audit.ddl import set_maintenance
from partitioned_audit.sql import SQL, ident, literal, render

# Named after DPA_DB_NAME, so that runs on a shared server keep apart.
DB = os.environ.get("DPA_DB_NAME", "dpa") + "_bench_inside"
LOOP = 2_000

#: The shipped row-level capture (``TableSpec.row_level``); "shipped" is the statement level.
ROW_LEVEL = "shipped, row level"
#: Edits of the shipped function by case: (text in it, replacement), applied in order.
EDITS: dict[str, list[tuple[str, str]]] = {
    "returns right after its declarations": [("\nBEGIN\n", "\nBEGIN\n    RETURN NULL;\n")],
    # What a table of built-in types pays where the guard is missing, or for one holding a
    # type another role owns where it is there (see _CASTS_NOTE in layouts.py).
    "without the guard: the types' owners checked": [
        ("_casts_checked boolean := TG_ARGV[3] OPERATOR(pg_catalog.=) 't'", "_casts_checked boolean := false")
    ],
    "with the guard: the casts to json checked": [
        (
            "_casts_checked boolean := TG_ARGV[3] OPERATOR(pg_catalog.=) 't'",
            "_casts_checked boolean := false",
        ),
        ("WHEN TG_ARGV[3] OPERATOR(pg_catalog.=) 'c' THEN", "WHEN true THEN"),
    ],
    "with SET search_path (the first design)": [
        (" SECURITY DEFINER\n", " SECURITY DEFINER\n SET search_path TO 'pg_catalog', 'pg_temp'\n")
    ],
    "into an unpartitioned table, no index": [("INSERT INTO {table}", "INSERT INTO public.sink_plain")],
    "into an unpartitioned table, one B-tree": [("INSERT INTO {table}", "INSERT INTO public.sink_btree")],
    "into a partitioned table, one B-tree": [("INSERT INTO {table}", "INSERT INTO public.sink_part")],
    "into a partitioned table, the shipped indexes but the BRINs": [
        ("INSERT INTO {table}", "INSERT INTO public.sink_no_brin")
    ],
    "into a partitioned table, the shipped indexes but the partial ones": [
        ("INSERT INTO {table}", "INSERT INTO public.sink_no_partial")
    ],
}
#: Edits of the shipped row-level function, as EDITS: where its time per row goes.
ROW_EDITS: dict[str, list[tuple[str, str]]] = {
    "row: returns right after its declarations": [
        ("BEGIN\n    IF TG_OP", "BEGIN\n    RETURN NULL;\n    IF TG_OP")
    ],
    "row: no cast check": [
        ("_casts_checked boolean := TG_ARGV[3] OPERATOR(pg_catalog.=) 't'", "_casts_checked boolean := true")
    ],
    "row: no context read": [
        ("    _context := ", "    IF false THEN _context := "),
        (
            "END);\n    -- The transaction's context row",
            "END); END IF;\n    -- The transaction's context row",
        ),
    ],
    "row: no txid_current()": [("_txid := pg_catalog.txid_current();", "_txid := 1;")],
    "row: into an unpartitioned table, no index": [("INSERT INTO {table}", "INSERT INTO public.sink_plain")],
    "row: into a partitioned table, the shipped indexes but the BRINs": [
        ("INSERT INTO {table}", "INSERT INTO public.sink_no_brin")
    ],
}
#: The partitioned copies of the audit table with some of its indexes, by the indexes left out.
SINKS = {"sink_no_brin": " USING brin ", "sink_no_partial": " WHERE "}

TYPED_COPY = """
CREATE TABLE typed_events (pgh_id bigserial PRIMARY KEY, pgh_created_at timestamptz NOT NULL,
                           pgh_label text NOT NULL, pgh_obj_id bigint, pgh_context_id uuid,
                           id bigint, account integer, amount numeric(12, 2), note text,
                           created timestamptz, flag boolean);
CREATE INDEX ON typed_events (pgh_obj_id);
CREATE INDEX ON typed_events (pgh_context_id);
CREATE FUNCTION typed_copy() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE r t_typed_copy;
BEGIN
    r := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    INSERT INTO typed_events (pgh_created_at, pgh_label, pgh_obj_id, id, account, amount, note, created, flag)
    VALUES (now(), lower(TG_OP), r.id, r.id, r.account, r.amount, r.note, r.created, r.flag);
    RETURN NULL;
END $$;
CREATE TRIGGER typed AFTER INSERT OR UPDATE OR DELETE ON t_typed_copy
    FOR EACH ROW EXECUTE FUNCTION typed_copy();
"""

#: The floor of this project's design, beside the typed copy: a row trigger doing the least
#: a jsonb trail needs (the row as jsonb, its table, key, transaction and operation) with
#: nothing else (no context, no key or mask handling, no check of the types, no ``SECURITY
#: DEFINER``), into the simple layout's partitioned audit table with its indexes, or into an
#: unpartitioned copy of it with one B-tree. Simple layout only.
JSONB_COPIES: dict[str, str | None] = {
    "jsonb copy into the audit table": None,  # the layout's table
    "jsonb copy, unpartitioned, one B-tree": "sink_btree",
}
JSONB_COPY = """
CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE r jsonb;
BEGIN
    IF TG_OP = 'DELETE' THEN r := to_jsonb(OLD); ELSE r := to_jsonb(NEW); END IF;
    INSERT INTO {sink} (object_table, object_schema, object_pk, object_payload,
                        audit_txid_current, audit_operation, session_user_name)
    VALUES (TG_TABLE_NAME, TG_TABLE_SCHEMA, r ->> 'id', r, txid_current(), left(TG_OP, 1), session_user);
    RETURN NULL;
END $$;
CREATE TRIGGER jsonb_copy AFTER INSERT OR UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION {function}();
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("layout", choices=["simple", "advanced"])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--bulk", type=int, default=20_000)
    parser.add_argument(
        "--levels-only",
        action="store_true",
        help="only the shipped capture at both levels and the references, none of the edited copies",
    )
    parser.add_argument(
        "--past-months",
        type=int,
        default=0,
        help="monthly partitions before this month (the row level probes the context table per row)",
    )
    parser.add_argument(
        "--commit-each",
        action="store_true",
        help="commit after every single-row statement (the per-transaction work counted too)",
    )
    parser.add_argument(
        "--only", default="", help="only the edited copies whose case contains this text (e.g. 'row:')"
    )
    args = parser.parse_args()
    layout = SIMPLE if args.layout == "simple" else ADVANCED
    server = get_server()
    recreate_database(server, DB, "off")
    conn = connect(server, DB)
    install_audit(conn, layout, "public", False, past_months=args.past_months)
    for sink in ("sink_plain", "sink_btree"):
        run(
            conn, SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS)").format(ident(sink), ident(layout.table))
        )
    run(
        conn,
        SQL("CREATE TABLE sink_part (LIKE {} INCLUDING DEFAULTS) PARTITION BY RANGE ({})").format(
            ident(layout.table), ident(layout.time_column)
        ),
    )
    run(conn, "CREATE TABLE sink_part_default PARTITION OF sink_part DEFAULT")
    for sink in ("sink_btree", "sink_part"):
        run(conn, SQL("CREATE INDEX ON {} ({}, object_pk)").format(ident(sink), ident(layout.table_column)))
    indexes = run(
        conn, "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = %s", [layout.table]
    )
    for sink, left_out in SINKS.items():
        run(
            conn,
            SQL("CREATE TABLE {} (LIKE sink_part INCLUDING DEFAULTS) PARTITION BY RANGE ({})").format(
                ident(sink), ident(layout.time_column)
            ),
        )
        run(
            conn, SQL("CREATE TABLE {} PARTITION OF {} DEFAULT").format(ident(f"{sink}_default"), ident(sink))
        )
        for (definition,) in indexes:
            if left_out not in definition:
                body = definition.split(" USING ", 1)[1]
                run(conn, SQL("CREATE INDEX ON {} USING " + body).format(ident(sink)))
    shipped = run(conn, "SELECT pg_get_functiondef(%s::regproc)", [f"public.{layout.function}"])[0][0]
    shipped_row = run(conn, "SELECT pg_get_functiondef(%s::regproc)", [f"public.{layout.row_function}"])[0][0]
    table_ref = render(ident("public", layout.table))  # as the engine wrote it into the function
    all_edits = {**EDITS, **ROW_EDITS}
    edits = [] if args.levels_only else [case for case in all_edits if args.only in case]
    floors = list(JSONB_COPIES) if layout is SIMPLE else []
    cases = ["unaudited", "shipped", ROW_LEVEL, *edits, *floors, "typed_copy"]
    # Each case's copy of the table; TYPED_COPY names its own.
    tables = {case: "t_typed_copy" if case == "typed_copy" else f"t_{n}" for n, case in enumerate(cases)}
    for n, case in enumerate(cases):
        table = tables[case]
        run(conn, SQL("CREATE TABLE {} (" + ROW_COLUMNS + ")").format(ident(table)))
        if case == "typed_copy":
            run(conn, TYPED_COPY)
        elif case in floors:
            function, sink = ident(f"jsonb_copy_{n}"), ident(JSONB_COPIES[case] or layout.table)
            run(conn, SQL(JSONB_COPY).format(function=function, sink=sink, table=ident(table)))
        elif case != "unaudited":
            row_level = case == ROW_LEVEL or case in ROW_EDITS
            enable(conn.cursor(), layout, TableSpec("public", table, ("id",), row_level=row_level))
        if case in edits:
            base = layout.row_function if case in ROW_EDITS else layout.function
            function = f"{layout.function}_{n}"
            text = (shipped_row if case in ROW_EDITS else shipped).replace(
                f"public.{base}()", f"public.{function}()"
            )
            for old, new in all_edits[case]:
                old = old.replace("{table}", table_ref)
                assert old in text, (case, old)
                text = text.replace(old, new)
            run(conn, text)
            # Swapped by hand, past the guard (this superuser installed it, and enable()
            # turns the setting off again): every case keeps a guarded install's arguments.
            run(conn, set_maintenance(True))
            for (definition,) in run(
                conn,
                "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = %s::regclass"
                " AND tgname LIKE 'dpa_audit_%%' AND tgname <> 'dpa_audit_key'",
                [table],
            ):
                name = re.search(r"CREATE TRIGGER (\S+)", definition)[1]  # type: ignore[index]
                run(conn, SQL("DROP TRIGGER {} ON {}").format(ident(name), ident(table)))
                edited = re.sub(rf"FUNCTION (public\.)?{base}\(", f"FUNCTION public.{function}(", definition)
                run(conn, edited)
    loops = {
        "I": "INSERT INTO {t} (account, amount, note, created, flag) VALUES (i, 12.34, 'benchmark row', now(), true);",
        "U": "UPDATE {t} SET amount = amount + 1 WHERE id = i;",
        "D": "DELETE FROM {t} WHERE id = i;",
    }
    bulks = {
        "I": "INSERT INTO {t} (account, amount, note, created, flag)"
        " SELECT mod(i, 1000), 12.34, 'benchmark row', now(), true FROM generate_series(1, %s) AS i",
        "U": "UPDATE {t} SET amount = amount + 1",
        "D": "DELETE FROM {t}",
    }
    spent: dict[tuple[str, str], list[float]] = {}
    for r in range(args.rounds):
        for case in cases[r % len(cases) :] + cases[: r % len(cases)]:
            t = ident(tables[case])
            for op, body in loops.items():
                step = SQL(body).format(t=t) + SQL(" COMMIT;" if args.commit_each else "")
                loop = SQL("DO $$ BEGIN FOR i IN 1..{} LOOP {} END LOOP; END $$").format(literal(LOOP), step)
                # (autocommit: the loop is one transaction, or one per statement committing)
                with contextlib.nullcontext() if args.commit_each else conn.transaction():
                    started = time.perf_counter()
                    run(conn, loop)
                    spent.setdefault((case, "1" + op), []).append(
                        (time.perf_counter() - started) / LOOP * 1e6
                    )
            run(conn, SQL("TRUNCATE {} RESTART IDENTITY").format(t))
            # A new session: plpgsql's cached plans of the loops must not serve the bulk statements.
            conn.close()
            conn = connect(server, DB)
            for op, statement in bulks.items():
                started = time.perf_counter()
                run(conn, SQL(statement).format(t=t), [args.bulk] if op == "I" else None)
                spent.setdefault((case, "B" + op), []).append(
                    (time.perf_counter() - started) / args.bulk * 1e6
                )
            run(conn, SQL("TRUNCATE {} RESTART IDENTITY").format(t))
        # Every round writes into empty audit tables.
        run(
            conn,
            SQL("TRUNCATE {}").format(
                SQL(", ").join(
                    ident(name)
                    for name in (
                        layout.table,
                        "sink_plain",
                        "sink_btree",
                        "sink_part",
                        "typed_events",
                        *SINKS,
                    )
                )
            ),
        )
    keys = ["1I", "1U", "1D", "BI", "BU", "BD"]
    each = ", each committed" if args.commit_each else ""
    print(
        f"{layout.name}: µs added to the unaudited table, per statement of one row{each} (min of {args.rounds})"
    )
    print(f"and per row of one {args.bulk:,}-row statement (median)\n")
    print("| case | " + " | ".join(("one row " if k[0] == "1" else "bulk ") + k[1] for k in keys) + " |")
    print("|---|" + "---|" * len(keys))
    for case in cases[1:]:
        cells = []
        for k in keys:
            pick = min if k[0] == "1" else statistics.median
            cells.append(f"{pick(spent[case, k]) - pick(spent['unaudited', k]):.1f}")
        print(f"| {case} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
