"""Reads of a trail at scale, as users run them: the history of an object, the entries of a
user or a request, every admin page, and the bytes each audit row takes.

    python -m bench.scale --rows 2000000 --layout simple --db dpa_scale   # fill it first
    python -m bench.reads --db dpa_scale --layout simple --rounds 5 --json reads.json

Runs in a process of its own: Django is set up here with the admin, for the database
given, the layout's read model and the models of ``bench.scaleapp``. Each round runs
every measurement once per sampled object (or once, for a query that takes no object), the
measurements in a rotating order, so a measurement never profits from a cache the one
before it warmed more than the others do; the report gives medians over every run.

"In SQL" is the read model's own query (Django's SQL and parameters) through a DB-API
cursor, fetched whole: what the database and the driver cost, timed from the execute to the
last row (building the queryset and compiling it are Django's, in the ORM figures). "Through the ORM" is the
public call, with model instances (and for ``history()``, its versions and their diffs).
An admin page's time is the server's: Django's test client calls the view in this process,
with no network and no browser. "EXPLAIN ANALYZE: ..., execution" and "..., planning" split
the server's time of one object's history and of the context reads, once per round.

Bytes per audit row: the total of every table the trail keeps (the audit table's and the
context table's partitions, with indexes and TOAST), each table's heap and each index; and
by column, what each column of both tables stores per audit row.

``--only TEXT`` (repeatable) keeps the measurements whose name holds one of the texts
(``--only "history(obj)" --only "filter_object()"``), their EXPLAIN split included, and
leaves out the byte counts: a quicker run of a few reads.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "testproject")]

from testproject.dbserver import get_server  # noqa: E402

from bench.scale import BUSIEST  # noqa: E402
from partitioned_audit.sql import SQL, ident, render  # noqa: E402

MANAGERS = {
    "simple": "django_partitioned_audit.audit_table.simple_audit_table_manager.SimpleAuditTableManager",
    "advanced": "django_partitioned_audit.audit_table.advanced_audit_table_manager.AdvancedAuditTableManager",
}
#: A user with an ordinary share of the statements (one of the 999 light ones).
LIGHT = 500
#: What a read may take before it is cancelled and reported as "over" this (ms).
TIMEOUT_MS = 20_000


def set_up_django(dbname: str, layout: str) -> None:
    import django
    from django.conf import settings

    settings.configure(
        DATABASES={
            "default": {
                **get_server().django_database(dbname),
                "CONN_MAX_AGE": None,
                "OPTIONS": {"options": f"-c statement_timeout={TIMEOUT_MS}"},
            }
        },
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.messages",
            "django_partitioned_audit",
            "bench.scaleapp",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
        MESSAGE_STORAGE="django.contrib.messages.storage.cookie.CookieStorage",
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        ROOT_URLCONF="bench.scaleapp.urls",
        DPA_AUDIT_TABLE_MANAGER=MANAGERS[layout],
        SECRET_KEY="bench only",
        ALLOWED_HOSTS=["testserver"],
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    )
    django.setup()


def admin_user() -> Any:
    """A superuser, with the tables of ``django.contrib.auth`` made for it on first use."""
    from django.contrib.auth.models import User
    from django.core.management import call_command

    call_command("migrate", "auth", verbosity=0)
    user, _ = User.objects.get_or_create(
        username="bench", defaults={"is_superuser": True, "is_staff": True, "is_active": True}
    )
    return user


class Reads:
    def __init__(self, layout: str, samples: int, seed: int = 7) -> None:
        from django.db import connection

        from django_partitioned_audit.models import entry_model

        self.layout = layout
        self.entries = entry_model()
        self.manager = self.entries.objects
        self.rng = random.Random(seed)
        self.connection = connection
        self.times: dict[str, list[float]] = defaultdict(list)
        self.statuses: dict[str, set[int]] = defaultdict(set)
        self.errors: dict[str, str] = {}
        #: The database's and the driver's time of the last read "in SQL" (see :meth:`sql`).
        self.sql_ms: float | None = None
        from django_partitioned_audit import conf
        from partitioned_audit import get_layout

        layout_ = get_layout(self.entries._layout)
        self.table = ident(conf.audit_schema(), layout_.table)
        #: Where the trail lives: the audit table and its context table.
        self.tables = {
            name: ident(conf.audit_schema(), name) for name in (layout_.table, layout_.context_table)
        }
        opts = self.entries._meta
        table_field = opts.get_field(self.manager.all()._table_field).column
        with connection.cursor() as cursor:
            # Entries spread over the trail (a sample of its pages), read through the view:
            # objects that have a history, and requests.
            statement = SQL("SELECT {} FROM {} TABLESAMPLE SYSTEM (0.5) REPEATABLE (%s)")
            cursor.execute(render(statement.format(ident(layout_.event_column), self.table), cursor), [seed])
            ids = [row[0] for row in cursor.fetchall()]
            self.rng.shuffle(ids)
            statement = SQL("SELECT {}, object_pk, audit_context->>'request_id' FROM {} WHERE {} = ANY(%s)")
            cursor.execute(
                render(
                    statement.format(ident(table_field), ident(opts.db_table), ident(opts.pk.column)), cursor
                ),
                [ids[: samples * 5]],
            )
            found = cursor.fetchall()
            self.objects = sorted({(t, k) for t, k, _ in found if k is not None})[:samples]
            self.requests = sorted({r for _, _, r in found if r is not None})[:samples]
            statement = SQL("SELECT max({}) FROM {}")
            cursor.execute(render(statement.format(ident(layout_.time_column), self.table), cursor))
            (self.last_time,) = cursor.fetchone()
            # An entry a thousand from the newest: event ids have gaps (the advanced layout's
            # statement ids come from the same sequence), so it is found, not computed.
            statement = SQL("SELECT {} FROM {} ORDER BY 1 DESC LIMIT 1 OFFSET 1000")
            cursor.execute(render(statement.format(ident(layout_.event_column), self.table), cursor))
            (self.entry_id,) = cursor.fetchone()

    def model(self, table: str) -> Any:
        from django_partitioned_audit.models import _model_for_table

        return _model_for_table("public", table)

    # one measurement each: a callable timed, given the sampled object (table, key)

    def sql(self, queryset: Any) -> None:
        """Run ``queryset``'s SQL through a DB-API cursor and note how long the database and
        the driver took (:attr:`sql_ms`): building the queryset and compiling its SQL are
        Django's, measured by the ORM figures, not "in SQL"."""
        sql, params = queryset.query.sql_with_params()
        with self.connection.cursor() as cursor:
            started = time.perf_counter()
            cursor.execute(sql, params)
            cursor.fetchall()
            self.sql_ms = (time.perf_counter() - started) * 1000

    def first_page(self, obj: tuple[str, str]) -> Any:
        """The query of ``history(obj)``'s first page."""
        return self.manager.filter_object(self.model(obj[0]), obj[1]).order_by("pk")[:101]

    def object_reads(self) -> dict[str, Callable[[tuple[str, str]], Any]]:
        first_page = self.first_page
        return {
            "history(obj) first page, SQL": lambda obj: self.sql(first_page(obj)),
            "history(obj) first page, ORM": lambda obj: list(
                self.manager.history(self.model(obj[0]), obj[1])
            ),
            "filter_object(), SQL": lambda obj: self.sql(
                self.manager.filter_object(self.model(obj[0]), obj[1])
            ),
            "filter_object(), ORM": lambda obj: list(self.manager.filter_object(self.model(obj[0]), obj[1])),
        }

    def context_queries(self) -> dict[str, Callable[[], Any]]:
        """The context reads as users write them, each a queryset made anew: newest first
        by ``newest_first()`` (time, then id: the order of the ``user_id`` index) and by
        ``order_by("-pk")``, the newest 100."""
        by_user = self.manager.filter_context
        return {
            f"filter_context(user_id=busiest) newest 100, ORM (user {BUSIEST})": lambda: by_user(
                user_id=BUSIEST
            ).order_by("-pk")[:100],
            f"filter_context(user_id=light) newest 100, ORM (user {LIGHT})": lambda: by_user(
                user_id=LIGHT
            ).order_by("-pk")[:100],
            f"filter_context(user_id=busiest).newest_first()[:100], ORM (user {BUSIEST})": lambda: by_user(
                user_id=BUSIEST
            ).newest_first()[:100],
            f"filter_context(user_id=light).newest_first()[:100], ORM (user {LIGHT})": lambda: by_user(
                user_id=LIGHT
            ).newest_first()[:100],
            "filter_context(request_id=) newest 100, ORM": lambda: by_user(
                request_id=self.rng.choice(self.requests)
            ).order_by("-pk")[:100],
        }

    def explained(self) -> dict[str, Callable[[], Any]]:
        """The queries whose server time is split into planning and execution."""
        return {
            "history(obj) first page": lambda: self.first_page(self.rng.choice(self.objects)),
            "filter_object()": lambda: self.manager.filter_object(
                *self._object(self.rng.choice(self.objects))
            ),
            **self.context_queries(),
        }

    def _object(self, obj: tuple[str, str]) -> tuple[Any, str]:
        return self.model(obj[0]), obj[1]

    def explain(self, queryset: Any) -> tuple[float, float]:
        """Execution and planning time (ms) of ``queryset``'s SQL, from EXPLAIN ANALYZE."""
        sql, params = queryset.query.sql_with_params()
        with self.connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, SUMMARY, FORMAT JSON) " + sql, params)
            plan = cursor.fetchone()[0]
        plan = json.loads(plan) if isinstance(plan, str) else plan
        return plan[0]["Execution Time"], plan[0]["Planning Time"]

    def admin_pages(self) -> dict[str, str]:
        from django.urls import reverse
        from django.utils.http import urlencode

        opts = self.entries._meta
        base = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        # What the date filter's "Past 7 days" link asks for, on the day of the newest entry.
        day = self.last_time.replace(hour=0, minute=0, second=0, microsecond=0)
        week = urlencode(
            {
                f"{self.entries._time}__gte": (day - dt.timedelta(days=7)).isoformat(),
                f"{self.entries._time}__lt": (day + dt.timedelta(days=1)).isoformat(),
            }
        )
        table, key = self.objects[0]
        model = self.model(table)
        history = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_audit_history", args=[key])
        pages = {
            "admin: list": base,
            "admin: list by table": f"{base}?model=scaleapp.scaleorder",
            "admin: list by operation (DELETE)": f"{base}?operation=D",
            "admin: list by date (past 7 days)": f"{base}?{week}",
            f"admin: list by user (busiest, {BUSIEST})": f"{base}?user={BUSIEST}",
            f"admin: list by user (light, {LIGHT})": f"{base}?user={LIGHT}",
            "admin: key search": f"{base}?q={key}",
            "admin: an entry": reverse(
                f"admin:{opts.app_label}_{opts.model_name}_change", args=[self.entry_id]
            ),
            "admin: an object's history": history,
            "admin: list page 1,000": f"{base}?p=1000",
        }
        if _has_facets():
            # Django's "Show counts": the audit list does not offer it, so the page ignores it.
            pages["admin: list asked for Show counts (?_facets)"] = f"{base}?_facets=True"
        return pages

    def run(self, rounds: int, per_round: int, only: list[str] | None = None) -> None:
        from django.db import OperationalError
        from django.test import Client

        client = Client()
        client.force_login(admin_user())
        object_reads, context_reads, pages = self.object_reads(), self.context_queries(), self.admin_pages()

        def kept(name: str) -> bool:
            return not only or any(text in name for text in only)

        explained = {name: query for name, query in self.explained().items() if kept(name)}
        measurements: list[tuple[str, Callable[[], Any]]] = []
        for name, read in object_reads.items():
            measurements.append((name, lambda read=read: read(self.rng.choice(self.objects))))
        for name, query in context_reads.items():
            measurements.append((name, lambda query=query: list(query())))
        for name, url in pages.items():

            def page(name: str = name, url: str = url) -> None:
                self.statuses[name].add(client.get(url).status_code)

            measurements.append((name, page))

        def timed(name: str, call: Callable[[], Any]) -> float:
            self.sql_ms = None
            started = time.perf_counter()
            try:
                call()
            except OperationalError as exc:  # cancelled by statement_timeout: counted as TIMEOUT_MS
                self.errors[name] = str(exc).splitlines()[0]
                return float(TIMEOUT_MS)
            elapsed = (time.perf_counter() - started) * 1000
            return elapsed if self.sql_ms is None else self.sql_ms

        measurements = [(name, call) for name, call in measurements if kept(name)]
        for name, call in measurements:  # a first call of each: connections, caches, imports
            timed(name, call)
        for r in range(rounds):
            shift = r % len(measurements)
            for name, call in measurements[shift:] + measurements[:shift]:
                for _ in range(per_round if name in object_reads else 1):
                    self.times[name].append(timed(name, call))
            for name, query in explained.items():
                try:
                    execution, planning = self.explain(query())
                except OperationalError as exc:
                    self.errors[f"EXPLAIN ANALYZE: {name}"] = str(exc).splitlines()[0]
                    continue
                self.times[f"EXPLAIN ANALYZE: {name}, execution"].append(execution)
                self.times[f"EXPLAIN ANALYZE: {name}, planning"].append(planning)
            print(f"round {r + 1}/{rounds}", file=sys.stderr, flush=True)

    def storage(self) -> dict[str, float]:
        """Bytes per audit row of everything the trail keeps: every table but the
        application's and Django's (the audit table's and the context table's partitions),
        with their indexes and TOAST; then the heap (with TOAST) of the audit table and of
        the context table, and each of their indexes (the sum of its partitions')."""
        with self.connection.cursor() as cursor:
            cursor.execute(render(SQL("SELECT count(*) FROM {}").format(self.table), cursor))
            (rows,) = cursor.fetchone()
            cursor.execute(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0), coalesce(sum(pg_relation_size(c.oid)), 0)"
                "  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
                "   AND c.relname NOT LIKE 'scale\\_%%' AND c.relname NOT LIKE 'django\\_%%'"
                "   AND c.relname NOT LIKE 'auth\\_%%'"
            )
            total, heap = cursor.fetchone()
            found: dict[str, float] = {"rows": rows, "total": total / rows, "heap": heap / rows}
            for name, table in self.tables.items():
                cursor.execute(
                    "SELECT coalesce(sum(pg_table_size(i.inhrelid)), 0) FROM pg_inherits i WHERE i.inhparent = %s::regclass",
                    [render(table, cursor)],
                )
                found[f"heap {name}"] = cursor.fetchone()[0] / rows
                cursor.execute(
                    "SELECT p.indexrelid::regclass::text, sum(pg_relation_size(c.inhrelid))"
                    "  FROM pg_index p JOIN pg_inherits c ON c.inhparent = p.indexrelid"
                    " WHERE p.indrelid = %s::regclass GROUP BY 1 ORDER BY 1",
                    [render(table, cursor)],
                )
                found.update({f"index {index}": size / rows for index, size in cursor.fetchall()})
        return {key: float(value) for key, value in found.items()}

    def columns(self) -> dict[str, float]:
        """Bytes per audit row of each column of the audit table and of the context table
        (``pg_column_size``, as stored: compressed, without the tuple header; a NULL is a bit
        of the header, counted as 0), from a sample of about 200,000 rows of each."""
        found: dict[str, float] = {}
        with self.connection.cursor() as cursor:
            cursor.execute(render(SQL("SELECT count(*) FROM {}").format(self.table), cursor))
            (rows,) = cursor.fetchone()
            for table_name, table in self.tables.items():
                cursor.execute(render(SQL("SELECT count(*) FROM {}").format(table), cursor))
                (count,) = cursor.fetchone()
                cursor.execute(
                    "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
                    " AND NOT attisdropped ORDER BY attnum",
                    [render(table, cursor)],
                )
                names = [name for (name,) in cursor.fetchall()]
                sizes = SQL(", ").join(
                    SQL("coalesce(avg(coalesce(pg_column_size({}), 0)), 0)").format(ident(n)) for n in names
                )
                statement = SQL("SELECT {} FROM {} TABLESAMPLE SYSTEM (%s) REPEATABLE (0)").format(
                    sizes, table
                )
                cursor.execute(render(statement, cursor), [min(100.0, 100 * 200_000 / max(count, 1))])
                averages = cursor.fetchone()
                found.update(
                    {
                        f"{table_name}.{name}": float(size) * count / rows
                        for name, size in zip(names, averages, strict=True)
                    }
                )
        return found


def _has_facets() -> bool:
    from django.contrib.admin import ModelAdmin

    return hasattr(ModelAdmin, "show_facets")


def measure(
    dbname: str, layout: str, rounds: int, per_round: int, samples: int, only: list[str] | None = None
) -> dict[str, Any]:
    set_up_django(dbname, layout)
    reads = Reads(layout, samples)
    reads.run(rounds, per_round, only)
    found = {
        "layout": layout,
        "db": dbname,
        "objects": len(reads.objects),
        "medians_ms": {name: statistics.median(t) for name, t in reads.times.items()},
        "max_ms": {name: max(t) for name, t in reads.times.items()},
        "runs": {name: len(t) for name, t in reads.times.items()},
        "statuses": {name: sorted(s) for name, s in reads.statuses.items()},
        "errors": reads.errors,
        "timeout_ms": TIMEOUT_MS,
    }
    if not only:
        found["bytes_per_row"] = reads.storage()
        found["bytes_per_column"] = reads.columns()
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", required=True)
    parser.add_argument("--layout", choices=["simple", "advanced"], default="simple")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=20, help="objects looked up per round and read")
    parser.add_argument("--samples", type=int, default=200, help="objects and requests sampled")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument(
        "--only",
        action="append",
        metavar="TEXT",
        help="measure only the reads whose name holds TEXT (repeatable); no byte counts",
    )
    args = parser.parse_args(argv)
    found = measure(args.db, args.layout, args.rounds, args.per_round, args.samples, args.only)
    text = json.dumps(found, indent=2, default=str)
    if args.json:
        args.json.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
