"""Pure planning: which partitions to create, from (existing partitions, today, extra days)."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from .ranges import PartitionInfo, TimeRangeGenerator


class Status(enum.Enum):
    OK = 1
    MISSING_NEXT = 2
    MISSING_CURRENT = 3


@dataclass(frozen=True)
class Plan:
    existing_partitions: list[PartitionInfo]
    partitions_to_create: list[PartitionInfo]
    status: Status
    problems: list[str] = field(default_factory=list)

    @property
    def sorted_all(self) -> list[PartitionInfo]:
        return sorted(self.existing_partitions + self.partitions_to_create, key=lambda p: p.from_date)


def today_utc(now: dt.datetime | None = None) -> dt.date:
    """The current day in UTC, whatever the local time zone."""
    now = now or dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(dt.UTC).date()


def _problems(existing: Sequence[PartitionInfo]) -> list[str]:
    found = []
    ordered = sorted(existing, key=lambda p: p.from_date)
    for before, after in zip(ordered, ordered[1:], strict=False):
        if after.from_date < before.to_date:
            found.append(f"{before.partition} overlaps {after.partition}")
        elif after.from_date > before.to_date:
            found.append(
                f"gap from {before.to_date} to {after.from_date} between {before.partition} and {after.partition}"
            )
    return found


def plan(
    table: str,
    existing: Sequence[PartitionInfo],
    today: dt.date,
    extra_days: int,
    generator: TimeRangeGenerator,
) -> Plan:
    """Partitions to create so that ``[today, today + extra_days]`` is covered.

    New partitions continue from the last existing one, so they never overlap it; without
    partitions the first one holds ``today``. Gaps and overlaps among existing partitions
    are reported in ``problems``, not raised.
    """
    if extra_days < 0:
        raise ValueError(f"extra_days must be zero or more, got {extra_days}")
    last_day = today + dt.timedelta(days=extra_days)
    ordered = sorted(existing, key=lambda p: p.from_date)
    to_create: list[PartitionInfo] = []
    if ordered:
        current = ordered[-1].time_range
    else:
        current = generator.generate_partition_info_for_current_period(today)
        to_create.append(PartitionInfo.create(table, current.from_date, current.to_date))
    while current.to_date <= last_day:
        current = generator.new_partition(current)
        to_create.append(PartitionInfo.create(table, current.from_date, current.to_date))

    if any(p.time_range.contains(today) for p in to_create):
        status = Status.MISSING_CURRENT
    elif to_create:
        status = Status.MISSING_NEXT
    else:
        status = Status.OK
    return Plan(list(ordered), to_create, status, _problems(ordered))
