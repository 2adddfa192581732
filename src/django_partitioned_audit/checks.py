"""System checks: registration mistakes and bad settings surface at start-up, with an id and a hint."""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from . import conf
from .registry import registration


def check_registration(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    try:
        problems = registration().problems
    except ImproperlyConfigured:
        return []  # reported by check_settings
    return [checks.Error(p.message, hint=p.hint, obj=p.obj, id=p.id) for p in problems]


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    for accessor in (
        conf.layout,
        conf.audit_schema,
        conf.payload_gin_index,
        conf.excluded_columns,
        conf.masked_columns,
    ):
        try:
            accessor()
        except ImproperlyConfigured as exc:
            errors.append(checks.Error(str(exc), id="partitioned_audit.E010"))
    return errors
