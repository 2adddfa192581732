"""Exceptions raised by the engine."""

from __future__ import annotations


class AuditError(Exception):
    """Base class of every error the engine raises on purpose."""


class ConfigurationError(AuditError):
    """A setting, a layout name or a table description is not usable."""


class PartitionError(AuditError):
    """Partitions cannot be planned or changed as asked."""


class OutdatedInstall(AuditError):
    """The audit objects in the database are older than this version (OUTDATED): an action
    that reads what this version added needs ``migrate`` (or ``install()``) run first."""


class DatabaseProblem(AuditError):
    """The server refused or failed a statement (objects missing, no privilege, connection
    lost): the action could not tell; the message is the server's first line."""


def one_line(exc: BaseException) -> str:
    """A driver's error as one line: its lines (message, DETAIL, hint) joined by spaces."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__
