"""1.0.4's ``post_migrate`` handler, kept for code that calls it; ``migrate`` runs
:func:`django_partitioned_audit.sync.sync` itself."""

from __future__ import annotations

from typing import Any

from .compat import deprecated


def audit_run_post_migrate(
    app_config: Any, verbosity: int = 1, using: str = "default", **kwargs: Any
) -> None:
    """Install the audit objects and the triggers of every registered model on ``using``."""
    from .sync import sync

    deprecated("signals.audit_run_post_migrate()", "django_partitioned_audit.sync.sync(using)")
    sync(using, verbosity=verbosity, stdout=kwargs.get("stdout"))
