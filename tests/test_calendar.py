"""Every date-dependent path, run with the clock frozen on the edges of the calendar.

Partition planning, ``migrate``'s current-and-next partitions, ``create`` and ``check`` must
give the same answer on any day: the first, second and last day of every month of a leap and
a common year, and 23:59 UTC seen from a zone where it is already tomorrow. What each day
needs comes from the plain calendar oracle in ``tests.calendar_days``.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
import time_machine

from django_partitioned_audit.maintenance import ensure_current_and_next
from partitioned_audit.partitioning.plan import coverage, plan, today_utc
from partitioned_audit.partitioning.ranges import (
    DailyTimeRangeGenerator,
    MonthlyTimeRangeGenerator,
    WeeklyTimeRangeGenerator,
)
from tests.calendar_days import (
    ALL_INSTANTS,
    LATE_AHEAD_INSTANTS,
    first_of_next_month,
    instant_id,
    monthly,
    stepped,
    utc_day,
)
from tests.helpers import attached_partitions, detach_all_dated_partitions
from tests.helpers import partition_command as command

instants = pytest.mark.parametrize("instant", ALL_INSTANTS, ids=instant_id)


def test_the_late_instants_are_tomorrow_locally_and_today_in_utc():
    for instant in LATE_AHEAD_INSTANTS:
        assert instant.date() == utc_day(instant) + dt.timedelta(days=1)
        assert today_utc(instant) == utc_day(instant)


@instants
@pytest.mark.parametrize("extra_days", [0, 1, 30, 60])
def test_plans_from_nothing_match_the_calendar(instant, extra_days):
    today, last = utc_day(instant), utc_day(instant) + dt.timedelta(days=extra_days)
    expected = {
        MonthlyTimeRangeGenerator: monthly("t", today, last),
        WeeklyTimeRangeGenerator: stepped("t", today, last, 7),
        DailyTimeRangeGenerator: stepped("t", today, last, 1),
    }
    for generator, names in expected.items():
        result = plan("t", [], today_utc(instant), extra_days, generator())
        assert [p.partition for p in result.partitions_to_create] == names, generator.__name__
        assert coverage("t", result.partitions_to_create, today, extra_days, 0, True).ok


def dated_partitions() -> list[str]:
    return [name for name in attached_partitions() if name != "audit_simple_default"]


@instants
def test_migrate_create_and_check_on_a_frozen_day(db, settings, instant):
    settings.TIME_ZONE = str(instant.tzinfo)  # Django's zone follows the clock's
    detach_all_dated_partitions()  # what the real migrate made, for the real today
    today = utc_day(instant)
    with time_machine.travel(instant, tick=False):
        assert dt.datetime.now(dt.UTC) == instant
        # migrate: the partition holding today and the next one.
        ensure_current_and_next()
        assert dated_partitions() == monthly("audit_simple", today, first_of_next_month(today))
        # 60 days ahead, as the 1.0.4 quick start asks; then nothing is left to create.
        document = json.loads(command("create", "--extra-days=60", "--json"))
        wanted = monthly("audit_simple", today, today + dt.timedelta(days=60))
        assert sorted(p["name"] for p in document["existing"] + document["created"]) == wanted
        assert dated_partitions() == wanted
        assert json.loads(command("simulate", "--extra-days=60", "--json"))["to_create"] == []
        result = json.loads(command("check", "--extra-days=60", "--json"))
        end_of_last = first_of_next_month(today + dt.timedelta(days=60))
        assert result["ok"] and result["covered_until"] == str(end_of_last)
