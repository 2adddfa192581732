"""Partition planning (pure), then the lifecycle on a real server: engine, CLI and command."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.core import checks
from django.core.management import CommandError
from hypothesis import example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from library.models import Book

from django_partitioned_audit.checks import check_partition_coverage
from partitioned_audit.errors import PartitionError
from partitioned_audit.partitioning.plan import Status, coverage, expired, plan, today_utc
from partitioned_audit.partitioning.ranges import (
    DailyTimeRangeGenerator,
    MonthlyTimeRangeGenerator,
    PartitionInfo,
    WeeklyTimeRangeGenerator,
    get_generator,
)
from tests.generators import BrokenGenerator, QuarterlyGenerator
from tests.helpers import attached_partitions, detach_all_dated_partitions, sql
from tests.helpers import partition_command as command

FEB22 = dt.date(2022, 2, 22)


def names(p):
    return [i.partition for i in p.partitions_to_create]


def part(start: dt.date, end: dt.date, table: str = "t") -> PartitionInfo:
    return PartitionInfo.create(table, start, end)


# -- pure planning -------------------------------------------------------------------------


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
    existing = [part(dt.date(2022, 2, 1), dt.date(2022, 3, 1), "audit_simple")]
    nxt = plan("audit_simple", existing, FEB22, 90, MonthlyTimeRangeGenerator())
    assert nxt.status is Status.MISSING_NEXT and names(nxt)[0] == "audit_simple_20220301_20220401"
    assert plan("audit_simple", existing, FEB22, 0, MonthlyTimeRangeGenerator()).status is Status.OK


def test_a_gap_since_the_last_run_is_filled_and_future_partitions_are_respected():
    existing = [
        part(dt.date(2021, 11, 1), dt.date(2021, 12, 1)),
        part(dt.date(2022, 3, 10), dt.date(2022, 4, 1)),
    ]
    result = plan("t", existing, FEB22, 45, MonthlyTimeRangeGenerator())
    assert names(result) == [
        "t_20211201_20220101",
        "t_20220101_20220201",
        "t_20220201_20220301",
        "t_20220301_20220310",  # cut short where the existing partition begins
        "t_20220401_20220501",
    ]
    assert result.status is Status.MISSING_CURRENT


def test_gaps_and_overlaps_are_reported_not_raised():
    existing = [
        part(dt.date(2022, 1, 1), dt.date(2022, 2, 1)),
        part(dt.date(2022, 1, 15), dt.date(2022, 2, 15)),
        part(dt.date(2022, 3, 1), dt.date(2022, 4, 1)),
    ]
    result = plan("t", existing, dt.date(2022, 3, 5), 0, MonthlyTimeRangeGenerator())
    assert result.problems == [
        "t_20220101_20220201 overlaps t_20220115_20220215",
        "gap from 2022-02-15 to 2022-03-01 between t_20220115_20220215 and t_20220301_20220401",
    ]


GENERATOR_CLASSES = [
    MonthlyTimeRangeGenerator,
    WeeklyTimeRangeGenerator,
    DailyTimeRangeGenerator,
    QuarterlyGenerator,
]


@st.composite
def existing_partitions(draw: st.DrawFn) -> list[PartitionInfo]:
    """Non-overlapping partitions of arbitrary lengths and gaps around 2019..2031."""
    day = draw(st.dates(dt.date(2019, 1, 1), dt.date(2030, 1, 1)))
    found = []
    for _ in range(draw(st.integers(0, 6))):
        day += dt.timedelta(days=draw(st.integers(0, 60)))
        end = day + dt.timedelta(days=draw(st.integers(1, 62)))
        found.append(part(day, end))
        day = end
    return found


@hypothesis_settings(deadline=None)
@given(
    existing=existing_partitions(),
    today=st.dates(dt.date(2019, 1, 1), dt.date(2031, 12, 31)),
    extra_days=st.integers(0, 400),
    generator=st.sampled_from(GENERATOR_CLASSES),
)
@example(existing=[], today=dt.date(2024, 2, 29), extra_days=1, generator=MonthlyTimeRangeGenerator)
@example(existing=[], today=dt.date(2024, 12, 31), extra_days=1, generator=WeeklyTimeRangeGenerator)
@example(existing=[], today=dt.date(2023, 1, 31), extra_days=31, generator=MonthlyTimeRangeGenerator)
def test_every_plan_covers_the_window_once_without_overlap(existing, today, extra_days, generator):
    result = plan("t", existing, today, extra_days, generator())
    new = [p.time_range for p in result.partitions_to_create]
    everything = [p.time_range for p in existing] + new
    # Every day of [today, today + extra_days] lies in exactly one partition.
    for offset in range(extra_days + 1):
        day = today + dt.timedelta(days=offset)
        assert sum(r.contains(day) for r in everything) == 1, day
    # New partitions overlap nothing, are contiguous among themselves where they touch, and
    # running the plan again asks for nothing more.
    for i, r in enumerate(new):
        assert all(
            not (o.from_date < r.to_date and r.from_date < o.to_date) for o in everything if o is not r
        )
        assert i == 0 or new[i - 1].to_date <= r.from_date
    again = plan("t", existing + result.partitions_to_create, today, extra_days, generator())
    assert again.partitions_to_create == [] and again.status is Status.OK
    expected = (
        Status.OK
        if not new
        else Status.MISSING_CURRENT
        if any(r.contains(today) for r in new)
        else Status.MISSING_NEXT
    )
    assert result.status is expected


def test_expired_keeps_recent_partitions_and_needs_a_day():
    daily = [part(dt.date(2022, 2, d), dt.date(2022, 2, d + 1)) for d in range(18, 23)]
    assert [p.partition for p in expired(daily, FEB22, 1)] == [
        "t_20220218_20220219",
        "t_20220219_20220220",
        "t_20220220_20220221",
    ]
    assert expired(daily, FEB22, 3) == [daily[0]] and expired(daily, FEB22, 4) == []
    with pytest.raises(ValueError, match="older_than_days must be 1 or more, got 0"):
        expired(daily, FEB22, 0)


@pytest.mark.parametrize(
    ("existing", "default_rows", "attached", "ok", "reason"),
    [
        (
            [part(dt.date(2022, 2, 1), dt.date(2022, 4, 1))],
            0,
            True,
            True,
            "t is covered from 2022-02-22 until 2022-04-01; the default partition is empty",
        ),
        (
            [part(dt.date(2022, 2, 1), dt.date(2022, 3, 1))],
            0,
            True,
            False,
            "partitions of t end on 2022-03-01, before 2022-03-24 (today + 30 days); run create",
        ),
        (
            [part(dt.date(2022, 1, 1), dt.date(2022, 2, 1))],
            0,
            True,
            False,
            "no partition of t covers today (2022-02-22); run create",
        ),
        (
            [part(dt.date(2022, 2, 1), dt.date(2022, 4, 1))],
            3,
            True,
            False,
            "the default partition of t holds 3 row(s); run create to move them",
        ),
        (
            [part(dt.date(2022, 2, 1), dt.date(2022, 4, 1))],
            0,
            False,
            False,
            "the default partition of t is not attached; run create to restore it",
        ),
        (  # a gap inside the window counts as the end of coverage
            [part(dt.date(2022, 2, 1), dt.date(2022, 3, 1)), part(dt.date(2022, 3, 2), dt.date(2022, 5, 1))],
            0,
            True,
            False,
            "partitions of t end on 2022-03-01, before 2022-03-24 (today + 30 days); run create",
        ),
    ],
)
def test_coverage_reasons(existing, default_rows, attached, ok, reason):
    result = coverage("t", existing, FEB22, 30, default_rows, attached)
    assert (result.ok, result.reason) == (ok, reason)


def test_generators_by_name_or_dotted_path():
    assert isinstance(get_generator("WeeklyTimeRangeGenerator"), WeeklyTimeRangeGenerator)
    assert isinstance(get_generator("tests.generators.QuarterlyGenerator"), QuarterlyGenerator)
    quarters = plan("t", [], FEB22, 30, get_generator("tests.generators:QuarterlyGenerator"))
    assert names(quarters) == ["t_20220101_20220401"]
    with pytest.raises(PartitionError) as info:
        get_generator("Fortnightly")
    assert str(info.value) == (
        "unknown time range generator 'Fortnightly': use one of MonthlyTimeRangeGenerator, "
        "WeeklyTimeRangeGenerator, DailyTimeRangeGenerator or the dotted path of a TimeRangeGenerator subclass"
    )
    with pytest.raises(
        PartitionError, match="'tests.test_partitions.part' is not a TimeRangeGenerator subclass"
    ):
        get_generator("tests.test_partitions.part")
    with pytest.raises(PartitionError, match="'nowhere.Gen' cannot be imported: No module named 'nowhere'"):
        get_generator("nowhere.Gen")


def test_a_generator_that_misses_today_is_reported():
    with pytest.raises(PartitionError) as info:
        plan("t", [], FEB22, 0, BrokenGenerator())
    assert str(info.value) == (
        "BrokenGenerator.generate_partition_info_for_current_period(2022-02-22) returned "
        "2022-02-25 .. 2022-02-27, which does not hold 2022-02-22"
    )


def test_today_is_utc_whatever_the_zone():
    late_evening_in_new_york = dt.datetime(2024, 2, 29, 22, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert today_utc(late_evening_in_new_york) == dt.date(2024, 3, 1)
    with pytest.raises(ValueError, match="timezone-aware"):
        today_utc(dt.datetime(2024, 1, 1))


def test_parse_ignores_other_names():
    assert PartitionInfo.parse("audit_simple_default") is None
    assert PartitionInfo.parse("audit_simple_20221301_20230101") is None
    assert PartitionInfo.parse("audit_simple_20220201_20220301").to_date == dt.date(2022, 3, 1)


# -- the Django command, inside the test's transaction ---------------------------------------


def month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def next_month(day: dt.date) -> dt.date:
    return (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)


def test_migrate_created_the_current_and_next_partition(db):
    this, after = month_start(today_utc()), next_month(today_utc())
    assert attached_partitions() == [
        f"audit_simple_{this:%Y%m%d}_{after:%Y%m%d}",
        f"audit_simple_{after:%Y%m%d}_{next_month(after):%Y%m%d}",
        "audit_simple_default",
    ]


def test_rows_caught_by_default_move_into_the_new_partition(db):
    detach_all_dated_partitions()
    Book.objects.bulk_create(Book(isbn=str(i), title="t") for i in range(30))  # no partition at all
    assert sql("SELECT count(*) FROM audit_simple_default") == [(30,)]
    out = command("create", "--extra-days=0")
    name = f"audit_simple_{month_start(today_utc()):%Y%m%d}"
    assert name in out and "moved 30 row(s)" in out
    assert sql("SELECT count(*) FROM audit_simple_default") == [(0,)]
    assert sql("SELECT tableoid::regclass::text, count(*) FROM audit_simple GROUP BY 1") == [
        (f"{name}_{next_month(today_utc()):%Y%m%d}", 30)
    ]
    Book.objects.create(isbn="new", title="t")  # new rows route to the partition directly
    assert sql("SELECT count(*) FROM audit_simple_default") == [(0,)]


def test_list_shows_what_exists(db):
    command("create", "--extra-days=40")
    text = command("list", "list-all")
    assert text.count("audit_simple_default") == 1  # only list-all shows it
    assert text.startswith("+---") and "|  table_name  " in text


def test_every_action_speaks_json(db):
    lines = command(
        "create", "simulate", "list-all", "check", "drop", "--older-than=1", "--extra-days=40", "--json"
    )
    docs = [json.loads(line) for line in lines.splitlines()]
    assert [d["action"] for d in docs] == ["create", "simulate", "list-all", "check", "drop"]
    created, simulated, listed, checked, dropped = docs
    assert simulated["status"] == "OK" and simulated["to_create"] == []
    assert len(simulated["existing"]) == 2 + len(created["created"])
    assert {
        "name": "audit_simple_default",
        "from_date": None,
        "to_date": None,
        "default": True,
        "archived": None,
    } in listed["partitions"]
    assert checked["ok"] is True and checked["default_rows"] == 0
    assert dropped == {"action": "drop", "older_than_days": 1, "applied": False, "partitions": []}


def test_check_fails_with_a_one_line_reason(db):
    assert command("check", "--extra-days=20").startswith("OK: public.audit_simple is covered from")
    with pytest.raises(CommandError) as info:
        command("check", "--extra-days=400")
    assert info.value.returncode == 1
    assert str(info.value).startswith("check failed: partitions of public.audit_simple end on ")
    assert "\n" not in str(info.value)
    detach_all_dated_partitions()
    Book.objects.create(isbn="1", title="t")
    with pytest.raises(CommandError) as info:
        command("check", "--extra-days=0")
    assert (
        str(info.value)
        == f"check failed: no partition of public.audit_simple covers today ({today_utc()}); run create"
    )


def test_bad_options_fail_before_anything_changes(db):
    """Each call would create partitions 90 days ahead if its options were valid."""
    before = attached_partitions()
    cases = {
        ("create", "drop", "--extra-days=90"): "drop needs --older-than DAYS",
        ("create", "detach", "--older-than=0", "--extra-days=90"): "--older-than must be 1 or more, got 0",
        ("create", "--extra-days=-1"): "--extra-days must be zero or more, got -1",
        (
            "create",
            "--extra-days=90",
            "--time-range-generator=nowhere.Gen",
        ): "time range generator 'nowhere.Gen' cannot be imported: No module named 'nowhere'",
        ("create", "--extra-days=90", "--lock-timeout=0"): (
            "LockPolicy.lock_timeout_ms must be a positive integer, got 0"
        ),
    }
    for args, message in cases.items():
        with pytest.raises(CommandError) as info:
            command(*args)
        assert str(info.value) == message
    assert attached_partitions() == before


def test_custom_generator_by_dotted_path(db):
    detach_all_dated_partitions()
    out = command("create", "--extra-days=0", "--time-range-generator=tests.generators.QuarterlyGenerator")
    start = today_utc().replace(month=(today_utc().month - 1) // 3 * 3 + 1, day=1)
    assert f"audit_simple_{start:%Y%m%d}_" in out
    assert len(attached_partitions()) == 2


def test_same_instant_routes_to_same_partition_in_any_time_zone(db):
    boundary = month_start(today_utc())
    for zone in ("UTC", "America/New_York", "Asia/Tokyo"):
        sql("SET LOCAL TimeZone = %s", [zone])
        sql(
            "INSERT INTO audit_simple (object_table, object_payload, audit_txid_current, audit_operation,"
            " audit_entry_created) VALUES ('x', '{}', 1, 'I', %s)",
            [dt.datetime.combine(boundary, dt.time(0), tzinfo=dt.UTC)],
        )
    placed = sql("SELECT DISTINCT tableoid::regclass::text FROM audit_simple WHERE object_table = 'x'")
    assert placed == [(f"audit_simple_{boundary:%Y%m%d}_{next_month(boundary):%Y%m%d}",)]


def test_coverage_system_check(db, settings):
    settings.DPA_MIN_COVERAGE_DAYS = 400
    found = check_partition_coverage(databases=["default"])
    assert [m.id for m in found] == ["partitioned_audit.W020"] and isinstance(found[0], checks.Warning)
    assert found[0].msg.startswith(
        "Audit partitions on database 'default': partitions of public.audit_simple end on "
    )
    assert check_partition_coverage(databases=None) == []  # not a database run: no query
    settings.DPA_MIN_COVERAGE_DAYS = 0
    assert check_partition_coverage(databases=["default"]) == []
    settings.DPA_MIN_COVERAGE_DAYS = "7"
    assert [m.id for m in checks.run_checks()] == ["partitioned_audit.E010"]


def test_104_partition_manager_import_paths_still_work(db):
    from django_partitioned_audit.partitions.partition_manager_base import BasePartitionManager
    from django_partitioned_audit.partitions.partition_manager_time_range import PartitionManager
    from django_partitioned_audit.partitions.time_range_partitioning import (
        MonthlyTimeRangeGenerator as Monthly,
    )

    assert issubclass(PartitionManager, BasePartitionManager)
    with pytest.warns(DeprecationWarning, match="use django_partitioned_audit.maintenance.maintainer"):
        manager = PartitionManager(time_range_generator=Monthly(), extra_days=70)
    plan = manager.generate_plan()
    assert plan.status is Status.MISSING_NEXT and len(plan.existing_partitions) == 2
    manager.create_partitions(plan.partitions_to_create)
    assert manager.generate_plan().status is Status.OK
    with (
        pytest.raises(ValueError, match="extra_days must be zero or more, got -3"),
        pytest.warns(DeprecationWarning),
    ):
        PartitionManager(Monthly(), extra_days=-3)
