"""Helpers of the 1.0.4 compatibility layer (``audit_table``, ``partitions``, ``signals``)."""

from __future__ import annotations

import warnings


def deprecated(old: str, new: str) -> None:
    """Warn that 1.0.4's ``old`` is kept for compatibility and ``new`` replaces it."""
    warnings.warn(
        f"{old} is 1.0.4's API, kept for compatibility; use {new}", DeprecationWarning, stacklevel=3
    )
