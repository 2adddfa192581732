"""Exceptions raised by the engine."""


class AuditError(Exception):
    """Base class of every error the engine raises on purpose."""


class ConfigurationError(AuditError):
    """A setting, a layout name or a table description is not usable."""


class PartitionError(AuditError):
    """Partitions cannot be planned or changed as asked."""
