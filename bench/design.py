"""The experiments behind the trigger design: what each part of capturing a change costs.

    python -m bench.design [--seconds 3] [--rounds 3]
    python -m bench.design --update-diff [--seconds 6] [--rounds 5] [--rows 200000]

Single-row INSERTs through pgbench into tables that differ only in how (or whether) the
insert is recorded, interleaved over rounds; ratios are against the unaudited table.

``--update-diff`` compares shapes of the advanced layout's UPDATE capture (how the old and
new rows are paired and their changed fields found) on single-row and bulk UPDATEs; see
``DIFF_SHAPES``. The database is ``$DPA_BENCH_DB`` with ``_design`` appended (default
``dpa_bench_design``).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.run import (  # bench.run puts the test project on the path first
    INSERT_ROWS,
    ROW_COLUMNS,
    connect,
    get_server,
    install_audit,
    pgbench_binary,
    recreate_database,
    run,
    say,
)
from partitioned_audit import ADVANCED, SIMPLE, TableSpec, enable
from partitioned_audit.sql import SQL, ident

DB = os.environ.get("DPA_BENCH_DB", "dpa_bench") + "_design"
BULK_ROWS = 50_000

MINIMAL_INSERT = """
    INSERT INTO public.audit_simple (object_table, object_schema, object_pk, object_payload,
                                     audit_txid_current, audit_operation)
    SELECT TG_TABLE_NAME, TG_TABLE_SCHEMA, r.j ->> 'id', r.j, txid_current(), 'I'
      FROM (SELECT to_jsonb(t) AS j FROM dpa_new AS t) AS r;"""

#: name -> (what it shows, SQL creating its function and trigger on table {t}, or None).
CASES: dict[str, tuple[str, str | None]] = {
    "baseline": ("no trigger", None),
    "empty_statement": (
        "statement trigger with a transition table, empty function",
        "CREATE FUNCTION {t}_f() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$;"
        " CREATE TRIGGER x AFTER INSERT ON {t} REFERENCING NEW TABLE AS dpa_new"
        " FOR EACH STATEMENT EXECUTE FUNCTION {t}_f()",
    ),
    "empty_definer": (
        "same, SECURITY DEFINER with a fixed search_path",
        "CREATE FUNCTION {t}_f() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER"
        " SET search_path = pg_catalog, pg_temp AS $$BEGIN RETURN NULL; END$$;"
        " CREATE TRIGGER x AFTER INSERT ON {t} REFERENCING NEW TABLE AS dpa_new"
        " FOR EACH STATEMENT EXECUTE FUNCTION {t}_f()",
    ),
    "lower_bound": ("the statement itself copies its row as jsonb into an unindexed table (a CTE)", None),
    "minimal_plain": (
        "statement trigger, minimal function, into an unindexed unpartitioned table",
        "CREATE TABLE {t}_sink (LIKE public.audit_simple INCLUDING DEFAULTS);"
        " CREATE FUNCTION {t}_f() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN"
        + MINIMAL_INSERT.replace("public.audit_simple", "public.{t}_sink")
        + " RETURN NULL; END$$;"
        " CREATE TRIGGER x AFTER INSERT ON {t} REFERENCING NEW TABLE AS dpa_new"
        " FOR EACH STATEMENT EXECUTE FUNCTION {t}_f()",
    ),
    "minimal_statement": (
        "statement trigger, minimal function, into the audit table",
        "CREATE FUNCTION {t}_f() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN"
        + MINIMAL_INSERT
        + " RETURN NULL; END$$;"
        " CREATE TRIGGER x AFTER INSERT ON {t} REFERENCING NEW TABLE AS dpa_new"
        " FOR EACH STATEMENT EXECUTE FUNCTION {t}_f()",
    ),
    "minimal_row": (
        "row trigger, minimal function, into the audit table",
        "CREATE FUNCTION {t}_f() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN"
        " INSERT INTO public.audit_simple (object_table, object_schema, object_pk, object_payload,"
        " audit_txid_current, audit_operation) VALUES (TG_TABLE_NAME, TG_TABLE_SCHEMA, NEW.id::text,"
        " to_jsonb(NEW), txid_current(), 'I'); RETURN NULL; END$$;"
        " CREATE TRIGGER x AFTER INSERT ON {t} FOR EACH ROW EXECUTE FUNCTION {t}_f()",
    ),
    "json_arguments": (
        "minimal function, SECURITY DEFINER, JSON trigger arguments parsed by subqueries",
        "CREATE FUNCTION {t}_f() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER"
        " SET search_path = pg_catalog, pg_temp AS $$ DECLARE"
        " _pk text[] := ARRAY(SELECT jsonb_array_elements_text(TG_ARGV[0]::jsonb));"
        " _excluded text[] := ARRAY(SELECT jsonb_array_elements_text(TG_ARGV[1]::jsonb));"
        " _masked text[] := ARRAY(SELECT jsonb_array_elements_text(TG_ARGV[2]::jsonb));"
        " BEGIN" + MINIMAL_INSERT + " RETURN NULL; END$$;"
        " CREATE TRIGGER x AFTER INSERT ON {t} REFERENCING NEW TABLE AS dpa_new"
        """ FOR EACH STATEMENT EXECUTE FUNCTION {t}_f('["id"]', '[]', '[]')""",
    ),
    "text_arguments": (
        "minimal function, SECURITY DEFINER, text[] trigger arguments (a cast, no query)",
        "CREATE FUNCTION {t}_f() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER"
        " SET search_path = pg_catalog, pg_temp AS $$ DECLARE"
        " _pk text[] := TG_ARGV[0]::text[]; _excluded text[] := TG_ARGV[1]::text[];"
        " _masked text[] := TG_ARGV[2]::text[];"
        " BEGIN" + MINIMAL_INSERT + " RETURN NULL; END$$;"
        " CREATE TRIGGER x AFTER INSERT ON {t} REFERENCING NEW TABLE AS dpa_new"
        """ FOR EACH STATEMENT EXECUTE FUNCTION {t}_f('{{"id"}}', '{{}}', '{{}}')""",
    ),
    "shipped": ("the shipped simple layout (text[] arguments, masking, context)", None),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--update-diff", action="store_true", help="compare the advanced UPDATE capture's diff shapes"
    )
    parser.add_argument("--rows", type=int, default=200_000, help="rows of the bulk UPDATE (--update-diff)")
    parser.add_argument(
        "--shapes",
        nargs="+",
        choices=list(DIFF_SHAPES),
        default=list(DIFF_SHAPES),
        help="the shapes --update-diff measures (the shipped one always)",
    )
    args = parser.parse_args(argv)
    if args.update_diff:
        return update_diff(args.seconds, args.rounds, args.rows, args.shapes)
    server = get_server()
    recreate_database(server, DB, "off")
    scripts = Path(tempfile.mkdtemp(prefix="dpa-design-"))
    with connect(server, DB) as conn:
        install_audit(conn, SIMPLE, "public", False, past_months=0)
        run(conn, "CREATE TABLE lower_bound_sink (object_table text, object_pk text, payload jsonb)")
        for name, (_, ddl) in CASES.items():
            run(conn, SQL("CREATE TABLE {} (" + ROW_COLUMNS + ")").format(ident(name)))
            if ddl:
                run(conn, ddl.format(t=name))
            if name == "shipped":
                enable(conn.cursor(), SIMPLE, TableSpec("public", name, ("id",)))
            run(conn, INSERT_ROWS.format(ident(name)), [10])  # warm the plans and the catalog
            statement = (
                "WITH x AS (INSERT INTO lower_bound (account, amount, note, created, flag)"
                " VALUES (1, 12.34, 'benchmark row', now(), true) RETURNING *)"
                " INSERT INTO lower_bound_sink SELECT 'lower_bound', id::text, to_jsonb(x) FROM x;"
                if name == "lower_bound"
                else SQL(
                    "INSERT INTO {} (account, amount, note, created, flag)"
                    " VALUES (1, 12.34, 'benchmark row', now(), true);"
                )
                .format(ident(name))
                .as_string(None)
            )
            (scripts / f"{name}.sql").write_text(statement + "\n")
    tps: dict[str, list[float]] = {name: [] for name in CASES}
    names = list(CASES)
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            out = subprocess.run(
                [
                    pgbench_binary(),
                    "-n",
                    "-M",
                    "prepared",
                    "-f",
                    str(scripts / f"{name}.sql"),
                    "-T",
                    str(args.seconds),
                    server.dsn(DB),
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            tps[name].append(float(re.search(r"tps = ([\d.]+) \(without", out)[1]))  # type: ignore[index]
    bulk_cases = ["baseline", "minimal_statement", "minimal_row", "shipped"]
    bulk: dict[str, list[float]] = {name: [] for name in bulk_cases}
    with connect(server, DB) as conn:
        for r in range(args.rounds):
            for name in bulk_cases[r % len(bulk_cases) :] + bulk_cases[: r % len(bulk_cases)]:
                started = time.perf_counter()
                run(conn, INSERT_ROWS.format(ident(name)), [BULK_ROWS])
                bulk[name].append(time.perf_counter() - started)
    base = statistics.median(tps["baseline"])
    print(
        f"Single-row INSERT, 1 client, {args.rounds} rounds of {args.seconds} s, median tps; ratio = time / baseline\n"
    )
    print("| case | tps | ratio |\n|---|---|---|")
    for name, (what, _) in CASES.items():
        median = statistics.median(tps[name])
        print(f"| {what} | {median:,.0f} | {base / median:.2f}× |")
    print(f"\nOne INSERT of {BULK_ROWS:,} rows, {args.rounds} rounds, median; ratio = time / baseline\n")
    print("| case | ms | ratio |\n|---|---|---|")
    for name in bulk_cases:
        median = statistics.median(bulk[name])
        print(
            f"| {CASES[name][0]} | {median * 1000:,.0f} | {median / statistics.median(bulk['baseline']):.2f}× |"
        )
    return 0


# -- the advanced layout's UPDATE diff ------------------------------------------------------

#: What the advanced capture's UPDATE writes, in its order.
_UPDATE_COLUMNS = """row_data, changed_fields, object_pk, schema_name, table_name, relid,
                             action_tstamp_tx, action_tstamp_stm, action_tstamp_clk, transaction_id,
                             application_name, client_addr, client_port, client_query, action,
                             statement_only, statement_id, audit_context_id"""


def _update_values(old: str, changed: str, new: str) -> str:
    """The values of one audit row of an UPDATE, as the shipped capture writes them."""
    return f"""CASE WHEN _plain THEN {old} ELSE {{redact}}({old}, _excluded, _masked) END, {changed},
               coalesce({new} OPERATOR(pg_catalog.->>) _pk1, {{pk_text}}({new}, _pk)),
               _schema, _table, TG_RELID,
               current_timestamp, pg_catalog.statement_timestamp(), pg_catalog.clock_timestamp(), _txid,
               _app, _addr, _port,
               CASE WHEN pg_catalog.row_number() OVER () OPERATOR(pg_catalog.=) 1 THEN _query END,
               _op, false, _stmt, _actor"""


#: The n-th old row with the n-th new one, as the shipped capture pairs them (a FULL JOIN,
#: so that a plan cached for a one-row UPDATE cannot pair a bulk one by a nested loop).
_PAIRS = """SELECT o.j AS old_j, n.j AS new_j, n.n
                  FROM (SELECT pg_catalog.to_jsonb(t.*) AS j, pg_catalog.row_number() OVER () AS n
                          FROM dpa_old AS t) AS o
                  FULL JOIN (SELECT pg_catalog.to_jsonb(t.*) AS j, pg_catalog.row_number() OVER () AS n
                               FROM dpa_new AS t) AS n ON o.n OPERATOR(pg_catalog.=) n.n"""


def _changed_value(key: str, value: str) -> str:
    """A changed field's value as recorded: a masked column's is masked (NULL stays null)."""
    return f"""CASE WHEN {key} OPERATOR(pg_catalog.=) ANY (_masked)
                                 AND {value} OPERATOR(pg_catalog.<>) 'null'::pg_catalog.jsonb
                            THEN '"[masked]"'::pg_catalog.jsonb ELSE {value} END"""


def _changed_where(old: str, key: str, value: str) -> str:
    """Whether a field of the new row is recorded as changed: not excluded, and its old value
    missing or not equal (the new value of jsonb_each() is never NULL)."""
    return f"""NOT {key} OPERATOR(pg_catalog.=) ANY (_excluded)
                   AND (({old} OPERATOR(pg_catalog.->) {key}) OPERATOR(pg_catalog.=) {value}) IS NOT TRUE"""


_EACH = ("e.key", "e.value")  # a field from jsonb_each() in FROM
_SRF = ("(x.e).key", "(x.e).value")  # a field from jsonb_each() in a select list

#: name -> (what it is, the UPDATE branch of the advanced capture, or None for the shipped
#: one). ``{table}``, ``{redact}`` and ``{pk_text}`` are the deployed names. jsonb_each()
#: in FROM runs as a function scan, which stores its rows in a tuplestore on every call; in
#: a select list it runs as a ProjectSet node, which returns them as it makes them.
DIFF_SHAPES: dict[str, tuple[str, str | None]] = {
    "shipped": ("shipped: a correlated subquery per pair, jsonb_each() in its FROM", None),
    "subquery_srf": (
        "a correlated subquery per pair, jsonb_each() in a select list",
        f"""        INSERT INTO {{table}} ({_UPDATE_COLUMNS})
        SELECT {_update_values("d.old_j", "d.changed", "d.new_j")}
          FROM (SELECT p.old_j, p.new_j,
                       (SELECT pg_catalog.jsonb_object_agg({_SRF[0]}, {_changed_value(*_SRF)})
                          FROM (SELECT pg_catalog.jsonb_each(p.new_j) AS e OFFSET 0) AS x
                         WHERE {_changed_where("p.old_j", *_SRF)}) AS changed
                  FROM ({_PAIRS}) AS p
                OFFSET 0  -- else the changed fields are computed twice: for WHERE and for the row
               ) AS d
         WHERE d.changed IS NOT NULL;""",
    ),
    "group_join": (
        "set-based: the pairs once (a CTE), one jsonb_each() over all of them, GROUP BY the pair, joined back",
        f"""        WITH p AS MATERIALIZED ({_PAIRS}),
             c AS (SELECT p.n, pg_catalog.jsonb_object_agg(e.key, {_changed_value(*_EACH)}) AS changed
                     FROM p CROSS JOIN LATERAL pg_catalog.jsonb_each(p.new_j) AS e
                    WHERE {_changed_where("p.old_j", *_EACH)}
                    GROUP BY p.n)
        INSERT INTO {{table}} ({_UPDATE_COLUMNS})
        SELECT {_update_values("d.old_j", "d.changed", "d.new_j")}
          FROM (SELECT p.old_j, p.new_j, c.changed
                  FROM p FULL JOIN c ON c.n OPERATOR(pg_catalog.=) p.n
                OFFSET 0  -- keeps the FULL JOIN: no nested loop from a plan cached for one row
               ) AS d
         WHERE d.changed IS NOT NULL;""",
    ),
    "group_pairs": (
        "set-based: one jsonb_each() over all pairs in FROM, GROUP BY (pair, old row, new row)",
        f"""        INSERT INTO {{table}} ({_UPDATE_COLUMNS})
        SELECT {_update_values("d.old_j", "d.changed", "d.new_j")}
          FROM (SELECT p.old_j, p.new_j, pg_catalog.jsonb_object_agg(e.key, {_changed_value(*_EACH)}) AS changed
                  FROM ({_PAIRS}) AS p
                 CROSS JOIN LATERAL pg_catalog.jsonb_each(p.new_j) AS e
                 WHERE {_changed_where("p.old_j", *_EACH)}
                 GROUP BY p.n, p.old_j, p.new_j) AS d;""",
    ),
    "group_srf": (
        "set-based: one jsonb_each() over all pairs in a select list, GROUP BY (pair, old row, new row)",
        f"""        INSERT INTO {{table}} ({_UPDATE_COLUMNS})
        SELECT {_update_values("d.old_j", "d.changed", "d.new_j")}
          FROM (SELECT x.old_j, x.new_j, pg_catalog.jsonb_object_agg({_SRF[0]}, {_changed_value(*_SRF)}) AS changed
                  FROM (SELECT p.n, p.old_j, p.new_j, pg_catalog.jsonb_each(p.new_j) AS e
                          FROM ({_PAIRS}) AS p OFFSET 0) AS x
                 WHERE {_changed_where("x.old_j", *_SRF)}
                 GROUP BY x.n, x.old_j, x.new_j) AS d;""",
    ),
    "no_diff": (
        "no diff (an empty changed_fields on every row): the pairing and the write alone, a floor",
        f"""        INSERT INTO {{table}} ({_UPDATE_COLUMNS})
        SELECT {_update_values("p.old_j", "'{}'::pg_catalog.jsonb", "p.new_j")}
          FROM ({_PAIRS}) AS p;""",
    ),
    "no_pairing": (
        "no old row and no diff (the new rows alone, as the simple layout reads them): a lower floor",
        f"""        INSERT INTO {{table}} ({_UPDATE_COLUMNS})
        SELECT {_update_values("p.j", "'{}'::pg_catalog.jsonb", "p.j")}
          FROM (SELECT pg_catalog.to_jsonb(t.*) AS j FROM dpa_new AS t) AS p;""",
    ),
}
#: The shapes that record less than the shipped capture, on purpose: floors, not candidates.
FLOORS = ("no_diff", "no_pairing")
_UPDATE_BRANCH = "ELSIF TG_OP OPERATOR(pg_catalog.=) 'UPDATE' THEN\n"


def _shape_function(conn: Any, name: str, branch: str) -> str:
    """A copy of the deployed advanced capture named ``<capture>_<name>`` whose UPDATE branch
    is ``branch``; returns its name."""
    shipped = ADVANCED.function
    (definition,) = run(
        conn,
        "SELECT pg_get_functiondef(p.oid) FROM pg_proc p JOIN pg_namespace s ON s.oid = p.pronamespace"
        " WHERE s.nspname = 'public' AND p.proname = %s",
        [shipped],
    )[0]
    start = definition.find(_UPDATE_BRANCH)
    end = definition.find("\n    ELSE\n", start)
    found = {
        key: re.search(pattern, definition[start:end])
        for key, pattern in {
            "table": r"INSERT INTO (\S+) \(row_data, changed_fields",
            "redact": r"ELSE (\S+)\(o\.j, _excluded, _masked\)",
            "pk_text": r"_pk1, (\S+)\(d\.new_j, _pk\)",
        }.items()
    }
    if start < 0 or end < 0 or not all(found.values()):
        raise SystemExit(
            f"{shipped}() no longer has the UPDATE branch this experiment replaces"
            " (bench/design.py DIFF_SHAPES): update the experiment to the new capture"
        )
    for key, match in found.items():
        branch = branch.replace("{" + key + "}", match[1])  # type: ignore[index]
    copy = f"{shipped}_{name}"
    definition = definition[: start + len(_UPDATE_BRANCH)] + branch + definition[end:]
    run(conn, definition.replace(f"FUNCTION public.{shipped}()", f"FUNCTION public.{copy}()", 1))
    return copy


def _advanced_table(conn: Any, table: str, shape: str, spec: TableSpec) -> None:
    """``table`` audited by the advanced layout, its statement triggers calling the shape's
    copy of the capture."""
    enable(conn.cursor(), ADVANCED, spec)
    branch = DIFF_SHAPES[shape][1]
    if branch is None:
        return
    function = _shape_function(conn, shape, branch)
    triggers = run(
        conn,
        "SELECT t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid"
        " WHERE t.tgrelid = %s::regclass AND p.proname = %s",
        [table, ADVANCED.function],
    )
    assert triggers, table
    run(conn, "SELECT set_config('partitioned_audit.maintenance', 'on', false)")  # enable() unset it
    for name, definition in triggers:
        run(conn, SQL("DROP TRIGGER {} ON {}").format(ident(name), ident(table)))
        run(conn, definition.replace(f"public.{ADVANCED.function}(", f"public.{function}("))


def _verify_shapes(conn: Any) -> None:
    """Every shape writes the audit rows the shipped capture writes, masked and excluded
    columns included, and none for an UPDATE changing only excluded columns."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    for shape in DIFF_SHAPES:
        if shape in FLOORS:
            continue
        table = f"verify_{shape}"
        run(conn, SQL("CREATE TABLE {} (" + ROW_COLUMNS + ")").format(ident(table)))
        _advanced_table(conn, table, shape, TableSpec("public", table, ("id",), ("created",), ("note",)))
        t = ident(table)
        run(
            conn,
            SQL(
                "INSERT INTO {} (account, amount, note, created, flag) SELECT mod(i, 7), i, 'row ' || i,"
                " '2026-01-01T00:00:00Z', i % 2 = 0 FROM generate_series(1, 1000) AS i"
            ).format(t),
        )
        run(conn, SQL("UPDATE {} SET amount = amount + 1 WHERE id <= 500").format(t))
        run(conn, SQL("UPDATE {} SET created = created + interval '1 s' WHERE id <= 10").format(t))
        run(conn, SQL("UPDATE {} SET note = 'changed', flag = NOT flag WHERE id % 3 = 0").format(t))
        run(conn, SQL("UPDATE {} SET account = account WHERE id <= 5").format(t))
        rows[shape] = run(
            conn,
            "SELECT object_pk, row_data, changed_fields, client_query IS NOT NULL, statement_id"
            " - min(statement_id) OVER () FROM public.logged_actions"
            " WHERE table_name = %s AND action = 'U' ORDER BY 5, 1",
            [table],
        )
    expected = rows.pop("shipped")
    assert len(expected) == 500 + 333, len(expected)  # nothing for the last two
    for shape, found in rows.items():
        if found != expected:
            raise SystemExit(f"{shape}: the audit rows differ from the shipped capture's")


def update_diff(seconds: int, rounds: int, rows: int, shapes: list[str]) -> int:
    """Single-row UPDATEs (pgbench, 1 client) and one UPDATE of ``rows`` rows per shape,
    against the unaudited table and the simple layout, interleaved over ``rounds``."""
    server = get_server()
    recreate_database(server, DB, "off")
    scripts = Path(tempfile.mkdtemp(prefix="dpa-diff-"))
    cases = ["baseline", "simple", "shipped", *(s for s in DIFF_SHAPES if s in shapes and s != "shipped")]
    pool = 100_000
    with connect(server, DB) as conn:
        install_audit(conn, SIMPLE, "public", False, past_months=0)
        install_audit(conn, ADVANCED, "public", False, past_months=0)
        _verify_shapes(conn)
        for case in cases:
            for kind in ("one", "bulk"):
                table = f"{kind}_{case}"
                run(conn, SQL("CREATE TABLE {} (" + ROW_COLUMNS + ")").format(ident(table)))
                if case == "simple":
                    enable(conn.cursor(), SIMPLE, TableSpec("public", table, ("id",)))
                elif case != "baseline":
                    _advanced_table(conn, table, case, TableSpec("public", table, ("id",)))
                with conn.transaction():  # the rows themselves are not audited
                    run(conn, "SET LOCAL session_replication_role = replica")
                    run(conn, INSERT_ROWS.format(ident(table)), [pool if kind == "one" else rows])
            statement = SQL("UPDATE {} SET amount = amount + 1 WHERE id = :id;\n").format(
                ident(f"one_{case}")
            )
            (scripts / f"{case}.sql").write_text(f"\\set id random(1, {pool})\n" + statement.as_string(None))
        run(conn, "VACUUM ANALYZE")
    one: dict[str, list[float]] = {case: [] for case in cases}
    bulk: dict[str, list[float]] = {case: [] for case in cases}
    for r in range(rounds):
        order = cases[r % len(cases) :] + cases[: r % len(cases)]
        say(f"round {r + 1}/{rounds}: {', '.join(order)}")
        for case in order:
            out = subprocess.run(
                [pgbench_binary(), "-n", "-M", "prepared", "-f", str(scripts / f"{case}.sql")]
                + ["-T", str(seconds), server.dsn(DB)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            one[case].append(1e6 / float(re.search(r"tps = ([\d.]+) \(without", out)[1]))  # type: ignore[index]
        for case in order:
            table = ident(f"bulk_{case}")
            # A fresh session that first caches its plans on twenty one-row UPDATEs, as an
            # application's would: a shape whose bulk plan depends on it shows here.
            with connect(server, DB) as conn:
                for i in range(1, 21):
                    run(conn, SQL("UPDATE {} SET amount = amount + 1 WHERE id = %s").format(table), [i])
                started = time.perf_counter()
                run(conn, SQL("UPDATE {} SET amount = amount + 1").format(table))
                bulk[case].append(time.perf_counter() - started)
                run(conn, SQL("VACUUM {}").format(table))
        _empty_audit_tables(server)
    _diff_report(one, bulk, seconds, rounds, rows)
    return 0


def _empty_audit_tables(server: Any) -> None:
    """The audit rows of a round go, so that a run's audit tables stay small."""
    with connect(server, DB) as conn:
        run(conn, "SELECT set_config('partitioned_audit.maintenance', 'on', false)")
        for layout in (SIMPLE, ADVANCED):
            run(conn, SQL("TRUNCATE {}").format(ident("public", layout.table)))


def _diff_report(
    one: dict[str, list[float]], bulk: dict[str, list[float]], seconds: int, rounds: int, rows: int
) -> None:
    def ratio(mine: list[float], other: list[float]) -> str:
        """The median [min-max] of each round's ratio."""
        ratios = [m / o for m, o in zip(mine, other, strict=True)]
        return f"{statistics.median(ratios):.2f}× [{min(ratios):.2f}-{max(ratios):.2f}]"

    def cells(times: dict[str, list[float]], case: str, per: float) -> str:
        mine, base = times[case], times["baseline"]
        added = statistics.median(m - b for m, b in zip(mine, base, strict=True)) / per
        shipped = ratio(mine, times["shipped"]) if case in DIFF_SHAPES else "-"
        return (
            f"{statistics.median(mine) / per:,.1f} | {added:,.1f} | {ratio(mine, base)}"
            f" | {ratio(mine, times['simple'])} | {shipped}"
        )

    what = {"baseline": "unaudited", "simple": "simple layout (the target's reference)"}
    what.update({shape: text for shape, (text, _) in DIFF_SHAPES.items()})
    print(f"\nSingle-row UPDATE, pgbench, 1 client, {rounds} rounds of {seconds} s; medians of the rounds\n")
    print(
        "| case | µs per UPDATE | added µs | / unaudited | / simple | / shipped |\n|---|---|---|---|---|---|"
    )
    for case in one:
        print(f"| {what[case]} | {cells(one, case, 1.0)} |")
    print(
        f"\nOne UPDATE of {rows:,} rows, after twenty one-row UPDATEs in the same session,"
        f" {rounds} rounds; medians of the rounds\n"
    )
    print(
        "| case | µs per row | added µs per row | / unaudited | / simple | / shipped |\n"
        "|---|---|---|---|---|---|"
    )
    for case in bulk:
        print(f"| {what[case]} | {cells(bulk, case, rows / 1e6)} |")


if __name__ == "__main__":
    sys.exit(main())
