"""Audit table, default partition, indexes, view and capture functions (object version 2.0).

On a database used by 1.0.4 this upgrades the existing table in place.
"""

from typing import Any

from django.db import migrations, models

from django_partitioned_audit.conf import read_model_table


def install(apps: Any, schema_editor: Any) -> None:
    from django_partitioned_audit import conf
    from partitioned_audit import objects

    with schema_editor.connection.cursor() as cursor:
        objects.install(cursor, conf.layout(), conf.audit_schema(), conf.payload_gin_index())


def uninstall(apps: Any, schema_editor: Any) -> None:
    """Remove triggers and functions; audit rows are kept (drop them by hand if you mean it)."""
    from django_partitioned_audit import conf
    from partitioned_audit import objects

    with schema_editor.connection.cursor() as cursor:
        objects.uninstall(cursor, conf.layout(), conf.audit_schema(), drop_data=False)


class Migration(migrations.Migration):
    initial = True
    dependencies: list[tuple[str, str]] = []
    operations = [
        migrations.RunPython(install, uninstall, elidable=False),
        migrations.CreateModel(
            name="SimpleAuditEntry",
            fields=[("id", models.BigIntegerField(primary_key=True, serialize=False))],
            options={
                "managed": False,
                # Follows DPA_AUDIT_SCHEMA, like the model, so no migration is ever pending for it.
                "db_table": read_model_table("audit_simple_view"),
                "ordering": ("id",),
                "verbose_name_plural": "simple audit entries",
            },
        ),
        migrations.CreateModel(
            name="AdvancedAuditEntry",
            fields=[("event_id", models.BigIntegerField(primary_key=True, serialize=False))],
            options={
                "managed": False,
                "db_table": read_model_table("logged_actions_view"),
                "ordering": ("event_id",),
                "verbose_name_plural": "advanced audit entries",
            },
        ),
    ]
