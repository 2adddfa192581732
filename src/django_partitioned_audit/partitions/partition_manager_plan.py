from partitioned_audit.partitioning.plan import Plan, Status

__all__ = ["Plan", "Status"]
