from partitioned_audit.partitioning.ranges import (
    DailyTimeRangeGenerator,
    MonthlyTimeRangeGenerator,
    TimeRangeGenerator,
    WeeklyTimeRangeGenerator,
)

__all__ = [
    "DailyTimeRangeGenerator",
    "MonthlyTimeRangeGenerator",
    "TimeRangeGenerator",
    "WeeklyTimeRangeGenerator",
]
