"""Every ``DPA_*`` setting: its default, its validation, and the accessor that reads it."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from partitioned_audit.layouts import CAPTURE_LEVELS, Layout
from partitioned_audit.objects import check_schema_name

SIMPLE_MANAGER = "django_partitioned_audit.audit_table.simple_audit_table_manager.SimpleAuditTableManager"
ADVANCED_MANAGER = (
    "django_partitioned_audit.audit_table.advanced_audit_table_manager.AdvancedAuditTableManager"
)

DOCS = "docs/settings.md"


def _get(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


def audit_table_manager_path() -> str:
    """``DPA_AUDIT_TABLE_MANAGER``: dotted path of the audit table manager (default: the simple layout)."""
    value = _get("DPA_AUDIT_TABLE_MANAGER", SIMPLE_MANAGER)
    if not isinstance(value, str) or not value:
        raise ImproperlyConfigured(
            f"DPA_AUDIT_TABLE_MANAGER must be a dotted path string, got {value!r}. See {DOCS}."
        )
    return value


def audit_table_manager_class() -> type:
    from .audit_table.audit_table_manager import AuditTableManager

    path = audit_table_manager_path()
    try:
        cls = import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"DPA_AUDIT_TABLE_MANAGER={path!r} cannot be imported: {exc}. See {DOCS}."
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, AuditTableManager)):
        raise ImproperlyConfigured(
            f"DPA_AUDIT_TABLE_MANAGER={path!r} is not an AuditTableManager subclass. See {DOCS}."
        )
    return cls


def layout() -> Layout:
    """The layout chosen through ``DPA_AUDIT_TABLE_MANAGER``."""
    return audit_table_manager_class().layout  # type: ignore[attr-defined,no-any-return]


def audit_schema() -> str:
    """``DPA_AUDIT_SCHEMA``: schema of the audit table, view and functions (default ``"public"``)."""
    value = _get("DPA_AUDIT_SCHEMA", "public")
    try:
        return check_schema_name(value)
    except Exception as exc:
        raise ImproperlyConfigured(f"DPA_AUDIT_SCHEMA: {exc}. See {DOCS}.") from exc


def archive_url() -> str | None:
    """``DPA_ARCHIVE_URL``: where ``archive`` writes and ``restore`` and ``verify --archive``
    read old partitions, ``s3://bucket/prefix`` or ``file:///path`` (default ``None``: give
    ``--to``/``--from``/``--archive URL``)."""
    from partitioned_audit.store import parse

    value = _get("DPA_ARCHIVE_URL", None)
    if value is None:
        return None
    try:
        parse(value)
    except Exception as exc:
        raise ImproperlyConfigured(f"DPA_ARCHIVE_URL: {exc}. See {DOCS}.") from exc
    return str(value)


def payload_gin_index() -> bool:
    """``DPA_PAYLOAD_GIN_INDEX``: keep a GIN index on the simple payload (default ``False``)."""
    value = _get("DPA_PAYLOAD_GIN_INDEX", False)
    if not isinstance(value, bool):
        raise ImproperlyConfigured(f"DPA_PAYLOAD_GIN_INDEX must be True or False, got {value!r}. See {DOCS}.")
    return value


def skip_unchanged_updates() -> bool:
    """``DPA_SKIP_UNCHANGED_UPDATES``: the simple layout records no UPDATE that changed no
    column (excluded ones aside), as the advanced layout never does (default ``False``: every
    UPDATE is recorded, as 1.0.4 did). A change takes effect at the next ``migrate``, which
    reinstalls the capture triggers."""
    value = _get("DPA_SKIP_UNCHANGED_UPDATES", False)
    if not isinstance(value, bool):
        raise ImproperlyConfigured(
            f"DPA_SKIP_UNCHANGED_UPDATES must be True or False, got {value!r}. See {DOCS}."
        )
    return value


#: ``DPA_CAPTURE_LEVEL``'s default, chosen by measurement (docs/performance.md).
DEFAULT_CAPTURE_LEVEL = "statement"


def capture_level() -> str:
    """``DPA_CAPTURE_LEVEL``: how the triggers of a model without a level of its own (an
    AppConfig's ``trigger_audit_capture_level``) capture INSERT, UPDATE and DELETE:
    ``"statement"`` (default: one call per statement, cheapest for bulk writes) or ``"row"``
    (one call per row, cheapest for single-row writes); TRUNCATE is captured per statement
    either way. A change takes effect at the next ``migrate``, which swaps the triggers."""
    value = _get("DPA_CAPTURE_LEVEL", DEFAULT_CAPTURE_LEVEL)
    if value not in CAPTURE_LEVELS:
        raise ImproperlyConfigured(
            f"DPA_CAPTURE_LEVEL must be one of {', '.join(map(repr, CAPTURE_LEVELS))}, got {value!r}. See {DOCS}."
        )
    return str(value)


def admin_enabled() -> bool:
    """``DPA_ADMIN``: register the read-only audit admin when ``django.contrib.admin`` is
    installed (default ``True``)."""
    value = _get("DPA_ADMIN", True)
    if not isinstance(value, bool):
        raise ImproperlyConfigured(f"DPA_ADMIN must be True or False, got {value!r}. See {DOCS}.")
    return value


def _column_map(name: str) -> dict[str, tuple[str, ...]]:
    value = _get(name, {})
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and "." in k and isinstance(v, list | tuple) and all(isinstance(c, str) for c in v)
        for k, v in value.items()
    ):
        raise ImproperlyConfigured(
            f'{name} must map "app_label.ModelName" to a list of field names, got {value!r}. See {DOCS}.'
        )
    return {k.lower(): tuple(v) for k, v in value.items()}


def excluded_columns() -> dict[str, tuple[str, ...]]:
    """``DPA_EXCLUDED_COLUMNS``: ``{"app.Model": ["field", ...]}`` left out of the payload (default ``{}``)."""
    return _column_map("DPA_EXCLUDED_COLUMNS")


def masked_columns() -> dict[str, tuple[str, ...]]:
    """``DPA_MASKED_COLUMNS``: ``{"app.Model": ["field", ...]}`` stored as ``"[masked]"`` (default ``{}``)."""
    return _column_map("DPA_MASKED_COLUMNS")


def read_model_table(view: str) -> str:
    """``Meta.db_table`` of a read model: the view, schema-qualified when not in ``public``."""
    from partitioned_audit.sql import quote_ident

    schema = _get("DPA_AUDIT_SCHEMA", "public")
    if not isinstance(schema, str) or schema == "public" or not schema:
        return view
    return quote_ident(schema, view)


def time_range_generator_name() -> str:
    """``DPA_TIME_RANGE_GENERATOR``: partition scheme used by ``migrate`` and by default in
    ``manage_partition_tables`` (default ``"MonthlyTimeRangeGenerator"``; also ``Weekly``,
    ``Daily`` or the dotted path of a ``TimeRangeGenerator`` subclass)."""
    from partitioned_audit.errors import PartitionError
    from partitioned_audit.partitioning.ranges import get_generator

    value = _get("DPA_TIME_RANGE_GENERATOR", "MonthlyTimeRangeGenerator")
    if not isinstance(value, str):
        raise ImproperlyConfigured(f"DPA_TIME_RANGE_GENERATOR must be a string, got {value!r}. See {DOCS}.")
    try:
        get_generator(value)
    except PartitionError as exc:
        raise ImproperlyConfigured(f"DPA_TIME_RANGE_GENERATOR: {exc}. See {DOCS}.") from exc
    return value


def min_coverage_days() -> int:
    """``DPA_MIN_COVERAGE_DAYS``: the ``partitioned_audit.W020`` check warns when existing
    partitions cover fewer days ahead than this (default ``7``)."""
    value = _get("DPA_MIN_COVERAGE_DAYS", 7)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ImproperlyConfigured(
            f"DPA_MIN_COVERAGE_DAYS must be an integer >= 0, got {value!r}. See {DOCS}."
        )
    return value


DEFAULT_REQUEST_ID_HEADER = "X-Request-ID"


def request_id_header() -> str:
    """``DPA_REQUEST_ID_HEADER``: the request header whose value ``AuditContextMiddleware``
    records as ``request_id`` (default ``"X-Request-ID"``; a new UUID when a request lacks it)."""
    value = _get("DPA_REQUEST_ID_HEADER", DEFAULT_REQUEST_ID_HEADER)
    if not isinstance(value, str) or not value:
        raise ImproperlyConfigured(f"DPA_REQUEST_ID_HEADER must be a header name, got {value!r}. See {DOCS}.")
    return value


#: What a request has besides the attributes of ``HttpRequest`` itself: the WSGI and ASGI
#: handlers' ``environ`` and ``scope``, and what Django's middleware add.
_ADDED_TO_REQUESTS = frozenset({"environ", "scope", "user", "session", "site", "LANGUAGE_CODE"})

CONTEXT_EXTRA_HINT = (
    "Start a path into the request with one of its attributes (META, GET, headers, path, "
    f"method, user, session, ...), or give a callable taking the request, or its dotted path. See {DOCS}."
)


class UnusableContextExtra(ImproperlyConfigured):
    """An entry of ``DPA_AUDIT_CONTEXT_EXTRA`` that can never give a value (check ``E011``)."""

    def __init__(self, key: str, path: str, reason: str) -> None:
        super().__init__(f"DPA_AUDIT_CONTEXT_EXTRA[{key!r}] = {path!r} can never give a value: {reason}.")
        self.key = key


@functools.cache
def request_attributes() -> frozenset[str]:
    """The first steps a path of ``DPA_AUDIT_CONTEXT_EXTRA`` may take: the data attributes of
    ``HttpRequest`` (its methods give no value) and ``_ADDED_TO_REQUESTS``."""
    from django.http import HttpRequest

    names = {
        name
        for name in dir(HttpRequest())
        if not name.startswith("_")
        and not inspect.isfunction(inspect.getattr_static(HttpRequest, name, None))
    }
    return frozenset(names | _ADDED_TO_REQUESTS)


def audit_context_extra_setting() -> dict[str, Any]:
    """``DPA_AUDIT_CONTEXT_EXTRA`` as given, its shape checked: context key to a dotted path
    (str) or a callable taking the request (default ``{}``). See :func:`audit_context_extra`."""
    extra = _get("DPA_AUDIT_CONTEXT_EXTRA", {}) or {}
    if not isinstance(extra, dict) or not all(isinstance(k, str) for k in extra):
        raise ImproperlyConfigured(
            "DPA_AUDIT_CONTEXT_EXTRA must map context keys to dotted request paths or callables, "
            f"got {extra!r}. See {DOCS}."
        )
    for key, source in extra.items():
        if not (callable(source) or (isinstance(source, str) and source)):
            raise ImproperlyConfigured(
                f"DPA_AUDIT_CONTEXT_EXTRA[{key!r}] must be a dotted path such as 'META.REMOTE_ADDR'"
                f" or a callable taking the request, got {source!r}. See {DOCS}."
            )
    return extra


def context_extra_source(key: str, source: Any) -> Callable[[Any], Any] | tuple[str, ...]:
    """What one entry of ``DPA_AUDIT_CONTEXT_EXTRA`` reads: a callable taking the request, or
    the steps of a path into the request.

    A string whose first step is an attribute of the request (:func:`request_attributes`)
    is a path into it (``"META.REMOTE_ADDR"``, ``"user.pk"``); any other string is the
    dotted path of a callable (``"myapp.audit.tenant_of"``).

    Raises:
        UnusableContextExtra: a string that is neither.
    """
    if callable(source):
        return source  # type: ignore[no-any-return]
    steps = tuple(source.split("."))
    if steps[0] in request_attributes():
        return steps
    not_a_step = f"a request has no attribute {steps[0]!r}, and {source!r}"
    try:
        found = import_string(source)
    except ImportError as exc:
        raise UnusableContextExtra(
            key, source, f"{not_a_step} is not the dotted path of a callable ({exc})"
        ) from exc
    if not callable(found):
        raise UnusableContextExtra(
            key, source, f"{not_a_step} names a {type(found).__name__}, not a callable"
        )
    return found  # type: ignore[no-any-return]


def audit_context_extra() -> dict[str, Callable[[Any], Any] | tuple[str, ...]]:
    """``DPA_AUDIT_CONTEXT_EXTRA``: keys ``AuditContextMiddleware`` adds to each request's
    context, each read by a callable taking the request or a path into it (default ``{}``).

    Raises:
        ImproperlyConfigured: a value of the wrong type, or an entry that can never give a
            value (:class:`UnusableContextExtra`).
    """
    return {key: context_extra_source(key, source) for key, source in audit_context_extra_setting().items()}
