"""Instants on the edges of the calendar, and a plain oracle for the partitions each one needs.

The oracle is written from the calendar alone (no engine code), so a test comparing the engine
with it can fail. It is used by every test whose result depends on what day it is.
"""

from __future__ import annotations

import calendar
import datetime as dt
from zoneinfo import ZoneInfo

LEAP_YEAR, COMMON_YEAR = 2024, 2025
AHEAD_OF_UTC = ZoneInfo("Asia/Tokyo")  # UTC+9: at 23:59 UTC its date is already tomorrow


def _edges(year: int) -> list[dt.date]:
    days = []
    for month in range(1, 13):
        last = calendar.monthrange(year, month)[1]
        days += [dt.date(year, month, 1), dt.date(year, month, 2), dt.date(year, month, last)]
    return days


#: Noon UTC on the first, second and last day of every month of a leap and a common year.
EDGE_INSTANTS = [
    dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC)
    for year in (LEAP_YEAR, COMMON_YEAR)
    for day in _edges(year)
]

#: 23:59 UTC on month and year ends, seen from a zone where it is already the next day.
LATE_AHEAD_INSTANTS = [
    dt.datetime.combine(day, dt.time(23, 59), tzinfo=dt.UTC).astimezone(AHEAD_OF_UTC)
    for day in (dt.date(2024, 2, 29), dt.date(2025, 2, 28), dt.date(2024, 12, 31), dt.date(2025, 6, 30))
]

ALL_INSTANTS = EDGE_INSTANTS + LATE_AHEAD_INSTANTS


def instant_id(instant: dt.datetime) -> str:
    return instant.isoformat(timespec="minutes")


def utc_day(instant: dt.datetime) -> dt.date:
    return instant.astimezone(dt.UTC).date()


def first_of_next_month(day: dt.date) -> dt.date:
    return dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)


def monthly(table: str, first: dt.date, last: dt.date) -> list[str]:
    """Names of the monthly partitions holding every day from ``first`` to ``last``."""
    names, start = [], first.replace(day=1)
    while start <= last:
        end = first_of_next_month(start)
        names.append(f"{table}_{start:%Y%m%d}_{end:%Y%m%d}")
        start = end
    return names


def stepped(table: str, first: dt.date, last: dt.date, days: int) -> list[str]:
    """Names of ``days``-long partitions starting on ``first`` until ``last`` is covered."""
    names, start = [], first
    while start <= last:
        end = start + dt.timedelta(days=days)
        names.append(f"{table}_{start:%Y%m%d}_{end:%Y%m%d}")
        start = end
    return names
