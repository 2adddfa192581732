"""``AuditContextMiddleware``: who made each change in a request, and from where.

Put it after ``AuthenticationMiddleware``. Every audit row written while a request is
handled (sync or async view) gets ``user_id``, ``username``, ``method``, ``path`` and
``request_id`` in ``audit_context``: the id comes from the header named by
``DPA_REQUEST_ID_HEADER`` (default ``X-Request-ID``) when the client or a proxy sent one,
else a new UUID. ``DPA_AUDIT_CONTEXT_EXTRA`` adds keys: a mapping of key to the dotted path
of an attribute of the request (``"META.REMOTE_ADDR"``) or to a callable taking the request.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .context import audit_context

DEFAULT_REQUEST_ID_HEADER = "X-Request-ID"


def _extra() -> dict[str, Any]:
    extra = getattr(settings, "DPA_AUDIT_CONTEXT_EXTRA", {}) or {}
    if not isinstance(extra, dict) or not all(isinstance(k, str) for k in extra):
        raise ImproperlyConfigured(
            f"DPA_AUDIT_CONTEXT_EXTRA must map context keys to dotted request paths or callables, got {extra!r}"
        )
    for key, source in extra.items():
        if not (callable(source) or (isinstance(source, str) and source)):
            raise ImproperlyConfigured(
                f"DPA_AUDIT_CONTEXT_EXTRA[{key!r}] must be a dotted path such as 'META.REMOTE_ADDR'"
                f" or a callable taking the request, got {source!r}"
            )
    return extra


def _lookup(request: Any, path: str) -> Any:
    value = request
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else getattr(value, part, None)
        if value is None:
            return None
    return value


def _loaded_user(request: Any) -> Any:
    user = request.user
    _ = user.is_authenticated  # evaluates the lazy object here, where the ORM may run
    return user


class AuditContextMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self.header = getattr(settings, "DPA_REQUEST_ID_HEADER", DEFAULT_REQUEST_ID_HEADER)
        if not isinstance(self.header, str) or not self.header:
            raise ImproperlyConfigured(f"DPA_REQUEST_ID_HEADER must be a header name, got {self.header!r}")
        self.extra = _extra()
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if self.is_async:
            return self._acall(request)
        with audit_context(**self.values(request, getattr(request, "user", None))):
            return self.get_response(request)

    async def _acall(self, request: Any) -> Any:
        user = None
        if hasattr(request, "auser"):  # Django 5.0+
            user = await request.auser()
        elif hasattr(request, "user"):  # Django 4.2: load the lazy user in a thread
            user = await sync_to_async(_loaded_user)(request)
        async with audit_context(**self.values(request, user)):
            return await self.get_response(request)

    def values(self, request: Any, user: Any) -> dict[str, Any]:
        authenticated = bool(getattr(user, "is_authenticated", False))
        values: dict[str, Any] = {
            "user_id": user.pk if authenticated else None,
            "username": user.get_username() if authenticated else None,
            "method": request.method,
            "path": request.path,
            "request_id": request.headers.get(self.header) or uuid.uuid4().hex,
        }
        for key, source in self.extra.items():
            value = source(request) if callable(source) else _lookup(request, source)
            values[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        return values
