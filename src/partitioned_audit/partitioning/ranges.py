"""Pure time ranges: UTC bounds, partition names, and the day/week/month steps of 1.0.4."""

from __future__ import annotations

import calendar
import datetime as dt
import importlib
import re
from dataclasses import dataclass

from ..errors import PartitionError

_NAME = re.compile(r"^(?P<table>.+)_(?P<start>\d{8})_(?P<end>\d{8})$")


@dataclass(frozen=True, order=True)
class TimeRange:
    """Days ``[from_date, to_date)``; a partition holds rows from 00:00 UTC of ``from_date``."""

    from_date: dt.date
    to_date: dt.date

    def __post_init__(self) -> None:
        if self.from_date >= self.to_date:
            raise PartitionError(f"a range must end after it starts: {self.from_date} .. {self.to_date}")

    @property
    def lower(self) -> dt.datetime:
        return dt.datetime.combine(self.from_date, dt.time(0), tzinfo=dt.UTC)

    @property
    def upper(self) -> dt.datetime:
        return dt.datetime.combine(self.to_date, dt.time(0), tzinfo=dt.UTC)

    def contains(self, day: dt.date) -> bool:
        return self.from_date <= day < self.to_date


@dataclass(frozen=True)
class PartitionInfo:
    """A partition by name and range (1.0.4's class, same fields)."""

    partition: str
    from_date: dt.date
    to_date: dt.date
    partitioned_table: str

    @classmethod
    def create(cls, partitioned_table: str, from_date: dt.date, to_date: dt.date) -> PartitionInfo:
        TimeRange(from_date, to_date)
        return cls(
            partition_name(partitioned_table, from_date, to_date), from_date, to_date, partitioned_table
        )

    @classmethod
    def parse(cls, table_name: str) -> PartitionInfo | None:
        """The partition a name such as ``audit_simple_20240101_20240201`` stands for, else None."""
        match = _NAME.fullmatch(table_name)
        if not match:
            return None
        try:
            start = dt.datetime.strptime(match["start"], "%Y%m%d").date()
            end = dt.datetime.strptime(match["end"], "%Y%m%d").date()
        except ValueError:
            return None
        if start >= end:
            return None
        return cls(table_name, start, end, match["table"])

    @classmethod
    def of(cls, table_name: str, partitioned_table: str) -> PartitionInfo | None:
        """The partition ``table_name`` stands for if it is a dated partition of ``partitioned_table``."""
        info = cls.parse(table_name)
        return info if info is not None and info.partitioned_table == partitioned_table else None

    @property
    def time_range(self) -> TimeRange:
        return TimeRange(self.from_date, self.to_date)


def partition_name(table: str, from_date: dt.date, to_date: dt.date) -> str:
    name = f"{table}_{from_date:%Y%m%d}_{to_date:%Y%m%d}"
    if len(name.encode()) > 63:
        raise PartitionError(f"partition name {name!r} is longer than PostgreSQL's 63 bytes")
    return name


class TimeRangeGenerator:
    """Steps of a partitioning scheme. Subclass and implement both methods for a custom one."""

    def generate_partition_info_for_current_period(self, today: dt.date) -> TimeRange:
        """Return the range that holds ``today``, used when no partition exists yet."""
        raise NotImplementedError

    def new_partition(self, previous: TimeRange) -> TimeRange:
        """Return the range that starts where ``previous`` ends."""
        raise NotImplementedError


def _add_month(day: dt.date) -> dt.date:
    year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
    return day.replace(year=year, month=month, day=min(day.day, calendar.monthrange(year, month)[1]))


class MonthlyTimeRangeGenerator(TimeRangeGenerator):
    """One partition per calendar month, from the 1st."""

    def generate_partition_info_for_current_period(self, today: dt.date) -> TimeRange:
        start = today.replace(day=1)
        return TimeRange(start, _add_month(start))

    def new_partition(self, previous: TimeRange) -> TimeRange:
        """From where ``previous`` ends to the 1st of the next month, as 1.0.4: a range that
        ends mid-month is followed by the rest of that month, and the next ones are whole."""
        return TimeRange(previous.to_date, _add_month(previous.to_date.replace(day=1)))


class _FixedStep(TimeRangeGenerator):
    days = 1

    def generate_partition_info_for_current_period(self, today: dt.date) -> TimeRange:
        return TimeRange(today, today + dt.timedelta(days=self.days))

    def new_partition(self, previous: TimeRange) -> TimeRange:
        return TimeRange(previous.to_date, previous.to_date + dt.timedelta(days=self.days))


class WeeklyTimeRangeGenerator(_FixedStep):
    """Seven days per partition, the first starting today."""

    days = 7


class DailyTimeRangeGenerator(_FixedStep):
    """One day per partition, the first starting today."""

    days = 1


GENERATORS: dict[str, type[TimeRangeGenerator]] = {
    "MonthlyTimeRangeGenerator": MonthlyTimeRangeGenerator,
    "WeeklyTimeRangeGenerator": WeeklyTimeRangeGenerator,
    "DailyTimeRangeGenerator": DailyTimeRangeGenerator,
}


def get_generator(name: str) -> TimeRangeGenerator:
    """A generator by 1.0.4 name (``"WeeklyTimeRangeGenerator"``) or by dotted path to a subclass.

    Raises:
        PartitionError: the path does not import or is not a ``TimeRangeGenerator`` subclass.
    """
    if name in GENERATORS:
        return GENERATORS[name]()
    module_name, _, attr = name.replace(":", ".").rpartition(".")
    if not module_name:
        raise PartitionError(
            f"unknown time range generator {name!r}: use one of {', '.join(GENERATORS)} "
            "or the dotted path of a TimeRangeGenerator subclass"
        )
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise PartitionError(f"time range generator {name!r} cannot be imported: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, TimeRangeGenerator)):
        raise PartitionError(f"time range generator {name!r} is not a TimeRangeGenerator subclass")
    return cls()
