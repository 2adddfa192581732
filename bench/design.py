"""The experiments behind the trigger design: what each part of capturing a change costs.

    python -m bench.design [--seconds 3] [--rounds 3]

Single-row INSERTs through pgbench into tables that differ only in how (or whether) the
insert is recorded, interleaved over rounds; ratios are against the unaudited table.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.run import (  # bench.run puts the test project on the path first
    INSERT_ROWS,
    ROW_COLUMNS,
    connect,
    get_server,
    install_audit,
    pgbench_binary,
    recreate_database,
    run,
)
from partitioned_audit import SIMPLE, TableSpec, enable
from partitioned_audit.sql import SQL, ident

DB = "dpa_bench_design"
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
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
