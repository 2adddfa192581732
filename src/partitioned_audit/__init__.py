"""partitioned_audit: the engine of django-partitioned-audit. It never imports Django.

Install the audit objects and triggers on any PostgreSQL database from a DB-API cursor::

    from partitioned_audit import SIMPLE, TableSpec, install, enable

    install(cursor, SIMPLE, schema="audit")
    enable(cursor, SIMPLE, TableSpec("public", "invoice", pk=("id",)), schema="audit")
"""

from .errors import AuditError, ConfigurationError, DatabaseProblem, OutdatedInstall, PartitionError
from .layouts import ADVANCED, LAYOUTS, SIMPLE, Layout, TableSpec, get_layout
from .objects import Status, disable, enable, install, layout_status, uninstall

__version__ = "2.0.0.dev0"

__all__ = [
    "ADVANCED",
    "LAYOUTS",
    "SIMPLE",
    "AuditError",
    "ConfigurationError",
    "DatabaseProblem",
    "Layout",
    "OutdatedInstall",
    "PartitionError",
    "Status",
    "TableSpec",
    "disable",
    "enable",
    "get_layout",
    "install",
    "layout_status",
    "uninstall",
]
