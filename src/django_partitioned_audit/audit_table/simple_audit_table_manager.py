from partitioned_audit.layouts import SIMPLE

from .audit_table_manager import AuditTableManager


class SimpleAuditTableManager(AuditTableManager):
    """Table ``audit_simple``: the row as JSON, one row per change."""

    layout = SIMPLE
    model_name = "SimpleAuditEntry"
