"""1.0.4 import paths of the partition classes; the code lives in ``partitioned_audit.partitioning``."""
