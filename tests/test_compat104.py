"""1.0.4's Python API at its import paths, over the engine: its signatures, its behaviour
where 2.0 does not deliberately differ, a DeprecationWarning naming the replacement, and
none of its bugs. ``make compat`` runs 1.0.4's own suite; these pin what it relies on."""

from __future__ import annotations

import datetime as dt
from unittest.mock import PropertyMock, patch

import pytest
from django.db import connection
from library.models import Book

from django_partitioned_audit import signals, utils
from django_partitioned_audit.audit_table.audit_table_manager import AuditTableManager
from django_partitioned_audit.audit_table.simple_audit_table_manager import SimpleAuditTableManager
from django_partitioned_audit.models import SimpleAuditEntry
from django_partitioned_audit.partitions.partition_info import PartitionInfo
from django_partitioned_audit.partitions.partition_manager_plan import Plan, Status
from django_partitioned_audit.partitions.partition_manager_time_range import PartitionManager
from django_partitioned_audit.partitions.time_range_partitioning import (
    MonthlyTimeRangeGenerator,
    NotImplementedTimeRangeGenerator,
)
from tests.helpers import past_the_guard, sql

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def manager(**kwargs):
    return PartitionManager(time_range_generator=MonthlyTimeRangeGenerator(), **kwargs)


def test_each_entry_point_warns_and_names_its_replacement(db):
    with pytest.warns(DeprecationWarning, match=r"PartitionManager is 1\.0\.4's API.*maintainer\(using\)"):
        manager()
    info = PartitionInfo.create("t", dt.date(2024, 1, 1), dt.date(2024, 2, 1))
    with pytest.warns(DeprecationWarning, match=r"generate_create_partition\(\).*maintainer\(\)\.create"):
        info.generate_create_partition()
    with pytest.warns(DeprecationWarning, match=r"Plan is 1\.0\.4's API.*partitioning\.plan\.plan\(\)"):
        Plan()


def test_planning_touches_no_database_and_reads_only_today_and_the_existing_partitions():
    """No ``db`` fixture: any query here would fail the test."""
    existing = [PartitionInfo.create("audit_simple", dt.date(1991, 3, 1), dt.date(1991, 4, 1))]
    pm = manager(extra_days=40)
    with (
        patch.object(PartitionManager, "today", new_callable=PropertyMock, return_value=dt.date(1991, 3, 10)),
        patch.object(PartitionManager, "get_existing_partitions", return_value=existing),
    ):
        plan = pm.generate_plan()
    assert plan.existing_partitions == existing
    assert plan.partitions_to_create == [
        PartitionInfo.create("audit_simple", dt.date(1991, 4, 1), dt.date(1991, 5, 1))
    ]
    assert plan.status is Status.MISSING_NEXT


def test_a_partition_far_past_the_days_to_cover_does_not_loop_forever():
    """1.0.4 only walked forward from its newest partition: with one in 2099 it never ended."""
    import threading

    far = [PartitionInfo.create("audit_simple", dt.date(2099, 1, 1), dt.date(2099, 2, 1))]
    result = {}

    def plan() -> None:
        with (
            patch.object(
                PartitionManager, "today", new_callable=PropertyMock, return_value=dt.date(2024, 5, 6)
            ),
            patch.object(PartitionManager, "get_existing_partitions", return_value=far),
        ):
            result["plan"] = manager(extra_days=10).generate_plan()

    worker = threading.Thread(target=plan, daemon=True)
    worker.start()
    worker.join(10)
    assert "plan" in result, "generate_plan() did not return"
    assert [p.partition for p in result["plan"].partitions_to_create] == ["audit_simple_20240501_20240601"]


def test_the_monthly_scheme_realigns_on_the_first_of_the_month_as_104_did():
    pm = manager()
    short = PartitionInfo.create("part", dt.date(1991, 1, 1), dt.date(1991, 1, 20))
    assert pm.new_partition(short) == PartitionInfo.create("part", dt.date(1991, 1, 20), dt.date(1991, 2, 1))
    assert pm.new_partition(pm.new_partition(short)) == PartitionInfo.create(
        "part", dt.date(1991, 2, 1), dt.date(1991, 3, 1)
    )
    with pytest.raises(NotImplementedError):
        NotImplementedTimeRangeGenerator().new_partition(short.time_range)


def test_partition_info_parses_as_104_did():
    assert PartitionInfo.parse("not a partition") is None
    info = PartitionInfo.parse("some_table_19980102_19990304")
    assert (info.partitioned_table, info.from_date, info.to_date) == (
        "some_table",
        dt.date(1998, 1, 2),
        dt.date(1999, 3, 4),
    )
    with pytest.raises(ValueError, match="must be before"):
        PartitionInfo.parse("some_table_19990304_19990304")


def test_the_104_plan_checks_itself():
    a = PartitionInfo.create("t", dt.date(2024, 1, 1), dt.date(2024, 2, 1))
    b = PartitionInfo.create("t", dt.date(2024, 2, 1), dt.date(2024, 3, 1))
    c = PartitionInfo.create("t", dt.date(2024, 4, 1), dt.date(2024, 5, 1))
    plan = Plan()
    plan.existing_partitions.append(a)
    plan.partitions_to_create.append(b)
    plan.validate_all()
    assert (
        plan.last_partition == b
        and plan.covers_date(dt.date(2024, 2, 29))
        and not plan.covers_date(dt.date(2024, 3, 1))
    )
    plan.calculate_status(dt.date(2024, 1, 15), extra_days=20)
    assert plan.status is Status.MISSING_NEXT
    with pytest.raises(ValueError, match="already set"):
        plan.calculate_status(dt.date(2024, 1, 15), extra_days=20)
    with pytest.raises(Exception, match="Invalid"):
        Plan(existing_partitions=[a, c]).validate_existing_partitions()


def test_the_managers_statement_creates_a_partition_with_utc_bounds(db):
    table = SimpleAuditTableManager().partitioned_table_name
    info = PartitionInfo.create(table, dt.date(1990, 1, 1), dt.date(1990, 2, 1))
    statement, params = info.generate_create_partition()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL TimeZone = 'Asia/Tokyo'")
        cursor.execute(statement, params)
    bound = sql("SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = %s", [info.partition])
    assert bound == [("FOR VALUES FROM ('1990-01-01 09:00:00+09') TO ('1990-02-01 09:00:00+09')",)]


def test_drop_all_removes_the_layout_and_migrate_brings_it_back(db):
    from django.core.management import call_command

    with (
        connection.cursor() as cursor,
        pytest.warns(DeprecationWarning, match=r"drop_all\(\).*partitioned_audit\.uninstall"),
    ):
        AuditTableManager.get_implementation().drop_all(cursor)
    assert sql("SELECT to_regclass('audit_simple'), to_regclass('audit_simple_view')") == [(None, None)]
    assert sql("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'dpa_audit_%'") == [(0,)]
    call_command("migrate", verbosity=0)
    Book.objects.create(isbn="after", title="x")
    assert SimpleAuditEntry.objects.filter_model(Book).count() == 1


def test_the_104_post_migrate_handler_and_helpers_run_the_sync(db):
    class Config:
        trigger_audit_models = ("Book",)

    assert utils.get_enabled_models(Config()) == ["Book"] and utils.get_disabled_models(Config()) == []
    past_the_guard("DROP TRIGGER dpa_audit_ins ON library_book")
    signals.audit_run_post_migrate(Config(), verbosity=0, using="default")
    Book.objects.create(isbn="s", title="x")
    assert SimpleAuditEntry.objects.filter_model(Book).count() == 1


def test_the_104_manager_disables_and_enables_a_tables_auditing(db):
    from tests.test_trigger_state import trigger_states

    audit = AuditTableManager.get_implementation()
    with connection.cursor() as cursor:
        with pytest.warns(
            DeprecationWarning, match=r"disable_audit_for_table\(\).*partitioned_audit\.disable"
        ):
            audit.disable_audit_for_table(cursor, "library_book")
        assert trigger_states() == {}
        Book.objects.create(isbn="quiet", title="x")
        with pytest.warns(DeprecationWarning, match=r"enable_audit_for_table\(\).*partitioned_audit\.enable"):
            audit.enable_audit_for_table(cursor, "library_book")
    Book.objects.create(isbn="heard", title="y")
    assert [e.object_pk for e in SimpleAuditEntry.objects.filter_model(Book)] == ["heard"]
