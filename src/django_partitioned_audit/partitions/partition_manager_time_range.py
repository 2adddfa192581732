"""1.0.4's ``PartitionManager``, now a thin layer over the engine's planner and maintainer."""

from __future__ import annotations

import datetime as dt

from partitioned_audit.partitioning.plan import Plan, today_utc
from partitioned_audit.partitioning.ranges import PartitionInfo, TimeRangeGenerator

from ..maintenance import maintainer

DEFAULT_EXTRA_DAYS = 30


class PartitionManager:
    """Plan and create partitions of the configured audit table (1.0.4's constructor).

    Args:
        time_range_generator: e.g. ``MonthlyTimeRangeGenerator()``.
        extra_days: days after today that must be covered.
        audit_manager: accepted for compatibility; the layout comes from the settings.
        now: the current time (timezone-aware); defaults to now in UTC.
    """

    default_extra_days = DEFAULT_EXTRA_DAYS

    def __init__(
        self,
        time_range_generator: TimeRangeGenerator,
        extra_days: int = DEFAULT_EXTRA_DAYS,
        audit_manager: object | None = None,
        using: str = "default",
        now: dt.datetime | None = None,
    ) -> None:
        if extra_days < 0:
            raise ValueError(f"extra_days must be zero or more, got {extra_days}")
        self._time_range_generator = time_range_generator
        self._extra_days = extra_days
        self._now = now
        self._maintainer = maintainer(using)

    @property
    def today(self) -> dt.date:
        return today_utc(self._now)

    def get_existing_partitions(self) -> list[PartitionInfo]:
        return self._maintainer.existing()

    def generate_plan(self) -> Plan:
        return self._maintainer.plan(self._time_range_generator, self._extra_days, self._now)

    def create_partitions(self, partitions: list[PartitionInfo]) -> None:
        self._maintainer.create(partitions)
