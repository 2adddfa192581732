"""1.0.4 import path; the base class and the time-range manager are one class now."""

from .partition_manager_time_range import PartitionManager as BasePartitionManager

__all__ = ["BasePartitionManager"]
