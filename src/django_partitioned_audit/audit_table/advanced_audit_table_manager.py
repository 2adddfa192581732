from partitioned_audit.layouts import ADVANCED

from .audit_table_manager import AuditTableManager


class AdvancedAuditTableManager(AuditTableManager):
    """Table ``logged_actions``: old row, changed fields, session details, TRUNCATE."""

    layout = ADVANCED
    model_name = "AdvancedAuditEntry"
