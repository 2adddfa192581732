"""A partition asked for over a range that existing partitions hold.

Wholly covered: nothing is created and the run says which partitions cover it (1.0.4
projects' test fixtures create ``[today, today + 2 days)`` after ``migrate`` made this
month's partition). Partly covered: refused, naming the partition it would overlap, and
nothing is created.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection

from django_partitioned_audit.partitions.partition_info import PartitionInfo as LegacyInfo
from partitioned_audit import SIMPLE, install
from partitioned_audit.catalog import PartitionRow
from partitioned_audit.errors import PartitionError
from partitioned_audit.partitioning.maintenance import Maintainer, covering, overlapping
from partitioned_audit.partitioning.ranges import PartitionInfo
from tests.engine_db import connect, scratch_database
from tests.helpers import attached_partitions

UTC = dt.UTC


def row(
    name: str, lower: dt.datetime | None, upper: dt.datetime | None, default: bool = False
) -> PartitionRow:
    return PartitionRow(name, "", default, None, lower, upper)


def at(day: int, month: int = 1) -> dt.datetime:
    return dt.datetime(2025, month, day, tzinfo=UTC)


ROWS = [
    row("jan", at(1), at(1, 2)),
    row("feb", at(1, 2), at(1, 3)),
    row("apr", at(1, 4), at(1, 5)),
    row("default", None, None, default=True),
]


@pytest.mark.parametrize(
    "lower, upper, covered, overlapped",
    [
        (at(5), at(7), ["jan"], ["jan"]),  # inside one partition
        (at(20), at(10, 2), ["jan", "feb"], ["jan", "feb"]),  # across two adjacent ones
        (at(1), at(1, 2), ["jan"], ["jan"]),  # exactly one
        (at(20, 2), at(10, 3), [], ["feb"]),  # runs past the last into a gap
        (at(20, 3), at(10, 4), [], ["apr"]),  # starts in a gap
        (at(20, 2), at(10, 4), [], ["feb", "apr"]),  # spans a gap
        (at(1, 3), at(1, 4), [], []),  # the gap exactly: free
    ],
)
def test_covering_and_overlapping(lower, upper, covered, overlapped):
    assert [r.name for r in covering(lower, upper, ROWS)] == covered
    assert [r.name for r in overlapping(lower, upper, ROWS)] == overlapped


def test_minvalue_and_maxvalue_bounds_cover_everything_on_their_side():
    rows = [row("old", None, at(1)), row("future", at(1, 6), None)]
    assert [r.name for r in covering(at(1, 1) - dt.timedelta(days=900), at(1), rows)] == ["old"]
    assert [r.name for r in covering(at(1, 7), at(1, 7) + dt.timedelta(days=9000), rows)] == ["future"]
    assert covering(at(1), at(1, 6), rows) == []


@pytest.fixture
def maintainer():
    with scratch_database() as dbname:
        conn = connect(dbname, autocommit=True)
        install(conn.cursor(), SIMPLE)
        m = Maintainer(conn, SIMPLE)
        m.create([PartitionInfo.create("audit_simple", dt.date(2025, 1, 1), dt.date(2025, 2, 1))])
        yield m
        conn.close()


def names(m: Maintainer) -> list[str]:
    return sorted(r.name for r in m.catalog_rows())


def test_a_wholly_covered_range_is_reported_and_not_created(maintainer):
    before = names(maintainer)
    fixture = PartitionInfo.create("audit_simple", dt.date(2025, 1, 6), dt.date(2025, 1, 8))
    done = maintainer.create([fixture])
    assert done.partitions == []
    assert done.covered == {"audit_simple_20250106_20250108": ["audit_simple_20250101_20250201"]}
    assert names(maintainer) == before


def test_a_partial_overlap_is_refused_naming_the_partition(maintainer):
    before = names(maintainer)
    across = PartitionInfo.create("audit_simple", dt.date(2025, 1, 20), dt.date(2025, 2, 10))
    free = PartitionInfo.create("audit_simple", dt.date(2025, 3, 1), dt.date(2025, 4, 1))
    with pytest.raises(PartitionError) as refused:
        maintainer.create([free, across])
    assert str(refused.value) == (
        "public.audit_simple_20250120_20250210 (2025-01-20 00:00:00+00:00 .. 2025-02-10 00:00:00+00:00) "
        "would overlap partition public.audit_simple_20250101_20250201 (FOR VALUES FROM "
        "('2025-01-01 00:00:00+00') TO ('2025-02-01 00:00:00+00')), which holds part of its range; "
        "choose a range that ends where existing partitions begin (list-all shows them)"
    )
    assert names(maintainer) == before  # not even the free one: one transaction


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_104_fixture_partition_inside_this_months_works_and_drops(db):
    """1.0.4's test fixture, verbatim in substance: create, write, DROP TABLE its partition."""
    current = [p for p in attached_partitions() if p != "audit_simple_default"]
    # Two days inside a partition that migrate made (the fixture takes today's date).
    day = LegacyInfo.parse(sorted(current)[0]).from_date + dt.timedelta(days=3)
    info = LegacyInfo.create("audit_simple", day, day + dt.timedelta(days=2))
    statement, params = info.generate_create_partition()
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
    assert [p for p in attached_partitions() if p != "audit_simple_default"] == current
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {info.partition}")
    assert [p for p in attached_partitions() if p != "audit_simple_default"] == current


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_104_fixture_partition_across_a_bound_is_refused(db):
    parts = sorted(p for p in attached_partitions() if p != "audit_simple_default")
    last = LegacyInfo.parse(parts[-1])
    info = LegacyInfo.create(
        "audit_simple", last.to_date - dt.timedelta(days=1), last.to_date + dt.timedelta(days=1)
    )
    with pytest.raises(
        PartitionError, match=rf"^{info.partition} .* would overlap partition {last.partition} "
    ):
        info.generate_create_partition()
