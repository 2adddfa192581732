"""1.0.4's ``PartitionManager``: plans with the engine's planner, which never loops (1.0.4's
``generate_plan`` did, forever, when the newest partition lay past the days to cover)."""

from __future__ import annotations

from partitioned_audit.partitioning.plan import plan
from partitioned_audit.partitioning.ranges import TimeRange

from .partition_info import PartitionInfo
from .partition_manager_base import DEFAULT_EXTRA_DAYS, BasePartitionManager
from .partition_manager_plan import Plan


class PartitionManager(BasePartitionManager):
    def generate_partition_info_for_current_period(self) -> PartitionInfo:
        current = self._time_range_generator.generate_partition_info_for_current_period(self.today)
        return PartitionInfo.create(self._partitioned_table, current.from_date, current.to_date)

    def new_partition(self, previous: PartitionInfo) -> PartitionInfo:
        following = self._time_range_generator.new_partition(TimeRange(previous.from_date, previous.to_date))
        return PartitionInfo.create(previous.partitioned_table, following.from_date, following.to_date)

    def generate_plan(self) -> Plan:
        """The partitions to create so that ``extra_days`` days after today are covered."""
        existing = list(self.get_existing_partitions())
        found = plan(
            self._partitioned_table, existing, self.today, self._extra_days, self._time_range_generator
        )
        return Plan(
            existing_partitions=existing,
            partitions_to_create=[PartitionInfo.of_engine(p) for p in found.partitions_to_create],
            status=found.status,
        )


__all__ = ["DEFAULT_EXTRA_DAYS", "BasePartitionManager", "PartitionManager"]
