"""``AuditContextMiddleware``: who made each change in a request, and from where.

Put it after ``AuthenticationMiddleware``. Every audit row written while a request is
handled (sync or async view) gets ``user_id``, ``username``, ``method``, ``path`` and
``request_id`` in ``audit_context``: the id comes from the header named by
``DPA_REQUEST_ID_HEADER`` (default ``X-Request-ID``) when the client or a proxy sent one,
else a new UUID. ``DPA_AUDIT_CONTEXT_EXTRA`` adds keys: a mapping of key to the dotted path
of an attribute of the request (``"META.REMOTE_ADDR"``), to a callable taking the request, or
to the dotted path of one. An entry that can never give a value is a system check error
(``partitioned_audit.E011``) and the middleware refuses it; a path a request does not have
records null, and the first time it happens for a key the process logs a warning naming it.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.contrib.sessions.backends.base import SessionBase

from . import conf
from .context import audit_context

logger = logging.getLogger(__name__)

DEFAULT_REQUEST_ID_HEADER = conf.DEFAULT_REQUEST_ID_HEADER

_MISSING = object()

#: (key, path) of the DPA_AUDIT_CONTEXT_EXTRA entries whose lookup failed and was logged.
_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def _lookup(request: Any, key: str, steps: tuple[str, ...]) -> Any:
    """Follow ``steps`` from the request: attributes, and keys of mappings (META, GET,
    headers) and of the session. A step the request does not have gives None, logged once
    per process."""
    value = request
    for depth, step in enumerate(steps):
        if isinstance(value, Mapping | SessionBase):
            value = value[step] if step in value else _MISSING
        else:
            value = getattr(value, step, _MISSING)
        if value is _MISSING:
            _warn_once(key, steps, depth)
            return None
    return value


def _warn_once(key: str, steps: tuple[str, ...], depth: int) -> None:
    path = ".".join(steps)
    with _warned_lock:
        if (key, path) in _warned:
            return
        _warned.add((key, path))
    where = f"no {steps[depth]!r} in {'.'.join(steps[:depth])!r}" if depth else f"no attribute {steps[0]!r}"
    logger.warning(
        "DPA_AUDIT_CONTEXT_EXTRA[%r] = %r: the request has %s, so %r is recorded as null. "
        "Logged once per process.",
        key,
        path,
        where,
        key,
    )


def _loaded_user(request: Any) -> Any:
    user = request.user
    _ = user.is_authenticated  # evaluates the lazy object here, where the ORM may run
    return user


class AuditContextMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self.header = conf.request_id_header()
        self.extra = conf.audit_context_extra()
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
            value = source(request) if callable(source) else _lookup(request, key, source)
            values[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        return values
