"""The context GIN's pending list: the daily maintenance (``manage_partition_tables create``)
merges the pending list of each finished context partition into its tree, so that a
search of past months reads no list there; the current partition's is left to its
writers."""

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
