"""Run one phase of the upgrade test: ``write`` under 1.0.4, ``read`` under 2.0 (after migrate)."""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ["DJANGO_SETTINGS_MODULE"] = "legacy_settings"

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from legacyapp.models import Item  # noqa: E402

from django_partitioned_audit.models import AdvancedAuditEntry, SimpleAuditEntry  # noqa: E402

advanced = os.environ.get("LEGACY_LAYOUT") == "advanced"
read_model = AdvancedAuditEntry if advanced else SimpleAuditEntry

if sys.argv[1] == "write":
    call_command("migrate", verbosity=0)
    call_command("manage_partition_tables", "create", "--extra-days=0")
    item = Item.objects.create(name="first", qty=42, flag=True)
    item.name = "renamed"
    item.save()
    Item.objects.create(name="second", qty=None)
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM legacyapp_item WHERE name = 'second'")
elif sys.argv[1] == "read":
    call_command("migrate", verbosity=0)
    if sys.argv[2:] == ["more"]:
        Item.objects.create(name="after upgrade", qty=7)
    entries = [
        {
            "op": "IUDT"["IUDT".index(e.audit_operation if not advanced else e.action)],
            "row": e.get_row_data(),
            "qty42": read_model.objects.filter_model(Item).filter_payload(qty=42).filter(pk=e.pk).exists(),
            "qty42text": read_model.objects.filter_model(Item)
            .filter_payload(qty="42")
            .filter(pk=e.pk)
            .exists(),
        }
        for e in read_model.objects.filter_model(Item).order_by("pk")
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass ORDER BY 1",
            [read_model._meta.db_table.removesuffix("_view")],
        )
        partitions = cursor.fetchall()
    print(json.dumps({"entries": entries, "partitions": partitions}))
