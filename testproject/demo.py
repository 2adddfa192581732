"""The main job end to end: register models, migrate, write every way, read the audit trail.

Run with ``make demo``. Uses $DATABASE_URL, else a local server on 127.0.0.1:5432, else an
embedded PostgreSQL started for the run. Works on a fresh database called ``dpa_demo``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
os.environ["DPA_DB_NAME"] = "dpa_demo"

from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402
from rich.table import Table  # noqa: E402

console = Console(width=140)


def fresh_database() -> None:
    """Drop and create ``dpa_demo`` through the maintenance database."""
    from testproject.dbserver import apply_driver_switch, get_server

    console.print(
        "This demo drops and re-creates its own database, [bold]dpa_demo[/], and touches no other.\n"
        "Server: $DATABASE_URL if set, else 127.0.0.1:5432 if it answers, else an embedded "
        "PostgreSQL 18 (its first start runs initdb: about 10 seconds)..."
    )
    apply_driver_switch()
    server = get_server()
    import django
    from django.conf import settings

    django.setup()
    from django.db import connections

    admin = connections.create_connection("default")
    admin.settings_dict = {**settings.DATABASES["default"], "NAME": "postgres"}
    with admin.cursor() as cursor:
        admin.connection.autocommit = True
        cursor.execute("DROP DATABASE IF EXISTS dpa_demo WITH (FORCE)")
        cursor.execute("CREATE DATABASE dpa_demo")
    admin.close()
    console.rule(f"[bold]django-partitioned-audit demo[/] on {server.origin} server")


def db_now() -> object:
    """The database's clock: the trail is stamped by it, not by this process's."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]


def show(value: object) -> str:
    return "∅" if value is None else str(value)


def describe_context(context: dict | None) -> str:
    if not context:
        return "no context"
    return " ".join(f"{k}={v}" for k, v in context.items() if v is not None)


def describe_changes(entry: object) -> str:
    """The changed fields of an UPDATE; the row of an INSERT or DELETE."""
    changes = entry.changes()  # type: ignore[attr-defined]
    if entry.is_update():  # type: ignore[attr-defined]
        return ", ".join(f"{f}: {show(old)} → {show(new)}" for f, (old, new) in changes.items())
    side = 0 if entry.is_delete() else 1  # type: ignore[attr-defined]
    return ", ".join(f"{f}={show(pair[side])}" for f, pair in changes.items())


def main() -> int:
    fresh_database()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.db.models.functions import Now
    from django.http import HttpResponse
    from django.test import RequestFactory
    from library.models import Book, Weird
    from shop.models import Customer, Order

    from django_partitioned_audit import conf
    from django_partitioned_audit.context import audit_job
    from django_partitioned_audit.middleware import AuditContextMiddleware
    from django_partitioned_audit.models import SimpleAuditEntry
    from partitioned_audit import catalog
    from partitioned_audit.sql import SQL, execute, ident

    console.print(
        "[bold]1. migrate[/]: creates the audit table, the triggers of registered models, "
        "and this month's and next month's partitions"
    )
    call_command("migrate", verbosity=1, stdout=sys.stdout)

    console.print("\n[bold]2. partitions[/]: list what migrate made, then create 90 days ahead and check")
    call_command("manage_partition_tables", "list", stdout=sys.stdout)
    call_command("manage_partition_tables", "create", "check", "--extra-days=90", stdout=sys.stdout)

    console.print(
        "\n[bold]3. writes[/], each with who made it: a request through AuditContextMiddleware, "
        "a job under @audit_job, and psql with one SET LOCAL line"
    )
    ada = User.objects.create_user("ada", password="demo-only")
    when = {}

    def checkout(request: object) -> HttpResponse:  # a view: runs inside the middleware's context
        customer = Customer.objects.create(name="Ann", password="pbkdf2_sha256$870000$salt$hash")
        placed = Order.objects.create(
            customer=customer, total="19.90", tags=["gift"], data={"note": "ring twice"}
        )
        return HttpResponse(str(placed.pk))

    request = RequestFactory().post("/shop/checkout/", headers={"X-Request-ID": "req-7f3a"})
    request.user = ada
    order = Order.objects.get(pk=int(AuditContextMiddleware(checkout)(request).content))
    when["placed"] = db_now()

    @audit_job(name="billing.capture_payment")
    def capture_payment(order_id: int) -> None:
        Order.objects.filter(pk=order_id).update(status="paid", placed_at=Now())

    capture_payment(order.pk)
    when["paid"] = db_now()
    with transaction.atomic(), connection.cursor() as cursor:
        # What a DBA or another service runs; no Django involved.
        line = """SET LOCAL partitioned_audit.context = '{"source": "psql", "dba": "carol", "ticket": "OPS-42"}'"""
        console.print(f"   psql> [cyan]{line};[/]")
        cursor.execute(line)
        cursor.execute(
            "UPDATE shop_order SET total = total * 2, status = 'refunded' WHERE id = %s", [order.pk]
        )
    Book.objects.bulk_create(Book(isbn=f"978-{i:04d}", title=f"Volume {i}") for i in range(500))
    changed = Book.objects.filter(isbn__lt="978-0250").update(title="Reprinted")
    Weird.objects.create(select=1, label="quoted names work")
    order_id = order.pk
    order.delete()
    order = Order(pk=order_id)  # what is left of it: its key, and its history
    console.print(
        f"   bulk_create of 500 books, QuerySet.update() of {changed} in one statement, the order deleted"
    )

    console.print("\n[bold]4. the audit trail[/]: who made each change and what changed (books summarised)")
    table = Table("id", "table", "op", "key", "who")
    table.add_column("what changed (old → new)", overflow="fold")
    entries = SimpleAuditEntry.objects.exclude(object_table="library_book").order_by("id")
    for entry in entries:
        table.add_row(
            str(entry.id),
            entry.object_table,
            entry.audit_operation,
            (entry.object_pk or "")[:8],
            escape(describe_context(entry.audit_context)),
            escape(describe_changes(entry)),
        )
    console.print(table)
    books = SimpleAuditEntry.objects.filter_model(Book)
    summary = Table("library_book operation", "entries")
    for code, label in (("I", "INSERT"), ("U", "UPDATE"), ("D", "DELETE")):
        summary.add_row(label, str(books.filter(audit_operation=code).count()))
    console.print(summary)
    total = SimpleAuditEntry.objects.count()
    if total == 0:
        console.print("[red]no audit entries were recorded[/]")
        return 1

    console.print(f"\n[bold]   history()[/] of order {order.pk}, oldest first:")
    for version in SimpleAuditEntry.objects.history(order).versions:
        changes = ", ".join(
            f"{f}: {show(old)} → {show(new)}"
            for f, (old, new) in version.changes.items()
            if (old, new) != (None, None)
        )
        console.print(
            f"   {version.operation.name:<6} by {escape(describe_context(version.context))}: {escape(changes)}"
        )
    for moment in ("placed", "paid"):
        then = SimpleAuditEntry.objects.as_of(Order, order.pk, when[moment])
        console.print(
            f"   [bold]as_of()[/] just after it was {moment}: status={then.status!r} total={then.total}"  # type: ignore[union-attr]
        )
    console.print(
        f"   [bold]as_of()[/] now: {SimpleAuditEntry.objects.as_of(Order, order.pk, db_now())} (deleted)"
    )
    mine = SimpleAuditEntry.objects.filter_context(username="ada").count()
    console.print(
        f"   [bold]filter_context(username='ada')[/]: {mine} entries, through the partial GIN index"
    )

    console.print("\n[bold]5. partitions[/] of the audit table")
    call_command("manage_partition_tables", "list-all", stdout=sys.stdout)
    parts = Table("partition", "bound", "rows")
    with connection.cursor() as cursor:
        for part in catalog.partitions(cursor, conf.audit_schema(), conf.layout().table):
            execute(cursor, SQL("SELECT count(*) FROM {}").format(ident(conf.audit_schema(), part.name)))
            parts.add_row(part.name, part.bound, str(cursor.fetchone()[0]))
    console.print(parts)
    console.print(f"\n[green]{total} audit entries recorded.[/]")
    return tamper_evidence()


def tamper_evidence() -> int:
    """Seal, verify against the kept head, then rewrite one row as a superuser and catch it."""
    import io

    from django.core.management import CommandError, call_command
    from django.db import connection

    from django_partitioned_audit import conf
    from partitioned_audit import sealing
    from partitioned_audit.sql import SQL, execute, ident

    console.print("\n[bold]6. tamper evidence[/]: seal the trail and keep the head outside the database")
    out = io.StringIO()
    call_command("manage_partition_tables", "seal", stdout=out)
    sys.stdout.write(out.getvalue())
    head = out.getvalue().rsplit("head: ", 1)[1].strip()
    call_command("manage_partition_tables", "verify", "--expect", head, stdout=sys.stdout)
    layout, schema = conf.layout(), conf.audit_schema()
    console.print(
        "\n   A superuser steps past the guard, switches the freeze off and rewrites one payload..."
    )
    table = ident(schema, layout.table)
    payload = "object_payload" if layout.name == "simple" else "row_data"
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('partitioned_audit.maintenance', 'on', false)")
        execute(cursor, SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(table, ident(sealing.FREEZE_TRIGGER)))
        execute(
            cursor,
            SQL('UPDATE {} SET {} = {} || \'{{"total": "0.01"}}\' WHERE {} = 2').format(
                table, ident(payload), ident(payload), ident(layout.event_column)
            ),
        )
        execute(
            cursor,
            SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER {}").format(table, ident(sealing.FREEZE_TRIGGER)),
        )
        cursor.execute("SELECT set_config('partitioned_audit.maintenance', '', false)")
    console.print("   ...and verify catches it:")
    try:
        call_command("manage_partition_tables", "verify", "--expect", head, stdout=sys.stdout)
    except CommandError as exc:
        console.print(f"   [green]verify exits {exc.returncode}[/]: {exc}")
        return 0
    console.print("[red]verify did not notice the rewritten row[/]")
    return 1


if __name__ == "__main__":
    sys.exit(main())
