"""Installing, upgrading, switching and removing the audit objects."""

from __future__ import annotations

import io

import django
import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from library.models import Book

from django_partitioned_audit.sync import sync
from partitioned_audit import ADVANCED, SIMPLE, Status, catalog, layout_status, objects
from tests.conftest import MANAGERS
from tests.helpers import sql

# The unmanaged, partitioned Reading table and every partition below it.
READINGS = {"library_reading", "library_reading_2024", "library_reading_2025"} | {
    "library_reading_2025_h1",
    "library_reading_2025_h2",
}


def _triggers() -> dict[str, set[str]]:
    with connection.cursor() as cursor:
        found: dict[str, set[str]] = {}
        for t in catalog.audit_triggers(cursor):
            found.setdefault(t.table, set()).add(t.name)
    return found


def test_migrate_installs_triggers_on_registered_tables_only(db):
    triggers = _triggers()
    copies = {"library_copy"} if django.VERSION >= (5, 2) else set()  # composite key, Django 5.2+
    assert (
        set(triggers)
        == {"shop_customer", "shop_order", "library_book", "Weird Name Table", "shelved"} | copies | READINGS
    )
    assert triggers["library_book"] == {
        "dpa_audit_ins",
        "dpa_audit_upd",
        "dpa_audit_del",
        "dpa_audit_tru",
        "dpa_audit_key",
    }


def test_second_sync_only_reads(db):
    with CaptureQueriesContext(connection) as ctx:
        sync("default", verbosity=0)
    statements = [q["sql"].lstrip().split()[0].upper() for q in ctx.captured_queries]
    assert set(statements) <= {"SELECT", "WITH", "SAVEPOINT", "RELEASE"}, statements
    # migrations table exists?, migration applied?, layout status, deployed functions, the seal
    # table's triggers, the read views, the object function, the context partitions' storage
    # setting, existing tables, triggers,
    # partitions of the audited tables, owners of their types, their virtual columns, the
    # guard (for the triggers' arguments), a 1.0.4 backfill pending?, indexes an upgrade left
    # to build?, superuser and event-trigger guard
    assert statements.count("SELECT") + statements.count("WITH") == 17


def test_migrate_twice_reports_nothing_to_do(db):
    out = io.StringIO()
    call_command("migrate", verbosity=1, stdout=out)
    assert "Enabled auditing" not in out.getvalue() and "now installed" not in out.getvalue()


def test_switching_layout_replaces_triggers(settings, db):
    from django_partitioned_audit.models import AdvancedAuditEntry, SimpleAuditEntry

    settings.DPA_AUDIT_TABLE_MANAGER = MANAGERS["advanced"]
    out = io.StringIO()
    call_command("migrate", verbosity=1, stdout=out)
    assert "Enabled auditing for library.Book" in out.getvalue()
    assert _triggers()["library_book"] == {
        "dpa_audit_ins",
        "dpa_audit_upd",
        "dpa_audit_del",
        "dpa_audit_tru",
        "dpa_audit_key",
    }
    Book.objects.create(isbn="1", title="a")
    assert AdvancedAuditEntry.objects.filter_model(Book).count() == 1
    assert SimpleAuditEntry.objects.filter_model(Book).count() == 0
    settings.DPA_AUDIT_TABLE_MANAGER = MANAGERS["simple"]
    call_command("migrate", verbosity=0)
    functions = sql(
        "SELECT DISTINCT tgfoid::regproc::text FROM pg_trigger WHERE tgrelid = 'library_book'::regclass"
        " AND tgname LIKE 'dpa_audit_%' ORDER BY 1"
    )
    row = [("dpa_simple_capture_row",)] if settings.DPA_CAPTURE_LEVEL == "row" else []
    assert functions == [("dpa_simple_capture",), ("dpa_simple_capture_key",), *row]
    Book.objects.create(isbn="2", title="b")
    assert SimpleAuditEntry.objects.filter_model(Book).count() == 1


def test_audit_disabled_removes_triggers(db):
    from tests.test_registration import app_attr

    with app_attr("library", trigger_audit_models=("Weird", "Shelved"), audit_disabled=("Book", "Loan")):
        out = io.StringIO()
        sync("default", verbosity=1, stdout=out)
    assert "Disabled auditing for library.Book (table 'library_book')" in out.getvalue()
    assert "library_book" not in _triggers()


def test_outdated_function_is_replaced(db):
    sql("COMMENT ON FUNCTION dpa_simple_capture() IS 'partitioned_audit 0000'")
    with connection.cursor() as cursor:
        assert layout_status(cursor, SIMPLE).status is Status.OUTDATED
        assert objects.install(cursor, SIMPLE) is Status.OUTDATED
        assert layout_status(cursor, SIMPLE).status is Status.INSTALLED


def test_gin_index_is_opt_in(settings, db):
    def has_gin() -> bool:
        return bool(sql("SELECT 1 FROM pg_indexes WHERE indexname = 'idx_audit_simple'"))

    assert not has_gin()
    settings.DPA_PAYLOAD_GIN_INDEX = True
    sync("default", verbosity=0)
    assert has_gin()
    settings.DPA_PAYLOAD_GIN_INDEX = False
    sync("default", verbosity=0)
    assert not has_gin()


def test_migrating_to_zero_removes_triggers_and_keeps_rows(db):
    Book.objects.create(isbn="1", title="a")
    call_command("migrate", "django_partitioned_audit", "zero", verbosity=0)
    assert _triggers() == {}
    assert sql("SELECT count(*) FROM audit_simple WHERE object_table = 'library_book'") == [(1,)]
    Book.objects.create(isbn="2", title="b")  # writes keep working without auditing
    call_command("migrate", verbosity=0)
    assert "library_book" in _triggers()


def test_uninstall_with_data(db):
    with connection.cursor() as cursor:
        objects.uninstall(cursor, SIMPLE, drop_data=True)
        assert layout_status(cursor, SIMPLE).status is Status.MISSING
    assert _triggers() == {}
    assert sql("SELECT to_regproc('dpa_pk_text')") == [(None,)]
    # The last layout takes every function with it: the helpers and the guard's.
    assert sql("SELECT proname FROM pg_proc WHERE starts_with(proname, 'dpa_')") == []


def test_audit_schema_setting(settings, db):
    """The audit objects can live in their own schema."""
    settings.DPA_AUDIT_SCHEMA = "audit trail"
    settings.DPA_AUDIT_TABLE_MANAGER = MANAGERS["advanced"]
    sync("default", verbosity=0)
    Book.objects.create(isbn="9", title="z")
    assert sql('SELECT object_pk FROM "audit trail".logged_actions') == [("9",)]
    assert sql("SELECT to_regclass('public.logged_actions')") == [(None,)]


@pytest.mark.parametrize("layout", [SIMPLE, ADVANCED], ids=lambda layout: layout.name)
def test_install_is_idempotent_per_layout(db, layout):
    with connection.cursor() as cursor:
        objects.install(cursor, layout)
        assert objects.install(cursor, layout) is Status.INSTALLED


@pytest.mark.parametrize("layout", [SIMPLE, ADVANCED], ids=lambda layout: layout.name)
def test_the_helpers_and_the_read_functions_run_the_text_of_their_templates(db, layout):
    """Each helper the capture functions share, and each read function of the layout, runs the
    text of its template in ``templates/``, byte for byte; the header above the marker line
    is not deployed (nor hashed into the function digest)."""
    import re

    from partitioned_audit import ddl
    from partitioned_audit.layouts import HELPERS, PREFIX, TYPES_REACHED
    from partitioned_audit.sql import ident, render

    # One template a helper, named after it; with the one the guard shares, every helper.
    names = [PREFIX + file.removesuffix(".sql") for file in ddl.HELPER_TEMPLATES]
    assert {*names, TYPES_REACHED} == {name for name, _ in HELPERS}
    with connection.cursor() as cursor:
        objects.install(cursor, layout)
        rendered = render(
            ddl.create_functions(layout, "public", render(ident("public", layout.sequence), cursor)), cursor
        )
        read_functions = "".join(
            render(ddl.create_read_function(layout, "public", name), cursor)
            for name, _, _ in layout.read_functions
        )
    templates = [
        *zip(names, ddl.HELPER_TEMPLATES, strict=True),
        *((name, file) for name, _, file in layout.read_functions),
    ]
    for name, file in templates:
        header = ddl.template(file).partition(ddl.DEPLOYED_BELOW)[0]
        assert header.startswith(f"-- {name.replace(layout.table, '<audit table>')}")
        assert ddl.DEPLOYED_BELOW not in ddl.deployed(file)
        assert not any(line in rendered + read_functions for line in header.splitlines())
    # The bodies in the order create_functions() makes them: the types a row reaches, then
    # the helpers of HELPER_TEMPLATES, then the captures; then the read functions.
    bodies = re.findall(r"AS \$fn\$(.*?)\$fn\$", rendered, re.S)[1 : 1 + len(names)]
    bodies += re.findall(r"AS \$fn\$(.*?)\$fn\$", read_functions, re.S)
    found = sql(
        "SELECT p.prosrc FROM unnest(%s::text[]) WITH ORDINALITY AS f(name, o)"
        " JOIN pg_proc p ON p.proname = f.name JOIN pg_namespace n ON n.oid = p.pronamespace"
        " AND n.nspname = 'public' ORDER BY f.o",
        [[*names, *(name for name, _, _ in layout.read_functions)]],
    )
    assert [body for (body,) in found] == bodies
