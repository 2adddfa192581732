"""1.0.4's helpers reading an app's registration lists."""

from __future__ import annotations

from typing import Any


def get_enabled_models(app_config: Any) -> list[str]:
    """The names in the app's ``trigger_audit_models`` (none when it has no such list)."""
    return list(getattr(app_config, "trigger_audit_models", ()))


def get_disabled_models(app_config: Any) -> list[str]:
    """The names in the app's ``audit_disabled``."""
    return list(getattr(app_config, "audit_disabled", ()))
