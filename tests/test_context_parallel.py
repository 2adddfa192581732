"""Context searches plan without parallel workers on a server with default settings: the
context table and its partitions carry ``parallel_workers = 0``, set by install, kept by
maintenance and repaired by ``migrate``."""

from __future__ import annotations

import datetime as dt

from django.db import connection
from library.models import Book

from django_partitioned_audit.context import audit_context
from django_partitioned_audit.maintenance import maintainer
from partitioned_audit import objects
from partitioned_audit.layouts import get_layout
from partitioned_audit.partitioning.ranges import MonthlyTimeRangeGenerator, PartitionInfo
from tests.test_read_api import context_probes, function_plans

#: Settings that make a parallel plan the cheapest for any table, however small: what a
#: large trail does to the planner's costs on a default server. Tiny test tables would make
#: a sequential scan cheapest; it is forbidden, so the context is read by its indexes.
EAGER_PARALLEL = (
    "enable_seqscan = off",
    "max_parallel_workers_per_gather = 2",
    "parallel_setup_cost = 0",
    "parallel_tuple_cost = 0",
    "min_parallel_table_scan_size = 0",
    "min_parallel_index_scan_size = 0",
)


def eager_plan(queryset) -> str:
    """``queryset``'s plan with parallel workers as cheap as they can be, in the test's
    transaction."""
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        for setting in EAGER_PARALLEL:
            cursor.execute(f"SET LOCAL {setting}")
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("RESET ALL")
    return plan


def context_tables_without_setting(layout: str) -> list[str]:
    """The context table's partitions lacking ``parallel_workers=0``, by name."""
    spec = get_layout(layout)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname::text FROM pg_class c
             WHERE c.oid IN (SELECT relid FROM pg_partition_tree(%s::regclass) WHERE isleaf)
               AND NOT coalesce('parallel_workers=0' = ANY (c.reloptions), false)
             ORDER BY 1
            """,
            [spec.context_table],
        )
        return [name for (name,) in cursor.fetchall()]


def test_a_request_search_plans_no_parallel_workers(layout, read_model):
    """One request's newest entries: the GIN probes of the context partitions (in the
    context function's kept plan), no Gather, however cheap the planner is told workers
    are."""
    with audit_context(request_id="r-1"):
        Book.objects.bulk_create([Book(isbn=f"p{i}", title="x") for i in range(5)])
    with audit_context(request_id="r-2"):
        Book.objects.create(isbn="other", title="y")
    found = read_model.objects.filter_context(request_id="r-1").order_by("-pk")[:100]
    assert sorted(e.object_pk for e in found) == [f"p{i}" for i in range(5)]
    plan = eager_plan(found)
    assert "Gather" not in plan and "Parallel" not in plan, plan
    with connection.cursor() as cursor:
        for setting in EAGER_PARALLEL:
            cursor.execute(f"SET LOCAL {setting}")
    plan = function_plans(found, bitmaps=True)[-1]
    assert context_probes(plan), plan
    assert "Gather" not in plan and "Parallel" not in plan, plan
    # A user's newest entries, and the user's entries by id, neither.
    for queryset in (
        read_model.objects.filter_context(user_id=7).newest_first()[:100],
        read_model.objects.filter_context(job="import").order_by("-pk")[:100],
    ):
        plan = eager_plan(queryset)
        assert "Gather" not in plan and "Parallel" not in plan, plan


def test_every_context_partition_has_the_setting_and_maintenance_keeps_it(layout, read_model):
    assert context_tables_without_setting(layout) == []
    spec = get_layout(layout)
    month = MonthlyTimeRangeGenerator().generate_partition_info_for_current_period(dt.date(2031, 5, 10))
    info = PartitionInfo.create(spec.table, month.from_date, month.to_date)
    maintainer().create([info])
    assert spec.context_partition(info.partition) in {name for (name,) in _partitions(spec.context_table)}
    assert context_tables_without_setting(layout) == []


def test_an_install_without_the_setting_is_outdated_and_repaired(layout, read_model):
    spec = get_layout(layout)
    partitions = [name for (name,) in _partitions(spec.context_table)]
    assert len(partitions) >= 2  # the DEFAULT and at least one range
    with connection.cursor() as cursor:
        # An install made before the setting: none on its partitions.
        for name in partitions:
            cursor.execute(f'ALTER TABLE "{name}" RESET (parallel_workers)')
        assert objects.layout_status(cursor, spec).status is objects.Status.OUTDATED
        assert context_tables_without_setting(layout) == partitions
        objects.install(cursor, spec)
        assert context_tables_without_setting(layout) == []
        assert objects.layout_status(cursor, spec).status is objects.Status.INSTALLED
        # One partition missing it is enough to be outdated.
        cursor.execute(f'ALTER TABLE "{partitions[-1]}" RESET (parallel_workers)')
        assert objects.layout_status(cursor, spec).status is objects.Status.OUTDATED


def _partitions(parent: str) -> list[tuple[str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = %s::regclass ORDER BY 1",
            [parent],
        )
        return cursor.fetchall()
