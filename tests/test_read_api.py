"""The read API reaches the history of an object through the B-tree and prunes partitions."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pytest
from django.db import connection, transaction
from library.models import Book

from django_partitioned_audit.maintenance import maintainer
from partitioned_audit.layouts import get_layout
from partitioned_audit.partitioning.plan import today_utc
from partitioned_audit.partitioning.ranges import MonthlyTimeRangeGenerator, PartitionInfo


def main_plan(plan: str) -> str:
    """``plan`` without its SubPlan blocks (a view with rows written before the context
    table reads each one's statement head through an index of its own)."""
    kept, skip_below = [], None
    for line in plan.splitlines():
        indent = len(line) - len(line.lstrip())
        if skip_below is not None and indent > skip_below:
            continue
        skip_below = indent if line.strip().startswith("SubPlan") else None
        if skip_below is None:
            kept.append(line)
    return "\n".join(kept)


def explain(queryset) -> str:
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        # Tiny test tables would make a sequential scan cheapest; forbid it, so a Seq Scan
        # in the plan can only mean that the index cannot serve the query.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + sql, params)
        return main_plan("\n".join(row[0] for row in cursor.fetchall()))


def reading_scans(queryset) -> tuple[list[str], str]:
    """The scan lines of ``queryset``'s plan under EXPLAIN ANALYZE that read rows (an empty
    partition's scan reads none, whichever index the planner walks it by), and the plan."""
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, COSTS OFF) " + sql, params)
        plan = [row[0] for row in cursor.fetchall()]
    scans = [
        line
        for line in plan
        if "Scan" in line
        and "Bitmap Heap" not in line
        and not re.search(r"rows=0(\.0+)? ", line)  # PostgreSQL 18 prints rows=0.00
        and "never executed" not in line
    ]
    return scans, "\n".join(plan)


def function_plans(queryset, bitmaps: bool = False) -> list[str]:
    """The plans of the statements run inside functions while ``queryset`` is read (see
    :func:`nested_plans`), as text."""
    sql, params = queryset.query.sql_with_params()
    return nested_plans(sql, params, bitmaps=bitmaps)


def nested_plans(sql: str, params: Any = None, json_format: bool = False, bitmaps: bool = False) -> list[Any]:
    """The plans of the statements run inside functions while ``sql`` runs, under ANALYZE,
    as auto_explain reports them to the client (text, or parsed JSON). Every kept plan is
    dropped first (``DISCARD PLANS``), so the function plans its statements in this
    transaction, with sequential and bitmap scans off: statistics or table sizes an
    earlier test left cannot change what is found. ``bitmaps`` leaves bitmap scans on, the
    only way a GIN index is read."""
    raw = connection.connection
    messages: list[str] = []

    def keep(diagnostic: Any) -> None:
        messages.append(diagnostic.message_primary or "")

    with connection.cursor() as cursor:
        cursor.execute("LOAD 'auto_explain'")
        for setting in (
            "auto_explain.log_min_duration = 0",
            "auto_explain.log_nested_statements = on",
            "auto_explain.log_analyze = on",
            f"auto_explain.log_format = {'json' if json_format else 'text'}",
            "enable_seqscan = off",
            f"enable_bitmapscan = {'on' if bitmaps else 'off'}",
            "client_min_messages = log",
        ):
            cursor.execute(f"SET LOCAL {setting}")
        cursor.execute("DISCARD PLANS")
        if hasattr(raw, "add_notice_handler"):  # psycopg 3
            raw.add_notice_handler(keep)
            try:
                cursor.execute(sql, params)
                cursor.fetchall()
            finally:
                raw.remove_notice_handler(keep)
        else:  # psycopg2 keeps the messages in a list
            del raw.notices[:]
            cursor.execute(sql, params)
            cursor.fetchall()
            messages = list(raw.notices)
        cursor.execute("SET LOCAL client_min_messages = notice")
    # The outer query is logged last: a Function Scan of what it calls.
    plans = [m.split("plan:", 1)[1].strip() for m in messages if "plan:" in m][:-1]
    return [json.loads(p) for p in plans] if json_format else plans


def scanned_partitions(plan: str) -> set[str]:
    """The audit table's partitions ``plan`` reads. Each row's context row is read by an
    index probe of the context table's partition of the row's time (pruned when it runs):
    those partitions are not counted, and ``context_probes()`` checks how they are read."""
    return {
        name
        for name in re.findall(r" on (\w+_\d{8}_\d{8}|\w+_default)", plan)
        if not re.match(r"\w+_context_(\d{8}_\d{8}|default)$", name)
    }


def context_probes(plan: str) -> list[str]:
    """How ``plan`` reads the context table's partitions, one line each."""
    return [
        line.strip()
        for line in plan.splitlines()
        if re.search(r" on \w+_context_(\d{8}_\d{8}|default)", line)
    ]


def test_history_of_an_object_uses_the_index_and_a_time_range_prunes(layout, read_model):
    manager = maintainer()
    generator = MonthlyTimeRangeGenerator()
    start = generator.generate_partition_info_for_current_period(today_utc()).from_date
    past = []
    for _ in range(3):
        previous = generator.generate_partition_info_for_current_period(start - dt.timedelta(days=1))
        past.append(PartitionInfo.create(manager.layout.table, previous.from_date, previous.to_date))
        start = previous.from_date
    manager.create(past)
    Book.objects.create(isbn="1", title="t")

    history = read_model.objects.filter_object(Book, "1")
    # The query reads the object function, whose plan is kept by the connection: nothing
    # of either table is planned for it (see _OBJECT_NOTE in partitioned_audit.layouts).
    outer = explain(history)
    assert f"Function Scan on {get_layout(layout).object_function}" in outer and "Append" not in outer, outer
    (plan,) = function_plans(history)
    assert "Seq Scan" not in plan and "Index" in plan
    assert len(scanned_partitions(plan)) == 6  # three past, current, next, default
    probes = context_probes(plan)  # each row's context: one index probe
    assert probes and all("Index Scan using" in line for line in probes), plan

    # A time bound filters the object's entries; the kept plan probed each partition's
    # (table, key) index, which costs less than planning the pruned read (docs/performance.md).
    time_field = "audit_entry_created" if layout == "simple" else "action_tstamp_tx"
    this_month = dt.datetime.combine(today_utc().replace(day=1), dt.time(0), tzinfo=dt.UTC)
    assert [e.object_pk for e in history.filter(**{f"{time_field}__gte": this_month})] == ["1"]
    assert list(history.filter(**{f"{time_field}__lt": this_month})) == []
    # The read view itself prunes by time as before.
    recent = explain(read_model.objects.filter(object_pk="1", **{f"{time_field}__gte": this_month}))
    dated = {p for p in scanned_partitions(plan) if not p.endswith("_default")}
    expected = {p for p in dated if PartitionInfo.parse(p).from_date >= this_month.date()}
    assert len(expected) == 2  # this month and the next
    assert {p for p in scanned_partitions(recent) if not p.endswith("_default")} == expected
    assert [len(list(history))] == [1]


def test_one_objects_entries_chain_as_a_queryset_of_the_read_view(layout, read_model):
    """``filter_object()`` reads the object function; its queryset chains with the other
    reads (a context search moves it to the context view, its filters kept), serves as a
    subquery under another alias, and pickles."""
    import pickle

    from django_partitioned_audit.context import audit_context

    with audit_context(user_id=7):
        Book.objects.create(isbn="ch1", title="a")
    Book.objects.create(isbn="ch2", title="b")
    entries = read_model.objects.filter_object(Book, "ch1")
    assert get_layout(layout).object_function in str(entries.query)
    assert [e.object_pk for e in entries.filter_context(user_id=7)] == ["ch1"]
    assert [e.object_pk for e in read_model.objects.filter_context(user_id=7).filter_object(Book, "ch1")] == [
        "ch1"
    ]
    assert list(read_model.objects.filter_context(user_id=7).filter_object(Book, "ch2")) == []
    assert entries.count() == 1 and entries.exists()
    assert read_model.objects.filter(pk__in=entries.values("pk")).count() == 1
    both = entries.union(read_model.objects.filter_object(Book, "ch2"))
    assert sorted(e.object_pk for e in both) == ["ch1", "ch2"]
    copy = read_model.objects.all()
    copy.query = pickle.loads(pickle.dumps(entries.query))
    assert [e.pk for e in copy] == [e.pk for e in entries]


def test_a_same_named_table_in_another_schema_is_another_history(layout, read_model):
    """Shelved lives in library_ext.shelved; public.shelved is someone else's table."""
    from library.models import Shelved

    from partitioned_audit import TableSpec, enable, get_layout
    from tests.helpers import sql

    sql("CREATE TABLE public.shelved (id bigint PRIMARY KEY, name text)")
    with connection.cursor() as cursor:
        enable(cursor, get_layout(layout), TableSpec("public", "shelved", ("id",)))
    sql("INSERT INTO public.shelved VALUES (1, 'not a Shelved')")
    kept = Shelved.objects.create(name="kept")
    assert [e.get_row_data()["name"] for e in read_model.objects.filter_model(Shelved)] == ["kept"]
    assert [e.get_row_data()["name"] for e in read_model.objects.filter_object(Shelved, kept.pk)] == ["kept"]
    assert read_model.objects.filter_object(Shelved, 1).count() == (1 if kept.pk == 1 else 0)


def test_one_entry_is_found_without_reading_every_partition(layout, read_model):
    from django.test.utils import CaptureQueriesContext

    book = Book.objects.create(isbn="1", title="t")
    entry = read_model.objects.filter_object(Book, "1").get()
    # .get(pk=): the B-tree on the event id, no sequential scan of any partition
    plan = explain(read_model.objects.filter(pk=entry.pk))
    assert "Seq Scan" not in plan and "event_id_idx" in plan  # the B-tree, on every partition
    # get_instance(): the entry's own partition only, found by its time
    with CaptureQueriesContext(connection) as queries:
        assert entry.get_instance().title == book.title
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + queries.captured_queries[-1]["sql"])
        instance_plan = "\n".join(row[0] for row in cursor.fetchall())
    assert len(scanned_partitions(instance_plan)) == 1, instance_plan


def test_keys_are_encoded_as_the_capture_stores_them(db):
    """Each key value, rendered in Python, equals what jsonb prints for it in PostgreSQL."""
    import uuid
    from decimal import Decimal

    from django_partitioned_audit.models import _pk_text
    from tests.helpers import sql

    values = [
        ("ключ 🙂", "text"),
        ('q"uote', "text"),
        (dt.date(2024, 2, 29), "date"),
        (dt.datetime(2024, 2, 29, 23, 59, 1, 250000, tzinfo=dt.UTC), "timestamptz"),
        (dt.datetime(2024, 3, 1, tzinfo=dt.UTC), "timestamptz"),
        (dt.datetime(2024, 3, 1, 0, 0, 0, 100, tzinfo=dt.UTC), "timestamptz"),
        (dt.time(12, 30, 0, 500000), "time"),
        (Decimal("10.50"), "numeric"),
        (uuid.UUID("12345678-1234-5678-1234-567812345678"), "uuid"),
        (7, "bigint"),
        (True, "boolean"),
    ]
    for value, sqltype in values:
        statement = f"SELECT jsonb_build_array(%s::{sqltype}, 1)::text, to_jsonb(%s::{sqltype}) #>> '{{}}'"
        ((composite, single),) = sql(statement, [value, value])
        assert (_pk_text((value, 1)), _pk_text(value)) == (composite, single), value


def test_filter_payload_takes_python_values(layout, read_model):
    from decimal import Decimal

    from shop.models import Customer, Order

    customer = Customer.objects.create(name="E")
    when = dt.datetime(2024, 2, 29, 12, 0, 0, 500000, tzinfo=dt.UTC)
    order = Order.objects.create(
        customer=customer, total=Decimal("10.50"), placed_at=when, data={"a": [1, 2]}
    )
    Order.objects.create(customer=Customer.objects.create(name="F"), total=Decimal("3"))
    orders = read_model.objects.filter_model(Order)
    for lookup in (
        {"total": Decimal("10.50")},
        {"total": Decimal("10.5")},
        {"placed_at": when},
        {"customer": customer},
        {"customer_id": customer},
        {"customer_id": customer.pk},
        {"data": {"a": [1, 2]}},
    ):
        assert [e.get_row_data()["id"] for e in orders.filter_payload(**lookup)] == [order.pk], lookup
    assert not orders.filter_payload(data={"a": [1]}).exists()  # a part of the value is not the value
    assert orders.filter_payload(total=Decimal("3")).count() == 1
    with pytest.raises(
        TypeError, match=r"filter_payload\(total=...\): Decimal\('0.1000000000000000000001'\) has no exact"
    ):
        orders.filter_payload(total=Decimal("0.1000000000000000000001"))
    with pytest.raises(TypeError, match=r"filter_payload\(tags=...\) cannot compare a set"):
        orders.filter_payload(tags={"x"})


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("layout", ["simple"], indirect=True)
def test_the_payload_gin_turned_on_later_is_built_by_sync_and_serves_filter_payload(
    layout, read_model, settings
):
    # On an existing trail sync declares the index on the audit table, then builds it
    # partition by partition outside any transaction (docs/upgrading.md); inside a test's
    # transaction it could only declare it. Turned off again at the end: the schema outlives
    # a transactional test.
    from django_partitioned_audit.sync import sync

    settings.DPA_PAYLOAD_GIN_INDEX = True
    try:
        sync("default", verbosity=0)
        with transaction.atomic():
            # Plain index scans off as well: another index's walk of a partition that some
            # earlier test's ANALYZE left looking tiny must not stand in for the GIN.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL enable_indexscan = off")
            plan = explain(read_model.objects.filter_payload(status="paid"))
        # The GIN, on every partition: the containment is an index condition, never a filter.
        assert "Index Cond: (object_payload @>" in plan and "Seq Scan" not in plan, plan
        assert "Filter: (object_payload @>" not in plan, plan
    finally:
        settings.DPA_PAYLOAD_GIN_INDEX = False
        sync("default", verbosity=0)
