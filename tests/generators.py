"""Custom time range generators, loaded by dotted path in the partition tests."""

from __future__ import annotations

import datetime as dt

from partitioned_audit.partitioning.ranges import TimeRange, TimeRangeGenerator


class QuarterlyGenerator(TimeRangeGenerator):
    """A custom generator, loaded by dotted path in tests/test_partitions.py."""

    def generate_partition_info_for_current_period(self, today: dt.date) -> TimeRange:
        start = today.replace(month=(today.month - 1) // 3 * 3 + 1, day=1)
        return self.new_partition(TimeRange(start - dt.timedelta(days=1), start))

    def new_partition(self, previous: TimeRange) -> TimeRange:
        """From where ``previous`` ends to the start of the next calendar quarter."""
        start = previous.to_date
        month = (start.month - 1) // 3 * 3 + 4
        return TimeRange(start, dt.date(start.year + (month > 12), (month - 1) % 12 + 1, 1))


class BrokenGenerator(TimeRangeGenerator):
    def generate_partition_info_for_current_period(self, today: dt.date) -> TimeRange:
        return TimeRange(today + dt.timedelta(days=3), today + dt.timedelta(days=5))
