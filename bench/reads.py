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
cursor, fetched whole: what the database and the driver cost. "Through the ORM" is the
public call, with model instances (and for ``history()``, its versions and their diffs).
An admin page's time is the server's: Django's test client calls the view in this process,
with no network and no browser.
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
        from django_partitioned_audit import conf
        from partitioned_audit import get_layout

        layout_ = get_layout(self.entries._layout)
        self.table = ident(conf.audit_schema(), layout_.table)
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
            statement = SQL("SELECT max({}), max({}) FROM {}")
            cursor.execute(
                render(
                    statement.format(ident(layout_.event_column), ident(layout_.time_column), self.table),
                    cursor,
                )
            )
            self.last_id, self.last_time = cursor.fetchone()

    def model(self, table: str) -> Any:
        from django_partitioned_audit.models import _model_for_table

        return _model_for_table("public", table)

    # one measurement each: a callable timed, given the sampled object (table, key)

    def sql(self, queryset: Any) -> None:
        sql, params = queryset.query.sql_with_params()
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            cursor.fetchall()

    def object_reads(self) -> dict[str, Callable[[tuple[str, str]], Any]]:
        def first_page(obj: tuple[str, str]) -> Any:
            return self.manager.filter_object(self.model(obj[0]), obj[1]).order_by("pk")[:101]

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

    def context_reads(self) -> dict[str, Callable[[Any], Any]]:
        newest = lambda qs: list(qs.order_by("-pk")[:100])  # noqa: E731
        return {
            f"filter_context(user_id=busiest) newest 100, ORM (user {BUSIEST})": lambda _: newest(
                self.manager.filter_context(user_id=BUSIEST)
            ),
            f"filter_context(user_id=light) newest 100, ORM (user {LIGHT})": lambda _: newest(
                self.manager.filter_context(user_id=LIGHT)
            ),
            "filter_context(request_id=) newest 100, ORM": lambda _: newest(
                self.manager.filter_context(request_id=self.rng.choice(self.requests))
            ),
        }

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
                f"admin:{opts.app_label}_{opts.model_name}_change", args=[self.last_id - 1000]
            ),
            "admin: an object's history": history,
            "admin: list page 1,000": f"{base}?p=1000",
        }
        if _has_facets():
            # Django's "Show counts": the audit list does not offer it, so the page ignores it.
            pages["admin: list asked for Show counts (?_facets)"] = f"{base}?_facets=True"
        return pages

    def run(self, rounds: int, per_round: int) -> None:
        from django.db import OperationalError
        from django.test import Client

        client = Client()
        client.force_login(admin_user())
        object_reads, context_reads, pages = self.object_reads(), self.context_reads(), self.admin_pages()
        measurements: list[tuple[str, Callable[[], Any]]] = []
        for name, read in object_reads.items():
            measurements.append((name, lambda read=read: read(self.rng.choice(self.objects))))
        for name, read in context_reads.items():
            measurements.append((name, lambda read=read: read(None)))
        for name, url in pages.items():

            def page(name: str = name, url: str = url) -> None:
                self.statuses[name].add(client.get(url).status_code)

            measurements.append((name, page))

        def timed(name: str, call: Callable[[], Any]) -> float:
            started = time.perf_counter()
            try:
                call()
            except OperationalError as exc:  # cancelled by statement_timeout: counted as TIMEOUT_MS
                self.errors[name] = str(exc).splitlines()[0]
                return float(TIMEOUT_MS)
            return (time.perf_counter() - started) * 1000

        for name, call in measurements:  # a first call of each: connections, caches, imports
            timed(name, call)
        for r in range(rounds):
            shift = r % len(measurements)
            for name, call in measurements[shift:] + measurements[:shift]:
                for _ in range(per_round if name in object_reads else 1):
                    self.times[name].append(timed(name, call))
            print(f"round {r + 1}/{rounds}", file=sys.stderr, flush=True)

    def storage(self) -> dict[str, float]:
        """Bytes per audit row of everything the trail keeps: every table but the
        application's and Django's (the audit table's partitions, anything holding the
        context), with their indexes and TOAST; and each index of the audit table."""
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
            # Each index of the audit table: the sum of its partitions' indexes.
            cursor.execute(
                "SELECT p.indexrelid::regclass::text, sum(pg_relation_size(c.inhrelid))"
                "  FROM pg_index p JOIN pg_inherits c ON c.inhparent = p.indexrelid"
                " WHERE p.indrelid = %s::regclass GROUP BY 1 ORDER BY 1",
                [render(self.table, cursor)],
            )
            table = render(self.table, cursor).split(".")[-1].strip('"')
            per_index = {
                f"index {name.split('.')[-1].strip(chr(34)).removeprefix(table + '_')}": size / rows
                for name, size in cursor.fetchall()
            }
        return {"rows": rows, "total": total / rows, "heap": heap / rows, **per_index}


def _has_facets() -> bool:
    from django.contrib.admin import ModelAdmin

    return hasattr(ModelAdmin, "show_facets")


def measure(dbname: str, layout: str, rounds: int, per_round: int, samples: int) -> dict[str, Any]:
    set_up_django(dbname, layout)
    reads = Reads(layout, samples)
    reads.run(rounds, per_round)
    return {
        "layout": layout,
        "db": dbname,
        "objects": len(reads.objects),
        "medians_ms": {name: statistics.median(t) for name, t in reads.times.items()},
        "max_ms": {name: max(t) for name, t in reads.times.items()},
        "runs": {name: len(t) for name, t in reads.times.items()},
        "statuses": {name: sorted(s) for name, s in reads.statuses.items()},
        "errors": reads.errors,
        "timeout_ms": TIMEOUT_MS,
        "bytes_per_row": reads.storage(),
    }


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
    args = parser.parse_args(argv)
    found = measure(args.db, args.layout, args.rounds, args.per_round, args.samples)
    text = json.dumps(found, indent=2, default=str)
    if args.json:
        args.json.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
