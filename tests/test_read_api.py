"""The read API reaches the history of an object through the B-tree and prunes partitions."""

from __future__ import annotations

import datetime as dt
import re

from django.db import connection
from library.models import Book

from django_partitioned_audit.maintenance import maintainer
from partitioned_audit.partitioning.plan import today_utc
from partitioned_audit.partitioning.ranges import MonthlyTimeRangeGenerator, PartitionInfo


def explain(queryset) -> str:
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        # Tiny test tables would make a sequential scan cheapest; forbid it, so a Seq Scan
        # in the plan can only mean that the index cannot serve the query.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


def scanned_partitions(plan: str) -> set[str]:
    return set(re.findall(r" on (\w+_\d{8}_\d{8}|\w+_default)", plan))


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
    plan = explain(history)
    assert "Seq Scan" not in plan and "Index" in plan
    assert len(scanned_partitions(plan)) == 6  # three past, current, next, default

    time_field = "audit_entry_created" if layout == "simple" else "action_tstamp_tx"
    this_month = dt.datetime.combine(today_utc().replace(day=1), dt.time(0), tzinfo=dt.UTC)
    recent = explain(history.filter(**{f"{time_field}__gte": this_month}))
    assert "Seq Scan" not in recent
    dated = {p for p in scanned_partitions(plan) if not p.endswith("_default")}
    expected = {p for p in dated if PartitionInfo.parse(p).from_date >= this_month.date()}
    assert len(expected) == 2  # this month and the next
    assert {p for p in scanned_partitions(recent) if not p.endswith("_default")} == expected
    assert [len(list(history))] == [1]
