"""Partition planning (pure) and creation on a real server, with the 1.0.4 command."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import CommandError, call_command
from library.models import Book

from partitioned_audit import SIMPLE, install
from partitioned_audit.errors import PartitionError
from partitioned_audit.partitioning import maintenance
from partitioned_audit.partitioning.plan import Status, plan, today_utc
from partitioned_audit.partitioning.ranges import (
    DailyTimeRangeGenerator,
    MonthlyTimeRangeGenerator,
    PartitionInfo,
    WeeklyTimeRangeGenerator,
)
from tests.engine_db import connect, scratch_database
from tests.helpers import sql

FEB22 = dt.date(2022, 2, 22)


def names(p):
    return [i.partition for i in p.partitions_to_create]


@pytest.mark.parametrize(
    ("generator", "extra", "expected"),
    [  # the examples of the 1.0.4 README, run on 2022-02-22
        (MonthlyTimeRangeGenerator(), 0, ["audit_simple_20220201_20220301"]),
        (
            MonthlyTimeRangeGenerator(),
            90,
            [f"audit_simple_2022{m:02d}01_2022{m + 1:02d}01" for m in (2, 3, 4, 5)],
        ),
        (
            WeeklyTimeRangeGenerator(),
            30,
            [
                "audit_simple_20220222_20220301",
                "audit_simple_20220301_20220308",
                "audit_simple_20220308_20220315",
                "audit_simple_20220315_20220322",
                "audit_simple_20220322_20220329",
            ],
        ),
    ],
)
def test_plan_matches_104_examples(generator, extra, expected):
    result = plan("audit_simple", [], FEB22, extra, generator)
    assert names(result) == expected and result.status is Status.MISSING_CURRENT


def test_daily_plan_and_continuation_from_existing():
    daily = plan("audit_simple", [], FEB22, 10, DailyTimeRangeGenerator())
    assert len(daily.partitions_to_create) == 11
    assert daily.partitions_to_create[-1].partition == "audit_simple_20220304_20220305"
    existing = [PartitionInfo.create("audit_simple", dt.date(2022, 2, 1), dt.date(2022, 3, 1))]
    nxt = plan("audit_simple", existing, FEB22, 90, MonthlyTimeRangeGenerator())
    assert nxt.status is Status.MISSING_NEXT and names(nxt)[0] == "audit_simple_20220301_20220401"
    assert plan("audit_simple", existing, FEB22, 0, MonthlyTimeRangeGenerator()).status is Status.OK


def test_gaps_and_overlaps_are_reported_not_raised():
    existing = [
        PartitionInfo.create("t", dt.date(2022, 1, 1), dt.date(2022, 2, 1)),
        PartitionInfo.create("t", dt.date(2022, 1, 15), dt.date(2022, 2, 15)),
        PartitionInfo.create("t", dt.date(2022, 3, 1), dt.date(2022, 4, 1)),
    ]
    result = plan("t", existing, dt.date(2022, 3, 5), 0, MonthlyTimeRangeGenerator())
    assert result.problems == [
        "t_20220101_20220201 overlaps t_20220115_20220215",
        "gap from 2022-02-15 to 2022-03-01 between t_20220115_20220215 and t_20220301_20220401",
    ]


def test_today_is_utc_whatever_the_zone():
    late_evening_in_new_york = dt.datetime(2024, 2, 29, 22, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert today_utc(late_evening_in_new_york) == dt.date(2024, 3, 1)
    with pytest.raises(ValueError, match="timezone-aware"):
        today_utc(dt.datetime(2024, 1, 1))


def test_parse_ignores_other_names():
    assert PartitionInfo.parse("audit_simple_default") is None
    assert PartitionInfo.parse("audit_simple_20221301_20230101") is None
    assert PartitionInfo.parse("audit_simple_20220201_20220301").to_date == dt.date(2022, 3, 1)


def test_rows_caught_by_default_move_into_the_new_partition(db):
    Book.objects.bulk_create(Book(isbn=str(i), title="t") for i in range(30))
    assert sql("SELECT count(*) FROM audit_simple_default") == [(30,)]
    out = io.StringIO()
    call_command("manage_partition_tables", "create", "--extra-days=0", stdout=out)
    this_month = today_utc().replace(day=1)
    name = f"audit_simple_{this_month:%Y%m%d}"
    assert name in out.getvalue() and "moved 30 row(s)" in out.getvalue()
    assert sql("SELECT count(*) FROM audit_simple_default") == [(0,)]
    assert sql("SELECT tableoid::regclass::text, count(*) FROM audit_simple GROUP BY 1")[0][0].startswith(
        name
    )
    Book.objects.create(isbn="new", title="t")  # new rows route to the partition directly
    assert sql("SELECT count(*) FROM audit_simple_default") == [(0,)]


def test_list_shows_what_exists(db):
    call_command("manage_partition_tables", "create", "--extra-days=40", stdout=io.StringIO())
    out = io.StringIO()
    call_command("manage_partition_tables", "list", "list-all", stdout=out)
    text = out.getvalue()
    assert text.count("audit_simple_default") == 1  # only list-all shows it
    assert text.startswith("+---") and "|  table_name  " in text


def test_same_instant_routes_to_same_partition_in_any_time_zone(db):
    call_command("manage_partition_tables", "create", "--extra-days=40", stdout=io.StringIO())
    boundary = today_utc().replace(day=1)
    placed = []
    for zone in ("UTC", "America/New_York", "Asia/Tokyo"):
        sql("SET LOCAL TimeZone = %s", [zone])
        sql(
            "INSERT INTO audit_simple (object_table, object_payload, audit_txid_current, audit_operation,"
            " audit_entry_created) VALUES ('x', '{}', 1, 'I', %s)",
            [dt.datetime.combine(boundary, dt.time(0), tzinfo=dt.UTC)],
        )
    placed = sql("SELECT DISTINCT tableoid::regclass::text FROM audit_simple WHERE object_table = 'x'")
    assert placed == [
        (f"audit_simple_{boundary:%Y%m%d}_{(boundary + dt.timedelta(days=32)).replace(day=1):%Y%m%d}",)
    ]


def test_concurrent_maintenance_fails_fast_with_a_clear_error():
    with scratch_database() as dbname:
        first, second = connect(dbname), connect(dbname)
        install(first.cursor(), SIMPLE)
        first.commit()
        maintenance.lock(first.cursor(), SIMPLE, "public")
        with pytest.raises(PartitionError) as info:
            maintenance.create(
                second.cursor(), SIMPLE, [PartitionInfo.create("audit_simple", FEB22, dt.date(2022, 3, 1))]
            )
        assert str(info.value) == (
            "another partition maintenance of public.audit_simple is running; try again when it ends"
        )
        second.rollback()
        first.rollback()
        first.close()
        second.close()


def test_negative_extra_days_is_refused(db):
    with pytest.raises(CommandError, match="--extra-days must be zero or more, got -1"):
        call_command("manage_partition_tables", "simulate", "--extra-days=-1")
