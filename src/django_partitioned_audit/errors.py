"""Errors the Django integration raises on purpose; each is an engine ``AuditError``."""

from __future__ import annotations

from partitioned_audit.errors import AuditError

__all__ = ["RevertError"]


class RevertError(AuditError):
    """A revert or a restore was refused (a conflict, a column the trail does not hold, a
    version of another object); nothing was written. The message says which fields or which
    constraint, and what to do instead."""
