from partitioned_audit.partitioning.ranges import PartitionInfo, TimeRange

__all__ = ["PartitionInfo", "TimeRange"]
