"""The capture of this working tree against the capture of another commit, in one run.

    python -m bench.ab --against HEAD~3          # a change to the capture SQL costs what?

Both versions' audit objects are installed side by side in one scratch database (the other
commit's in schema ``ab_then``, this tree's in ``ab_now``), each auditing its own copy of
the same six-column table. pgbench runs the single-row scripts of both in one run, picked
at random per transaction, so both see the same noise; the 200 000-row statements
alternate, and the report gives the median of the rounds. Ratios below 1 mean this tree
is cheaper.

    python -m bench.ab --against HEAD~3 --past-months 12

gives both tables a partition per month, a year back, as a long-lived install has them.

    python -m bench.ab --against HEAD~3 --context '{"user_id":7,"request_id":"abc"}'

runs every workload with that audit context set for the session (``PGOPTIONS``), as a
writer inside ``audit_context()`` has it set for its transaction: what reading and storing
it costs the capture, against a commit that does not read it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(ROOT / "testproject")]

from testproject.dbserver import get_server  # noqa: E402

from partitioned_audit import ddl, layouts  # noqa: E402
from partitioned_audit.sql import SQL, execute, ident, literal, render  # noqa: E402

TABLE = "(id bigint PRIMARY KEY, a integer, b text, c numeric, d timestamptz, e boolean)"


SEED = SQL(
    "INSERT INTO {} SELECT g, 1, 'x', 1.5, now(), true FROM generate_series(1, 1000) g ON CONFLICT DO NOTHING"
)
# Each statement takes the table and the number of rows.
BULK = {
    "insert": SQL(
        "INSERT INTO {} SELECT g + 10000000, 1, 'x', 1.5, now(), true FROM generate_series(1, {}) g"
    ),
    "update": SQL("UPDATE {} SET a = a + 1 WHERE id > 10000000 AND {} > 0"),
    "delete": SQL("DELETE FROM {} WHERE id > 10000000 AND {} > 0"),
}


def engine_of(*modules: types.ModuleType) -> types.SimpleNamespace:
    """The layouts and the builders of their statements as one namespace: both lived in
    ``layouts`` before the builders moved to ``ddl``."""
    merged: dict[str, Any] = {}
    for module in modules:
        merged.update(vars(module))
    return types.SimpleNamespace(**merged)


def _show(rev: str, path: str) -> str | None:
    """The text of ``path`` at ``rev``, or None where that commit has no such file."""
    shown = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True)
    return shown.stdout if shown.returncode == 0 else None


def _load(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def layouts_of(rev: str) -> types.SimpleNamespace:
    """The ``layouts`` module as it is at ``rev`` (with its ``ddl`` module, where it has
    one), imported beside the current one."""
    text = _show(rev, "src/partitioned_audit/layouts.py")
    if text is None:
        raise SystemExit(f"{rev} has no src/partitioned_audit/layouts.py")
    path = Path(tempfile.mkdtemp()) / "layouts_then.py"
    path.write_text(text)
    # The function templates of that commit, where it has some, beside the module.
    listing = subprocess.run(
        ["git", "ls-tree", "--name-only", rev, "src/partitioned_audit/templates/"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    if listing:
        (path.parent / "templates").mkdir()
    for name in listing:
        shown = subprocess.run(["git", "show", f"{rev}:{name}"], cwd=ROOT, check=True, capture_output=True)
        (path.parent / "templates" / Path(name).name).write_bytes(shown.stdout)
    modules = [_load("partitioned_audit.layouts_then", path)]
    ddl = _show(rev, "src/partitioned_audit/ddl.py")
    if ddl is not None:
        # Its data from that commit's layouts, not from this tree's.
        (path.parent / "ddl_then.py").write_text(
            ddl.replace("from .layouts import", "from .layouts_then import")
        )
        modules.append(_load("partitioned_audit.ddl_then", path.parent / "ddl_then.py"))
    return engine_of(*modules)


def install(
    cur: Any,
    module: types.SimpleNamespace,
    layout_name: str,
    schema: str,
    level: str = "statement",
    past_months: int = -1,
) -> None:
    layout = module.get_layout(layout_name)
    seq = render(ident(schema, layout.sequence))
    for statement in (
        module.create_schema(schema),
        module.create_sequence(layout, schema),
        module.create_table(layout, schema, seq),
        module.create_default_partition(layout, schema),
        *module.create_indexes(layout, schema),
        # (since the context table)
        *(
            module.create_context_table(layout, schema, render(ident(schema, layout.context_sequence)))
            if hasattr(module, "create_context_table")
            else ()
        ),
        module.create_functions(layout, schema, seq),
    ):
        execute(cur, statement)
    execute(cur, SQL("CREATE TABLE {} " + TABLE).format(ident(schema, "item")))
    spec = module.TableSpec(schema, "item", ("id",))
    fields = {f.name for f in dataclasses.fields(spec)}
    if "trusted_types" in fields:
        # What enable() finds for a table of built-in types only, where a superuser
        # installed the guard (without it, the capture checks the types' owners).
        spec = dataclasses.replace(
            spec, trusted_types=True, **({"guarded": True} if "guarded" in fields else {})
        )
    if level == "row":
        if "row_level" not in fields:
            raise SystemExit("this version of the engine has no row-level capture")
        spec = dataclasses.replace(spec, row_level=True)
    for statement in module.create_triggers(layout, schema, spec):
        execute(cur, statement)
    add_months(cur, layout, schema, past_months)


def add_months(cur: Any, layout: Any, schema: str, past_months: int) -> None:
    """Monthly partitions of the audit table and of the context table (where the version has
    one) from ``past_months`` months back to next month, as a long-lived install has them:
    the capture's probe of the context table costs more with every partition."""
    if past_months < 0:
        return
    month = dt.date.today().replace(day=1)
    for _ in range(past_months):
        month = (month - dt.timedelta(days=1)).replace(day=1)
    end = (dt.date.today().replace(day=1) + dt.timedelta(days=62)).replace(day=1)
    parents = [layout.table] + ([layout.context_table] if hasattr(layout, "context_table") else [])
    while month < end:
        following = (month + dt.timedelta(days=32)).replace(day=1)
        for parent in parents:
            execute(
                cur,
                SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
                    ident(schema, f"{parent}_{month:%Y%m}"),
                    ident(schema, parent),
                    literal(month.isoformat()),
                    literal(following.isoformat()),
                ),
            )
        month = following


def pgbench(dsn: str, scripts: dict[str, str], seconds: int, options: str = "") -> dict[str, float]:
    """Latency per transaction (µs) of each script, all run in one pgbench run."""
    directory = Path(tempfile.mkdtemp())
    args = ["pgbench", "-n", "-c", "1", "-T", str(seconds), "-r"]
    for name, text in scripts.items():
        (directory / f"{name}.sql").write_text(text)
        args += ["-f", str(directory / f"{name}.sql")]
    env = {**os.environ, "PGOPTIONS": options} if options else None
    out = subprocess.run([*args, dsn], check=True, capture_output=True, text=True, env=env).stdout
    found, current = {}, None
    for line in out.splitlines():
        if line.startswith("SQL script"):
            current = line.split(":", 1)[1].strip().rsplit("/", 1)[-1].removesuffix(".sql")
        elif current and "latency average" in line:
            found[current] = float(line.split("=")[1].split()[0]) * 1000
    return found


@contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """The DSN of a new database on the benchmark server (commits not waited for), dropped after."""
    server = get_server()
    dbname = f"{prefix}_{int(time.time())}"
    admin = psycopg.connect(server.dsn("postgres"), autocommit=True)
    execute(admin.cursor(), SQL("CREATE DATABASE {}").format(ident(dbname)))
    execute(admin.cursor(), SQL("ALTER DATABASE {} SET synchronous_commit = off").format(ident(dbname)))
    try:
        yield server.dsn(dbname)
    finally:
        execute(admin.cursor(), SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident(dbname)))
        admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--against", default="HEAD", help="the commit to compare with (default HEAD)")
    parser.add_argument("--layout", default="simple", choices=sorted(layouts.LAYOUTS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--seconds", type=int, default=10, help="pgbench duration per round")
    parser.add_argument("--context", help="a JSON object set as the audit context of every session")
    parser.add_argument(
        "--level", default="statement", choices=["statement", "row"], help="capture level of this tree"
    )
    parser.add_argument(
        "--then-level",
        default="statement",
        choices=["statement", "row"],
        help="capture level of the other commit",
    )
    parser.add_argument(
        "--past-months",
        type=int,
        default=-1,
        help="monthly partitions of both tables from this many months back (default: none, the DEFAULT partition only)",
    )
    options = parser.parse_args()
    session = ""
    if options.context:
        compact = json.dumps(json.loads(options.context), separators=(",", ":"))
        if " " in compact:
            raise SystemExit("--context: no spaces inside values, please (PGOPTIONS splits on them)")
        session = f"-c {layouts.CONTEXT_SETTING}={compact}"
    then = layouts_of(options.against)
    with scratch_database(os.environ.get("DPA_DB_NAME", "dpa") + "_ab") as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            cur = conn.cursor()
            install(cur, then, options.layout, "ab_then", options.then_level, options.past_months)
            install(
                cur, engine_of(layouts, ddl), options.layout, "ab_now", options.level, options.past_months
            )
        single: dict[str, list[float]] = {}
        bulk: dict[str, list[float]] = {}
        for _ in range(options.rounds):
            scripts = {
                f"{op} {schema}": text.format(schema=schema)
                for schema in ("ab_then", "ab_now")
                for op, text in (
                    (
                        "insert",
                        "\\set id random(1, 1000000000)\nINSERT INTO {schema}.item VALUES (:id, 1, 'x', 1.5, now(), true) ON CONFLICT DO NOTHING;\n",
                    ),
                    (
                        "update",
                        "\\set id random(1, 1000)\nUPDATE {schema}.item SET a = a + 1 WHERE id = :id;\n",
                    ),
                )
            }
            with psycopg.connect(dsn, autocommit=True) as conn:
                for schema in ("ab_then", "ab_now"):
                    execute(conn.cursor(), SEED.format(ident(schema, "item")))
            for name, micros in pgbench(dsn, scripts, options.seconds, session).items():
                single.setdefault(name, []).append(micros)
            with psycopg.connect(dsn, autocommit=True, options=session) as conn:
                for order in (("ab_then", "ab_now"), ("ab_now", "ab_then")):
                    for schema in order:
                        item = ident(schema, "item")
                        execute(conn.cursor(), SQL("TRUNCATE {}").format(item))
                        for op, statement in BULK.items():
                            start = time.perf_counter()
                            execute(conn.cursor(), statement.format(item, literal(options.rows)))
                            bulk.setdefault(f"{op} {schema}", []).append(time.perf_counter() - start)
        print(
            f"{options.layout} layout, {options.rounds} rounds, against {options.against}"
            + (f", audit context {options.context}" if options.context else "")
        )
        print("| workload | then | now | now / then |")
        print("|---|---|---|---|")
        for op in ("insert", "update"):
            a, b = statistics.median(single[f"{op} ab_then"]), statistics.median(single[f"{op} ab_now"])
            print(f"| single-row {op}, µs per transaction | {a:.1f} | {b:.1f} | {b / a:.3f} |")
        for op in ("insert", "update", "delete"):
            a, b = statistics.median(bulk[f"{op} ab_then"]), statistics.median(bulk[f"{op} ab_now"])
            print(f"| {options.rows:,}-row {op}, ms | {a * 1000:.0f} | {b * 1000:.0f} | {b / a:.3f} |")


if __name__ == "__main__":
    main()
