"""The context GIN's pending list, which every search of a partition reads whole: the daily
maintenance (``manage_partition_tables create``) merges the pending list of each finished
context partition into its tree, so that a search of past months reads no list there (the
current partition's is left to its writers), and the partitions it makes keep a short
one."""

from __future__ import annotations

import datetime as dt
import json
import re

import time_machine
from library.models import Book

from django_partitioned_audit.context import audit_context
from django_partitioned_audit.maintenance import maintainer
from partitioned_audit import catalog
from partitioned_audit.layouts import get_layout
from partitioned_audit.partitioning.ranges import MonthlyTimeRangeGenerator, PartitionInfo
from tests.helpers import partition_command, sql


def pending_pages(index: str) -> int:
    """What ``gin_clean_pending_list()`` finds in ``index``'s pending list (and merges): the
    one way to read it without an extension."""
    ((pages,),) = sql("SELECT gin_clean_pending_list(%s::regclass)", [index])
    return int(pages)


def test_maintenance_merges_the_pending_list_of_finished_context_partitions(layout, read_model):
    spec = get_layout(layout)
    # One context row per context: their keys go to the GIN's pending list (fastupdate).
    for n in range(30):
        with audit_context(request_id=f"m-{n}", user_id=n):
            Book.objects.create(isbn=f"m{n}", title="x")
    ((holder,),) = sql(
        f"SELECT DISTINCT tableoid::regclass::text FROM {spec.context_table} WHERE context ->> 'request_id' = 'm-1'"
    )
    ((gin,),) = sql(
        "SELECT x.indexrelid::regclass::text FROM pg_index x JOIN pg_inherits i ON i.inhrelid = x.indexrelid"
        " WHERE x.indrelid = %s::regclass AND i.inhparent = %s::regclass",
        [holder, spec.context_gin_index],
    )
    rows = {row.name: row for row in catalog.partitions(_cursor(), "public", spec.context_table)}
    ends = rows[holder].upper
    # Once its range has ended it is finished: the daily run merges its list.
    with time_machine.travel(ends, tick=False):
        document = json.loads(partition_command("create", "--json"))
    assert pending_pages(gin) == 0
    merged = document["merged_pending"]
    assert list(merged) == [gin] and merged[gin] >= 1, document
    with time_machine.travel(ends, tick=False):
        assert json.loads(partition_command("create", "--json"))["merged_pending"] == {}
        assert "pending list" not in partition_command("create")
    # A late write (the server's clock is not frozen: it lands in the same partition). Before
    # its range ends the partition is current: its list stays for its writers.
    with audit_context(request_id="m-late"):
        Book.objects.create(isbn="late", title="x")
    assert maintainer().merge_pending(now=ends - dt.timedelta(microseconds=1)) == {}
    with time_machine.travel(ends, tick=False):
        text = partition_command("create")
    assert re.search(
        r"\nMerged the GIN pending lists of 1 finished context partition\(s\): \d+ page\(s\)\.", text
    )
    # The searches find what they found.
    assert [e.object_pk for e in read_model.objects.filter_context(request_id="m-7")] == ["m7"]
    assert [e.object_pk for e in read_model.objects.filter_context(user_id=7)] == ["m7"]


def _cursor():
    from django.db import connection

    return connection.cursor()


def test_new_context_partitions_keep_a_short_pending_list(layout, read_model):
    """A context partition made by maintenance has its GIN, attached to the parent's, with a
    pending list of 512 kB (``gin_pending_list_limit``), not PostgreSQL's 4 MB, which every
    search of the partition reads whole."""
    spec = get_layout(layout)
    month = MonthlyTimeRangeGenerator().generate_partition_info_for_current_period(dt.date(2031, 5, 10))
    info = PartitionInfo.create(spec.table, month.from_date, month.to_date)
    maintainer().create([info])
    ((gin, options),) = sql(
        "SELECT x.indexrelid::regclass::text, c.reloptions FROM pg_index x"
        " JOIN pg_inherits i ON i.inhrelid = x.indexrelid JOIN pg_class c ON c.oid = x.indexrelid"
        " WHERE x.indrelid = %s::regclass AND i.inhparent = %s::regclass",
        [spec.context_partition(info.partition), spec.context_gin_index],
    )
    assert options == ["gin_pending_list_limit=512"], gin
    # and so has every partition of an install made now, through the parent's
    assert sql("SELECT reloptions FROM pg_class WHERE oid = %s::regclass", [spec.context_gin_index]) == [
        (["gin_pending_list_limit=512"],)
    ]
    with audit_context(request_id="short"):
        Book.objects.create(isbn="short", title="x")
    assert [e.object_pk for e in read_model.objects.filter_context(request_id="short")] == ["short"]
