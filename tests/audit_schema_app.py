"""What the application does in tests/test_audit_schema.py, inside the test project.

Run as ``manage.py shell -c "import audit_schema_app; audit_schema_app.write()"`` (then
``read()``), logged in as the application role: it writes audited models of two schemas
(``public`` and ``library_ext``) through the ORM, then reads the trail back through every
read path: the read models' filters, ``history()``, ``as_of()``, ``changes()``,
``get_instance()`` and the admin pages; ``context()`` runs the context search, which reads
the audit table itself. Each prints one JSON document on its last line.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from library.models import Book, Shelved
from shop.models import Customer

from django_partitioned_audit.context import audit_context
from django_partitioned_audit.models import Operation, entry_model


def write() -> None:
    with audit_context(username="alice"):
        book = Book.objects.create(isbn="111", title="Dune")
        shelf = Shelved.objects.create(name="top")
    with audit_context(username="bob"):
        book.title = "Dune Messiah"
        book.save()
        shelf.name = "bottom"
        shelf.save()
    Shelved.objects.create(name="gone").delete()
    Customer.objects.create(name="ann", password="secret")
    User.objects.create_superuser("boss", password="x")  # noqa: S106 - a scratch database's user
    print(json.dumps({"shelf": shelf.pk}))


def _ops(entries: Any) -> list[list[Any]]:
    return [[e.get_operation().name, e.object_pk] for e in entries]


def read(shelf_pk: int) -> None:
    entries = entry_model().objects
    shelf = Shelved.objects.get(pk=shelf_pk)
    book = Book.objects.get(pk="111")
    first, update = entries.filter_object(Shelved, shelf_pk).order_by("pk")
    when = getattr(first, first._time)
    since = when - dt.timedelta(days=1)
    page = entries.history(shelf)
    merged = entries.history(book, all_layouts=True)
    client = Client()
    client.force_login(User.objects.get(username="boss"))
    opts = entry_model()._meta
    changelist = client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
    detail = client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[update.pk]))
    history = client.get(reverse("admin:library_book_audit_history", args=["111"]))
    document = {
        "book": _ops(entries.filter_model(Book).order_by("pk")),
        "shelved": _ops(entries.filter_model(Shelved).order_by("pk")),
        "shelf": _ops(entries.filter_object(Shelved, shelf_pk).order_by("pk")),
        "payload": _ops(entries.filter_payload(name="bottom")),
        "deletes": _ops(entries.filter_operation(Operation.DELETE)),
        "history": [[v.operation.name, v.changes] for v in page.versions],
        "merged": [[v.operation.name, v.changes] for v in merged.versions],
        "as_of": entries.as_of(Shelved, shelf_pk, when).name,
        "instance": update.get_instance().name,
        "changes": _ops(entries.changes(Shelved, since, since + dt.timedelta(days=2))),
        "customer": [e.get_row_data()["password"] for e in entries.filter_model(Customer)],
        "admin": [changelist.status_code, detail.status_code, history.status_code],
        "admin_history_rows": history.content.decode().count('class="dpa-version"'),
    }
    print(json.dumps(document))


def context() -> None:
    """The context search (it reads the audit table itself, through its head index)."""
    entries = entry_model().objects
    print(json.dumps(_ops(entries.filter_context(username="bob").order_by("pk"))))
