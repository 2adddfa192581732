"""A capture trigger that is missing or does not fire is reported, repaired by migrate, and
fires in every session, replication role included."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from library.models import Book

from django_partitioned_audit.checks import check_capture_triggers, check_unregistered_triggers
from django_partitioned_audit.models import SimpleAuditEntry
from tests.conftest import BOTH_LEVELS
from tests.helpers import past_the_guard, sql


@pytest.fixture(autouse=True, params=BOTH_LEVELS)
def capture_level(request: pytest.FixtureRequest, settings, db) -> str:
    """Every test here holds at both capture levels: the triggers are reinstalled at the
    level, inside the test's transaction."""
    from django_partitioned_audit.sync import sync

    settings.DPA_CAPTURE_LEVEL = request.param
    sync("default", verbosity=0)
    return str(request.param)


def e021() -> list[str]:
    return [e.msg for e in check_capture_triggers(databases=["default"]) if e.id == "partitioned_audit.E021"]


def trigger_states(table: str = "library_book") -> dict[str, str]:
    rows = sql(
        "SELECT tgname, tgenabled::text FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname LIKE 'dpa%%'",
        [table],
    )
    return dict(rows)


def test_installed_triggers_fire_always_and_the_check_is_quiet(db):
    assert set(trigger_states().values()) == {"A"}
    assert e021() == []


@pytest.mark.parametrize(
    ("statement", "reported"),
    [
        (
            "ALTER TABLE library_book DISABLE TRIGGER dpa_audit_ins",
            "capture trigger dpa_audit_ins is disabled",
        ),
        ("ALTER TABLE library_book DISABLE TRIGGER ALL", "capture trigger dpa_audit_upd is disabled"),
        (
            "ALTER TABLE library_book ENABLE TRIGGER dpa_audit_del",
            "capture trigger dpa_audit_del is enabled for origin sessions only",
        ),
        (
            "ALTER TABLE library_book ENABLE REPLICA TRIGGER dpa_audit_ins",
            "capture trigger dpa_audit_ins is enabled on replicas only",
        ),
        ("DROP TRIGGER dpa_audit_tru ON library_book", "capture trigger dpa_audit_tru is missing: TRUNCATE"),
    ],
)
def test_a_trigger_that_does_not_fire_is_reported_and_migrate_repairs_it(db, statement, reported):
    past_the_guard(statement)
    errors = e021()
    assert any(
        msg.startswith("Table public.library_book on database 'default': " + reported) for msg in errors
    ), errors
    with pytest.raises(CommandError, match="partitioned_audit.E021"):
        call_command("check", "--database", "default", "--fail-level", "ERROR", stderr=io.StringIO())
    call_command("migrate", verbosity=0)
    assert set(trigger_states().values()) == {"A"} and len(trigger_states()) == 5
    assert e021() == []
    Book.objects.create(isbn="1", title="a")
    Book.objects.filter(isbn="1").update(title="b")
    Book.objects.filter(isbn="1").delete()
    assert [e.audit_operation for e in SimpleAuditEntry.objects.filter_model(Book)] == ["I", "U", "D"]


def test_a_replica_session_is_audited(db):
    """session_replication_role = replica (a superuser's bulk load) skips ordinary triggers."""
    sql("SET LOCAL session_replication_role = replica")
    Book.objects.create(isbn="1", title="a")
    sql("SET LOCAL session_replication_role = origin")
    assert SimpleAuditEntry.objects.filter_model(Book).count() == 1


def test_a_long_reader_of_the_trail_holds_up_partitions_but_not_trigger_repairs(
    transactional_db, monkeypatch
):
    from django.db import connection

    from django_partitioned_audit import sync
    from django_partitioned_audit.maintenance import ensure_current_and_next
    from partitioned_audit.partitioning.maintenance import LockPolicy
    from tests.engine_db import connect
    from tests.helpers import attached_partitions, detach_all_dated_partitions

    monkeypatch.setattr(sync, "MIGRATE_LOCK_POLICY", LockPolicy(lock_timeout_ms=50, attempts=2, pause_ms=10))
    detach_all_dated_partitions()
    past_the_guard("ALTER TABLE library_book DISABLE TRIGGER dpa_audit_ins")
    reader = connect(connection.settings_dict["NAME"])
    try:
        reader.cursor().execute("SELECT count(*) FROM audit_simple_view")  # holds its locks until rollback
        out = io.StringIO()
        call_command("migrate", verbosity=0, stdout=out)
        assert (
            "Warning: partitions not created now: partition maintenance of public.audit_simple"
            in out.getvalue()
        )
        assert trigger_states()["dpa_audit_ins"] == "A"  # committed although the partitions waited
        Book.objects.create(isbn="1", title="a")
        assert SimpleAuditEntry.objects.filter_model(Book).count() == 1
        assert attached_partitions() == ["audit_simple_default"]
    finally:
        reader.rollback()
        reader.close()
        ensure_current_and_next()
        sql("TRUNCATE audit_simple")
    assert len(attached_partitions()) == 3  # the current and next month, and the DEFAULT


def w023() -> list[str]:
    return [
        m.msg for m in check_unregistered_triggers(databases=["default"]) if m.id == "partitioned_audit.W023"
    ]


def test_a_model_taken_out_of_the_list_keeps_its_triggers_and_a_warning_names_its_table(db, monkeypatch):
    from django.apps import apps

    config = apps.get_app_config("library")
    assert w023() == []
    kept = tuple(name for name in config.trigger_audit_models if name != "Book")
    monkeypatch.setattr(config, "trigger_audit_models", kept)
    warnings = w023()
    assert [w.split(" has ")[0] for w in warnings] == ["Table public.library_book on database 'default'"]
    Book.objects.create(isbn="1", title="a")  # still audited: the triggers are still there
    assert SimpleAuditEntry.objects.filter_model(Book).count() == 1
    assert len(trigger_states()) == 5

    monkeypatch.setattr(config, "audit_disabled", ("Loan", "Book"))
    hints = [m.hint for m in check_unregistered_triggers(databases=["default"])]
    assert len(hints) == 1 and "migrate" in hints[0]
    call_command("migrate", verbosity=0)
    assert trigger_states() == {} and w023() == []


def test_a_capture_trigger_replaced_under_its_name_is_reported_and_migrate_repairs_it(db, capture_level):
    """CREATE OR REPLACE TRIGGER keeps the name and the comment; ENABLE ALWAYS the state."""
    sql("CREATE FUNCTION public.noop() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END'")
    past_the_guard(
        "CREATE OR REPLACE TRIGGER dpa_audit_del AFTER DELETE ON library_book FOR EACH STATEMENT"
        " EXECUTE FUNCTION public.noop()"
    )
    past_the_guard("ALTER TABLE library_book ENABLE ALWAYS TRIGGER dpa_audit_del")
    capture = "dpa_simple_capture_row" if capture_level == "row" else "dpa_simple_capture"
    assert e021() == [
        "Table public.library_book on database 'default': capture trigger dpa_audit_del is replaced: it "
        f"executes public.noop() instead of public.{capture}(); its writes can escape the audit trail."
    ]
    call_command("migrate", verbosity=0)
    assert e021() == []
    Book.objects.create(isbn="1", title="a")
    Book.objects.filter(isbn="1").delete()
    assert [e.audit_operation for e in SimpleAuditEntry.objects.filter_model(Book)] == ["I", "D"]


@pytest.mark.parametrize(
    ("statement", "reported"),
    [
        (
            "CREATE OR REPLACE FUNCTION public.dpa_simple_capture() RETURNS trigger LANGUAGE plpgsql"
            " SECURITY DEFINER AS $fn$BEGIN RETURN NULL; END$fn$",
            "its body differs",
        ),
        (
            "ALTER FUNCTION public.dpa_redact(jsonb, text[], text[]) SET search_path = public",
            "its configuration differs",
        ),
    ],
)
def test_a_replaced_capture_function_is_reported_and_migrate_repairs_it(
    db, statement, reported, capture_level
):
    """Its COMMENT still carries the installed digest: the check reads the definition itself."""
    capture = "dpa_simple_capture_row" if capture_level == "row" else "dpa_simple_capture"
    past_the_guard(statement.replace("dpa_simple_capture()", f"{capture}()"))  # the INSERT's
    Book.objects.create(isbn="0", title="unaudited")
    assert SimpleAuditEntry.objects.filter_model(Book).count() == (0 if "body" in reported else 1)
    name = capture if "body" in reported else "dpa_redact"
    assert e021() == [
        f"Database 'default': capture function public.{name} is not the one this version installs: "
        f"{reported}; audited writes run it, so they can escape the audit trail."
    ]
    call_command("migrate", verbosity=0)
    assert e021() == []
    Book.objects.create(isbn="1", title="a")
    assert SimpleAuditEntry.objects.filter_model(Book).filter_payload(isbn="1").count() == 1
