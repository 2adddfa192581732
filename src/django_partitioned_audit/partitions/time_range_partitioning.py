"""1.0.4 import path of the partition schemes; they live in
:mod:`partitioned_audit.partitioning.ranges`."""

from __future__ import annotations

import datetime as dt

from partitioned_audit.partitioning.ranges import (
    DailyTimeRangeGenerator,
    MonthlyTimeRangeGenerator,
    TimeRange,
    TimeRangeGenerator,
    WeeklyTimeRangeGenerator,
)


class NotImplementedTimeRangeGenerator(TimeRangeGenerator):
    """1.0.4's placeholder scheme: every step raises."""

    def generate_partition_info_for_current_period(self, today: dt.date) -> TimeRange:
        raise NotImplementedError("NotImplementedTimeRangeGenerator has no current period")

    def new_partition(self, previous: TimeRange) -> TimeRange:
        raise NotImplementedError("NotImplementedTimeRangeGenerator has no next partition")


__all__ = [
    "DailyTimeRangeGenerator",
    "MonthlyTimeRangeGenerator",
    "NotImplementedTimeRangeGenerator",
    "TimeRangeGenerator",
    "WeeklyTimeRangeGenerator",
]
