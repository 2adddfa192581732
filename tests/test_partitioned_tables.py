"""A registered table that is itself partitioned (by hand, behind an unmanaged model).

PostgreSQL fires a statement trigger only on the table a statement names: a write made
directly to a partition escapes the parent's triggers. Each such write must be recorded
once, under the audited table, at any depth, and TRUNCATE of the parent once too.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command
from library.models import Reading

from django_partitioned_audit.checks import check_capture_triggers
from tests.conftest import BOTH_LEVELS, both_levels
from tests.helpers import sql

# A partitioned table stays at statement level whatever its level says (TableSpec.row_level).
capture_level = pytest.fixture(params=BOTH_LEVELS)(both_levels)


def trail(read_model) -> list[tuple[str, str, str | None]]:
    """(operation, table filed under, key) of every entry of library_reading."""
    entries = read_model.objects.filter_model(Reading).order_by("pk")
    if read_model.__name__ == "SimpleAuditEntry":
        return [(e.audit_operation, e.object_table, e.object_pk) for e in entries]
    return [(e.action, e.table_name, e.object_pk) for e in entries]


def test_writes_through_the_parent_and_to_each_partition_are_recorded_once(layout, read_model):
    Reading.objects.create(id=1, taken=dt.date(2024, 5, 1), value=1)
    Reading.objects.create(id=2, taken=dt.date(2025, 8, 1), value=2)  # two levels down
    sql("INSERT INTO library_reading_2024 VALUES (3, '2024-06-01', 3)")
    sql("INSERT INTO library_reading_2025_h1 VALUES (4, '2025-02-01', 4)")
    sql("INSERT INTO library_reading_2025 VALUES (5, '2025-09-01', 5)")  # intermediate level
    sql("UPDATE library_reading_2025_h2 SET value = 20 WHERE id = 2")
    sql("DELETE FROM library_reading_2024 WHERE id = 3")
    Reading.objects.filter(id=1).update(value=10)
    expected = [("I", "library_reading", str(k)) for k in (1, 2, 3, 4, 5)]
    expected += [("U", "library_reading", "2"), ("D", "library_reading", "3"), ("U", "library_reading", "1")]
    assert trail(read_model) == expected
    payload = read_model.objects.filter_object(Reading, 2).last().get_row_data()
    assert payload["value"] == 20


def test_truncate_of_the_parent_is_recorded_once_and_of_a_partition_too(layout, read_model):
    Reading.objects.create(id=1, taken=dt.date(2024, 5, 1), value=1)
    sql("TRUNCATE library_reading")
    sql("TRUNCATE library_reading_2025_h1")
    sql("TRUNCATE library_reading_2024, library_reading_2025_h2")
    assert trail(read_model) == [("I", "library_reading", "1")] + [("T", "library_reading", None)] * 3


def test_a_partition_attached_after_migrate_is_reported_then_audited(layout, read_model):
    sql(
        "CREATE TABLE library_reading_2026 PARTITION OF library_reading FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')"
    )
    (error, *more) = [
        e for e in check_capture_triggers(databases=["default"]) if e.id == "partitioned_audit.E021"
    ]
    assert "missing on partition public.library_reading_2026: INSERT is not audited" in error.msg
    assert len(more) == 3  # UPDATE, DELETE, TRUNCATE
    Reading.objects.create(id=1, taken=dt.date(2026, 3, 1), value=1)  # through the parent: audited
    call_command("migrate", verbosity=0)
    assert check_capture_triggers(databases=["default"]) == []
    sql("INSERT INTO library_reading_2026 VALUES (2, '2026-04-01', 2)")
    assert trail(read_model) == [("I", "library_reading", "1"), ("I", "library_reading", "2")]


def test_disabling_removes_the_partitions_triggers_too(db):
    from django.db import connection

    from partitioned_audit import catalog, objects

    with connection.cursor() as cursor:
        assert objects.disable(cursor, "public", "library_reading")
        left = [t for t in catalog.audit_triggers(cursor) if t.table.startswith("library_reading")]
    assert left == []


def test_a_key_change_made_in_a_partition_is_filed_under_the_audited_table(layout, read_model):
    sql("INSERT INTO library_reading_2025_h1 VALUES (1, '2025-02-01', 1)")
    sql("UPDATE library_reading_2025_h1 SET id = 9 WHERE id = 1")
    assert trail(read_model) == [
        ("I", "library_reading", "1"),
        ("U", "library_reading", "1"),  # the key trigger, cloned onto the partition
        ("U", "library_reading", "9"),  # the partition's statement trigger
    ]
