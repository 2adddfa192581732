"""Where a superuser installed the audit objects, an event trigger guards the capture objects:
dropping, disabling or renaming them is refused outside the engine's own install and
uninstall, while ordinary schema changes keep working."""

from __future__ import annotations

import uuid

import pytest
from django.core.management import call_command
from django.db import connection, models
from library.models import Book, Weird

from django_partitioned_audit.checks import check_capture_triggers
from django_partitioned_audit.models import SimpleAuditEntry
from partitioned_audit import objects
from tests.helpers import sql


def refused(statement: str) -> str:
    sql("SAVEPOINT guard_test")
    try:
        sql(statement)
    except Exception as exc:  # noqa: BLE001 - Django's wrapper of the driver's error
        sql("ROLLBACK TO SAVEPOINT guard_test")
        return str(exc).splitlines()[0]
    raise AssertionError(f"the server accepted: {statement}")


def test_the_guard_is_on_where_a_superuser_installed(db):
    with connection.cursor() as cursor:
        assert objects.guard_state(cursor) == (True, True)


def test_the_guard_functions_are_the_text_of_their_template(db):
    """The guard and its helpers run the text of ``templates/guard.sql`` and, for the types a
    row reaches, of ``templates/types_reached.sql``, byte for byte; the audit helper made from
    that template runs the same text."""
    import re

    from partitioned_audit import ddl, layouts
    from partitioned_audit.sql import render

    assert "{plain_casts}" in ddl.template("guard.sql")
    # The templates as create_guard() fills them in: one body per function, in order.
    with connection.cursor() as cursor:
        rendered = "".join(render(statement, cursor) for statement in ddl.create_guard("public")[:2])
    bodies = re.findall(r"AS \$fn\$(.*?)\$fn\$", rendered, re.S)
    names = (
        layouts.GUARD_TYPES_REACHED,
        layouts.PLAIN_CASTS_FUNCTION,
        layouts.IDENTIFIER_FUNCTION,
        layouts.GUARD_FUNCTION,
    )
    deployed = [sql("SELECT prosrc FROM pg_proc WHERE proname = %s", [name])[0][0] for name in names]
    assert deployed == bodies
    assert sql("SELECT prosrc FROM pg_proc WHERE proname = %s", [layouts.TYPES_REACHED]) == [(bodies[0],)]


@pytest.mark.parametrize(
    "statement",
    [
        "DROP TRIGGER dpa_audit_ins ON library_book",
        "DROP TRIGGER dpa_audit_key ON library_book",
        "ALTER TABLE library_book DISABLE TRIGGER dpa_audit_upd",
        "ALTER TABLE library_book DISABLE TRIGGER ALL",
        "ALTER TABLE library_book ENABLE REPLICA TRIGGER dpa_audit_del",
        "ALTER TABLE library_book ENABLE TRIGGER dpa_audit_tru",
        "ALTER TRIGGER dpa_audit_ins ON library_book RENAME TO unnoticed",
        "DROP FUNCTION dpa_simple_capture() CASCADE",
        "DROP FUNCTION dpa_check_json_casts(oid)",
        "DROP FUNCTION dpa_check_type_owners(oid)",
        "DROP FUNCTION dpa_foreign_type(oid, name)",
        "DROP FUNCTION dpa_types_reached(oid)",
        # what keeps sealed rows and the seals from changing
        "ALTER TABLE audit_simple DISABLE TRIGGER dpa_seal_freeze",
        "ALTER TABLE audit_simple_default DISABLE TRIGGER dpa_seal_freeze",
        "ALTER TABLE audit_simple ENABLE TRIGGER dpa_seal_freeze_truncate",
        "DROP TRIGGER dpa_seal_freeze ON audit_simple",
        "ALTER TABLE audit_simple_seal DISABLE TRIGGER dpa_seal_append_only",
        "DROP TRIGGER dpa_seal_append_only_truncate ON audit_simple_seal",
        "DROP TABLE audit_simple_seal",
        "DROP FUNCTION dpa_simple_freeze() CASCADE",
        "DROP FUNCTION dpa_simple_seal(integer, integer)",
    ],
)
def test_dropping_disabling_or_renaming_a_capture_object_is_refused(db, statement):
    assert refused(statement).startswith("partitioned_audit: refusing ")
    assert check_capture_triggers(databases=["default"]) == []  # nothing changed
    Book.objects.create(isbn="1", title="a")
    assert SimpleAuditEntry.objects.filter_model(Book).count() == 1


def test_ordinary_schema_changes_keep_working(db):
    sql("ALTER TABLE library_book ADD COLUMN extra int")
    sql("ALTER TABLE library_book RENAME COLUMN extra TO spare")
    sql("ALTER TABLE library_book DROP COLUMN spare")
    sql("ALTER TABLE shop_order RENAME TO shop_order_renamed")
    sql("ALTER TABLE shop_order_renamed RENAME TO shop_order")
    sql("CREATE TABLE scratch (id int PRIMARY KEY)")
    with connection.cursor() as cursor:
        from partitioned_audit import SIMPLE, TableSpec, enable

        enable(cursor, SIMPLE, TableSpec("public", "scratch", ("id",)))
    sql("DROP TABLE scratch")  # its triggers go with it
    call_command("flush", verbosity=0, interactive=False)


def test_a_table_owner_setting_the_bypass_is_refused_all_the_same(db):
    role = f"dpa_owner_{uuid.uuid4().hex[:8]}"
    sql(f"CREATE ROLE {role}")
    sql(f"ALTER TABLE library_book OWNER TO {role}")
    sql(f"SET LOCAL ROLE {role}")
    sql("SELECT set_config('partitioned_audit.maintenance', 'on', true)")
    assert refused("DROP TRIGGER dpa_audit_ins ON library_book").startswith("partitioned_audit: refusing ")
    assert refused("ALTER TABLE library_book DISABLE TRIGGER dpa_audit_ins").startswith(
        "partitioned_audit: refusing "
    )
    sql("RESET ROLE")
    # The same for the owner of the audit table and the seals: the freeze stays on.
    for table in ("audit_simple", "audit_simple_seal"):
        sql(f"ALTER TABLE {table} OWNER TO {role}")
    sql(f"SET LOCAL ROLE {role}")
    sql("SELECT set_config('partitioned_audit.maintenance', 'on', true)")
    for statement in (
        "ALTER TABLE audit_simple DISABLE TRIGGER dpa_seal_freeze",
        "ALTER TABLE audit_simple_seal DISABLE TRIGGER dpa_seal_append_only",
        "DROP TABLE audit_simple_seal",
    ):
        assert refused(statement).startswith("partitioned_audit: refusing "), statement
    sql("RESET ROLE")


def test_without_the_guard_the_check_says_so_and_a_superuser_migrate_restores_it(db):
    sql("DROP EVENT TRIGGER dpa_guard_drop")
    (warning,) = [
        m for m in check_capture_triggers(databases=["default"]) if m.id == "partitioned_audit.W022"
    ]
    assert "no event trigger guards the capture objects" in warning.msg
    # The triggers' arguments say what the capture checks, which depends on the guard.
    outdated = [
        m.msg for m in check_capture_triggers(databases=["default"]) if m.id == "partitioned_audit.E021"
    ]
    assert outdated and all("is outdated or belongs to another layout" in msg for msg in outdated)
    call_command("migrate", verbosity=0)
    assert check_capture_triggers(databases=["default"]) == []
    with connection.cursor() as cursor:
        assert objects.guard_state(cursor) == (True, True)


def test_a_django_alter_field_that_changes_a_column_type_passes_the_guard(db):
    """AlterField writes ``ALTER COLUMN "c" TYPE t USING "c"::t``: a plain cast, let through."""
    Weird.objects.create(select=7, label="x")
    old = Weird._meta.get_field("select")
    new = models.BigIntegerField(default=0, db_column="select")
    new.set_attributes_from_name("select")
    new.model = Weird
    with connection.schema_editor() as editor:
        editor.alter_field(Weird, old, new)
    assert sql(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
        "'\"Weird Name Table\"'::regclass AND attname = 'select'"
    ) == [("bigint",)]
    assert sql('SELECT "select" FROM "Weird Name Table"') == [(7,)]


def test_a_type_change_that_rewrites_values_is_refused(db):
    Weird.objects.create(select=7, label="x")
    assert refused('ALTER TABLE "Weird Name Table" ALTER COLUMN "select" TYPE bigint USING "select" * 2') == (
        "partitioned_audit: refusing ALTER TABLE on public.Weird Name Table: a USING expression that is not a"
        " plain cast of the altered column (column::type) would change audited values without an audit row"
    )
    assert sql('SELECT "select" FROM "Weird Name Table"') == [(7,)]
