"""Several databases: each gets what its router allows, and migrate touches only its own."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connections, router
from django.test.utils import CaptureQueriesContext
from shop.models import Customer, Order

from django_partitioned_audit.models import SimpleAuditEntry
from django_partitioned_audit.sync import sync
from partitioned_audit import catalog
from tests.helpers import past_the_guard, sql

pytestmark = pytest.mark.django_db(databases=["default", "other"])


def audited_tables(using: str) -> set[str]:
    with connections[using].cursor() as cursor:
        return {t.table for t in catalog.audit_triggers(cursor)}


def test_each_database_is_audited_as_its_router_allows():
    assert {"shop_order", "library_book"} <= audited_tables("default")
    other = audited_tables("other")
    assert "shop_order" in other and not any(t.startswith("library") for t in other)
    assert sql("SELECT to_regclass('library_book')", using="other") == [(None,)]
    # Writes on one database are read back from it, and only from it.
    customer = Customer.objects.using("other").create(name="Other")
    order = Order.objects.using("other").create(customer=customer, total="5.00")
    entries = SimpleAuditEntry.objects.using("other").filter_object(Order, order.pk)
    assert [e.audit_operation for e in entries] == ["I"]
    assert entries[0].get_instance().customer_id == customer.pk  # read from "other" too
    assert not SimpleAuditEntry.objects.using("default").filter_model(Customer).exists()


def test_sync_touches_only_the_database_it_is_given():
    for using in ("default", "other"):
        past_the_guard("DROP TRIGGER dpa_audit_ins ON shop_order", using=using)
    sync("other", verbosity=0)
    assert "dpa_audit_ins" in triggers_on("other", "shop_order")
    assert "dpa_audit_ins" not in triggers_on("default", "shop_order")


def test_a_router_that_refuses_the_app_leaves_the_database_alone(monkeypatch):
    class NoAuditOnOther:
        def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
            return False if db == "other" and app_label == "django_partitioned_audit" else None

    past_the_guard("DROP TRIGGER dpa_audit_ins ON shop_order", using="other")
    monkeypatch.setattr(router, "routers", [NoAuditOnOther()])
    with CaptureQueriesContext(connections["other"]) as queries:
        sync("other", verbosity=0)
    assert len(queries) == 0
    assert "dpa_audit_ins" not in triggers_on("other", "shop_order")


def triggers_on(using: str, table: str) -> set[str]:
    return {t.name for t in catalog.audit_triggers(connections[using].cursor()) if t.table == table}
