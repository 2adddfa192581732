"""Pure planning: which partitions to create, detach or drop, and whether coverage is enough.

Nothing here does I/O; ``today`` is always passed in (see :func:`today_utc`).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import PartitionError
from .ranges import PartitionInfo, TimeRange, TimeRangeGenerator


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


def _checked(generated: TimeRange, what: str, generator: TimeRangeGenerator) -> TimeRange:
    if not isinstance(generated, TimeRange):
        raise PartitionError(f"{type(generator).__name__}.{what} must return a TimeRange, got {generated!r}")
    return generated


def _first_range(today: dt.date, generator: TimeRangeGenerator) -> TimeRange:
    current = _checked(
        generator.generate_partition_info_for_current_period(today),
        "generate_partition_info_for_current_period()",
        generator,
    )
    if not current.contains(today):
        raise PartitionError(
            f"{type(generator).__name__}.generate_partition_info_for_current_period({today}) returned "
            f"{current.from_date} .. {current.to_date}, which does not hold {today}"
        )
    return current


def _next_range(previous: TimeRange, generator: TimeRangeGenerator) -> TimeRange:
    following = _checked(generator.new_partition(previous), "new_partition()", generator)
    if following.from_date != previous.to_date:
        raise PartitionError(
            f"{type(generator).__name__}.new_partition() must start where the previous range ends "
            f"({previous.to_date}), got {following.from_date}"
        )
    return following


def plan(
    table: str,
    existing: Sequence[PartitionInfo],
    today: dt.date,
    extra_days: int,
    generator: TimeRangeGenerator,
) -> Plan:
    """Partitions to create so that every day of ``[today, today + extra_days]`` is covered.

    As in 1.0.4, new partitions continue from the last partition that starts on or before
    today (so a gap since the last run is filled and rows the DEFAULT partition caught find
    a home); without one, the first new partition is the generator's current period. A new
    partition is cut short where an existing one begins, so the plan never overlaps what
    exists. Gaps and overlaps among existing partitions are reported in ``problems``.
    """
    if extra_days < 0:
        raise ValueError(f"extra_days must be zero or more, got {extra_days}")
    last_day = today + dt.timedelta(days=extra_days)
    ordered = sorted(existing, key=lambda p: (p.from_date, p.to_date))
    started = [p.time_range for p in ordered if p.from_date <= today]
    previous: TimeRange | None = max(started, key=lambda r: r.to_date) if started else None
    created: list[TimeRange] = []
    while previous is None or previous.to_date <= last_day:
        candidate = _first_range(today, generator) if previous is None else _next_range(previous, generator)
        blocking = [
            p.time_range
            for p in ordered
            if p.from_date < candidate.to_date and p.to_date > candidate.from_date
        ]
        if blocking and min(r.from_date for r in blocking) <= candidate.from_date:
            # An existing partition already holds the start of the candidate: continue after it.
            previous = max(
                (r for r in blocking if r.from_date <= candidate.from_date), key=lambda r: r.to_date
            )
            continue
        if blocking:
            candidate = TimeRange(candidate.from_date, min(r.from_date for r in blocking))
        created.append(candidate)
        previous = candidate

    to_create = [PartitionInfo.create(table, r.from_date, r.to_date) for r in created]
    if any(r.contains(today) for r in created):
        status = Status.MISSING_CURRENT
    elif to_create:
        status = Status.MISSING_NEXT
    else:
        status = Status.OK
    return Plan(list(ordered), to_create, status, _problems(ordered))


def expired(existing: Sequence[PartitionInfo], today: dt.date, older_than_days: int) -> list[PartitionInfo]:
    """Partitions whose whole range ends at least ``older_than_days`` days before ``today``.

    Audit rows carry their transaction's start time, so a transaction that began yesterday
    may still write into yesterday's partition today: at least one day is required, and a
    partition that ends after today's start is never returned.
    """
    if older_than_days < 1:
        raise ValueError(f"older_than_days must be 1 or more, got {older_than_days}")
    cutoff = today - dt.timedelta(days=older_than_days)
    return sorted((p for p in existing if p.to_date <= cutoff), key=lambda p: p.from_date)


@dataclass(frozen=True)
class Coverage:
    """The outcome of ``check``: ``ok``, and a one-line ``reason`` fit for cron mail or a monitor."""

    ok: bool
    reason: str
    covered_until: dt.date | None
    default_rows: int


def coverage(
    table: str,
    existing: Sequence[PartitionInfo],
    today: dt.date,
    extra_days: int,
    default_rows: int,
    default_attached: bool,
) -> Coverage:
    """Whether ``[today, today + extra_days]`` is covered with no gap and the DEFAULT partition is empty."""
    if extra_days < 0:
        raise ValueError(f"extra_days must be zero or more, got {extra_days}")
    needed = today + dt.timedelta(days=extra_days)
    day: dt.date | None = today
    for part in sorted(existing, key=lambda p: p.from_date):
        if day is not None and part.from_date <= day < part.to_date:
            day = part.to_date
    covered_until = None if day == today else day
    if not default_attached:
        reason = f"the default partition of {table} is not attached; run create to restore it"
    elif covered_until is None:
        reason = f"no partition of {table} covers today ({today}); run create"
    elif covered_until <= needed:
        reason = (
            f"partitions of {table} end on {covered_until}, before {needed} "
            f"(today + {extra_days} days); run create"
        )
    elif default_rows:
        reason = f"the default partition of {table} holds {default_rows} row(s); run create to move them"
    else:
        return Coverage(
            True,
            f"{table} is covered from {today} until {covered_until}; the default partition is empty",
            covered_until,
            0,
        )
    return Coverage(False, reason, covered_until, default_rows)
