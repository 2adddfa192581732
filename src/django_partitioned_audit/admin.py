"""The read-only audit admin, and ``AuditHistoryAdminMixin`` for a project's own admins.

The active layout's read model is registered on ``admin.site`` when ``django.contrib.admin``
is installed and ``DPA_ADMIN`` is not False. Nobody can add, change or delete an entry
through it, superusers included: the admin offers no such view, and the database refuses
the writes anyway where the application role is not the owner (docs/security.md).

The list never counts the whole trail: the paginator takes the planner's estimate above a
few thousand rows, and the filters and the search go through indexed lookups (the table and
key through the (table, key) B-tree, the time through partition pruning).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import quote, unquote
from django.contrib.admin.views.main import PAGE_VAR
from django.core.exceptions import EmptyResultSet, ImproperlyConfigured, PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html_join

from . import conf
from .errors import RevertError
from .models import (
    _OPERATIONS,
    AdvancedAuditEntry,
    Operation,
    SimpleAuditEntry,
    _candidates,
    _model_for_table,
    _on_view,
    entry_model,
)
from .registry import registration, table_spec

__all__ = ["AuditEntryAdmin", "AuditHistoryAdminMixin", "EstimatedCountPaginator", "register"]

TEMPLATES = "admin/django_partitioned_audit"


class EstimatedCountPaginator(Paginator):
    """Pages of the audit list that stay cheap on a trail of any size.

    The count is exact below ``exact_below`` rows; above, it is the planner's estimate
    (``estimated`` is then True and the admin says "about"), since ``count(*)`` over a
    large trail would read every partition it selects.

    A page's entries are found in two steps: first their keys, with the entries before
    them skipped on the event-id index alone (an index-only scan: no row, no context is
    read for a skipped entry), then the page's own rows by key. Django's one-query
    ``OFFSET`` would build every skipped row, context included. The skipped entries still
    cost one index entry each, so pages are numbered up to ``max_pages`` only; the list
    goes further back by keyset ("Older entries", :class:`OlderThanFilter`).

    With ``keys_only`` (the list's filters name no column of the context), the keys and
    the count are read from the layout's keys view, which has no context join: PostgreSQL
    15 joins every skipped entry to its context row through the read view, even for its
    key alone.
    """

    exact_below = 10_000
    max_pages = 1000
    estimated = False
    keys_only = False

    @property
    def _keys(self) -> Any:
        """The selection, on the keys view where its filters allow."""
        entries: Any = self.object_list
        if self.keys_only:
            return _on_view(entries, entries.model._layout_object().keys_view)
        return entries

    @cached_property
    def count(self) -> int:  # type: ignore[override]
        queryset = self._keys.order_by().values_list("pk", flat=True)
        try:
            sql, params = queryset.query.get_compiler(using=queryset.db).as_sql()
        except EmptyResultSet:
            return 0
        with connections[queryset.db].cursor() as cursor:
            cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)  # Django's own SQL, bound values
            plan = cursor.fetchone()[0]
        if isinstance(plan, str):
            plan = json.loads(plan)
        estimate = int(plan[0]["Plan"]["Plan Rows"])
        if estimate < self.exact_below:
            return queryset.count()  # type: ignore[no-any-return]
        self.estimated = True
        return estimate

    @cached_property
    def num_pages(self) -> int:  # type: ignore[override]
        if self.count == 0 and not self.allow_empty_first_page:
            return 0
        hits = max(1, self.count - self.orphans)
        return min(math.ceil(hits / self.per_page), self.max_pages)

    def page(self, number: Any) -> Any:
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        if top + self.orphans >= self.count and not self.estimated:
            top = self.count  # an estimate may be short of the entries: a page's worth
        entries: Any = self.object_list
        time = entries.model._time
        keyed = list(self._keys.values_list("pk", time)[bottom:top])
        keys = [key for key, _ in keyed]
        # By key from the read view, in no order (a probe of the event-id index per key,
        # whatever the planner believes of the table), then put in the keys' order. The
        # keys passed the filters already; read through the context view (a user's
        # entries), a key would be looked for among all of the user's entries. The keys'
        # times (the partition key) prune the partitions the page is not in and tell the
        # planner how few rows each probe finds: by key alone, it expects up to 50 rows
        # from every partition and starts parallel workers to read 50 (45 ms of execution
        # against 4.5 ms, a light user's page at 1 M rows).
        everything = entries.model._default_manager.db_manager(entries.db).filter(pk__in=keys)
        if keyed:
            everything = everything.filter(**{f"{time}__in": sorted({when for _, when in keyed})})
        found = {entry.pk: entry for entry in everything}
        return self._get_page([found[key] for key in keys if key in found], number, self)


def _shown(value: Any) -> str:
    """A value as the admin shows it: text as is, a decimal with its scale (``19.90``), a
    datetime in the current time zone, bytes as PostgreSQL's hex, the rest as JSON, no value
    as a dash."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if isinstance(value, dt.datetime):
        return (timezone.localtime(value) if timezone.is_aware(value) else value).isoformat(sep=" ")
    if isinstance(value, Decimal | dt.date | dt.time | dt.timedelta | uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=_shown)


def changes_rows(changes: dict[str, tuple[Any, Any]]) -> list[tuple[str, str, str]]:
    return [(field, _shown(old), _shown(new)) for field, (old, new) in changes.items()]


def _render_changes(operation: Operation, changes: dict[str, tuple[Any, Any]]) -> str:
    """The diff table; an UPDATE that changed no field (a ``save()`` of an unchanged
    object, which the simple layout records) says so."""
    rows = changes_rows(changes)
    unchanged = not rows and operation is Operation.UPDATE
    return render_to_string(f"{TEMPLATES}/changes.html", {"rows": rows, "unchanged": unchanged})


def _object_model(entry: Any) -> type | None:
    """The model of the entry's table, where an installed model has it and one column keys it."""
    try:
        model = _model_for_table(*entry._table())
    except LookupError:
        return None
    if entry.object_pk is None or len(table_spec(model).pk) != 1:
        return None  # a composite key's URL is not the stored key's text
    return model


def _object_urls(site: admin.AdminSite, entry: Any) -> tuple[str | None, str | None]:
    """(audit history, change page) of the entry's object on ``site``: the history where the
    model's admin has one, the change page while the object exists (``_dpa_exists``)."""
    model = _object_model(entry)
    if model is None or not site.is_registered(model):
        return None, None
    opts, key = model._meta, quote(entry.object_pk)
    try:
        history = reverse(f"{site.name}:{opts.app_label}_{opts.model_name}_audit_history", args=[key])
    except NoReverseMatch:
        history = None  # its ModelAdmin has no AuditHistoryAdminMixin
    change = None
    if getattr(entry, "_dpa_exists", False):
        change = reverse(f"{site.name}:{opts.app_label}_{opts.model_name}_change", args=[key])
    return history, change


def _mark_existing(site: admin.AdminSite, request: Any, entries: Any) -> None:
    """Set ``_dpa_exists`` on each entry whose object exists and the user's admin queryset
    shows: one query per model of ``entries``."""
    keys: dict[Any, dict[Any, list[Any]]] = {}
    for entry in entries:
        model = _object_model(entry)
        if model is None or not site.is_registered(model):
            continue
        try:
            key = model._meta.pk.to_python(entry.object_pk)
        except ValidationError:
            continue
        keys.setdefault(model, {}).setdefault(key, []).append(entry)
    for model, by_key in keys.items():
        found = set(
            site._registry[model]
            .get_queryset(request)
            .filter(pk__in=list(by_key))
            .values_list("pk", flat=True)
        )
        for key, marked in by_key.items():
            for entry in marked:
                entry._dpa_exists = key in found


def who(context: dict[str, Any] | None) -> str:
    """A one-line summary of an audit context: the user, else the job, else its keys."""
    if not context:
        return "—"
    for key in ("username", "user_id", "job"):
        if context.get(key) not in (None, ""):
            return _shown(context[key])
    return ", ".join(f"{k}={_shown(v)}" for k, v in sorted(context.items()))


class _TextFilter(admin.SimpleListFilter):
    """A list filter with a text box instead of links."""

    template = f"{TEMPLATES}/text_filter.html"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        return [("", "")]  # never shown; the filter is displayed only when it has lookups

    def choices(self, changelist: Any) -> Iterator[dict[str, Any]]:
        others = QueryDict(changelist.get_query_string(remove=[self.parameter_name, "p"])[1:])
        yield {
            "parameter": self.parameter_name,
            "value": self.value() or "",
            "hidden": [(k, v) for k, values in others.lists() for v in values],
            "clear": changelist.get_query_string(remove=[self.parameter_name]),
        }


class UserFilter(_TextFilter):
    """Entries written inside an ``audit_context`` whose ``user_id`` or ``username`` is the
    value typed (jsonb containment on ``audit_context``)."""

    title = "user (id or name)"
    parameter_name = "user"

    def queryset(self, request: Any, queryset: Any) -> Any:
        value = (self.value() or "").strip()
        return _user_entries(queryset, value) if value else queryset


def _by_time(request: Any) -> bool:
    """Whether the list is in the user filter's order, newest time then newest id (see
    ``AuditEntryAdmin.get_ordering()``), rather than newest id."""
    return bool(request.GET.get(UserFilter.parameter_name, "").strip())


def _user_entries(queryset: Any, value: str) -> Any:
    """The entries of ``queryset`` whose context's ``user_id`` or ``username`` is ``value``."""
    by_name: list[dict[str, Any]] = [{"username": value}]
    by_id: list[dict[str, Any]] = [{"user_id": candidate} for candidate in _candidates(value)]
    # Either condition alone is a walk of one index newest first (the user B-tree, the
    # GIN), which their OR is not: one probe of each (newest_first(), so through the
    # context view) says which of them can match at all.
    everything = queryset.model._default_manager.db_manager(queryset.db)
    names, ids = (
        everything.filter_context_any([conditions]).newest_first().exists() for conditions in (by_name, by_id)
    )
    if names and not ids:
        return queryset.filter_context_any([by_name])
    if ids and not names:
        return queryset.filter_context_any([by_id])
    return queryset.filter_context_any([by_name + by_id])


def _cursor(value: str | None) -> int | None:
    """The entry id of ``?before=``, or None where there is none or it is not an id."""
    if value is None or not value.lstrip("-").isdigit():
        return None
    return int(value)


def _time_of(request: Any, queryset: Any, pk: int) -> Any:
    """The time of the entry ``pk`` (None where no entry has that id any more), read once per
    request: one probe of the event-id index in each partition, on the keys view."""
    found: dict[int, Any] = request.__dict__.setdefault("_dpa_cursor_times", {})
    if pk not in found:
        model = queryset.model
        keys = _on_view(
            model._default_manager.db_manager(queryset.db).all(), model._layout_object().keys_view
        )
        found[pk] = keys.filter(pk=pk).values_list(model._time, flat=True).first()
    return found[pk]


def _from(queryset: Any, when: Any, pk: int, *, older: bool) -> Any:
    """The entries of ``queryset`` after the entry (``when``, ``pk``) in the order newest
    time then newest id (``older``), or that entry and those before it. The bound on the
    time alone comes first, so that it is a condition of the user index's walk (which it
    stops, or starts, at ``when``); ties on the time are then told apart by id."""
    time = queryset.model._time
    if older:
        bounded = queryset.filter(**{f"{time}__lte": when})
        return bounded.filter(Q(**{f"{time}__lt": when}) | Q(**{time: when, "pk__lt": pk}))
    bounded = queryset.filter(**{f"{time}__gte": when})
    return bounded.filter(Q(**{f"{time}__gt": when}) | Q(**{time: when, "pk__gte": pk}))


class TableFilter(admin.SimpleListFilter):
    """The registered models, by label: the choices come from the registration, not from a
    ``SELECT DISTINCT`` over the trail."""

    title = "table"
    parameter_name = "model"

    def _models(self) -> dict[str, Any]:
        return {m._meta.label_lower: m for m in registration().enabled}

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        return [
            (label, f"{m._meta.db_table} ({m._meta.label})") for label, m in sorted(self._models().items())
        ]

    def queryset(self, request: Any, queryset: Any) -> Any:
        if self.value() is None:
            return queryset
        model = self._models().get(self.value())  # type: ignore[arg-type]
        return queryset.none() if model is None else queryset.filter_model(model)


class OperationFilter(admin.SimpleListFilter):
    title = "operation"
    parameter_name = "operation"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        return [(code, op.name.capitalize()) for code, op in _OPERATIONS.items()]

    def queryset(self, request: Any, queryset: Any) -> Any:
        code = self.value()
        if code is None:
            return queryset
        if code not in _OPERATIONS:
            return queryset.none()
        return queryset.filter_operation(_OPERATIONS[code])


class OlderThanFilter(admin.SimpleListFilter):
    """The entries after a given one in the list's order (``?before=<id>``): the "Older
    entries" link of the list's last page, a keyset cursor, so the list goes back as far as
    the trail does, each page a bounded walk down an index. Never shown in the sidebar (its
    template renders nothing); "Newest entries" removes it.

    In the list's default order, newest id first, it is the entries of a lower id, down the
    event-id index. Under the user filter the list is newest time first, then newest id,
    and the two orders differ: an entry's time is its transaction's start, its id is taken
    when it is written, so a long transaction has older times and higher ids than one that
    started after it and wrote first. There the cursor is the entry's (time, id), its time
    read by id: the entries of an older time, or of the same time and a lower id, down the
    context table's user index from that time on. An id no entry has any more (its
    partition dropped) has no time: the entries of a lower id then.
    """

    title = "older than"
    parameter_name = "before"
    template = f"{TEMPLATES}/hidden_filter.html"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        return []

    def has_output(self) -> bool:
        return True  # applied even though it lists no choice

    def queryset(self, request: Any, queryset: Any) -> Any:
        value = self.value()
        if value is None:
            return queryset
        try:
            before = int(value)
        except ValueError:
            raise IncorrectLookupParameters(f"before must be an entry id, got {value!r}") from None
        if _by_time(request):
            when = _time_of(request, queryset, before)
            if when is not None:
                return _from(queryset, when, before, older=True)
        return queryset.filter(pk__lt=before)


class AuditEntryAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Read-only list and detail of the audit entries of either layout."""

    list_display = ("entry_id", "when", "table", "operation", "key", "user", "login_role", "object_links")
    list_display_links = ("entry_id",)
    list_filter: tuple[Any, ...] = (TableFilter, OperationFilter, UserFilter)
    search_fields = ("object_pk",)  # shows the search box; get_search_results does the search
    search_help_text = (
        "The key of the changed row, exactly as stored (e.g. 42, or [1, 2] for a composite key)."
    )
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50
    #: The filters no index serves in the list's order (the table, the operation): with one
    #: of them, a page looks at the ``list_scan`` newest entries (before ``?before=``) only.
    scanned_filters: tuple[str, ...] = (TableFilter.parameter_name, OperationFilter.parameter_name)
    list_scan = 100_000
    actions: Any = ()
    detail_fields: tuple[str, ...] = ("entry_id", "when", "table", "operation", "key", "object_links")

    # Django's "Show counts" counts each filter's choices over the whole selection: a scan of
    # the trail per page view. Not offered (Django 5.0+; 4.2 has no facets).
    if hasattr(admin, "ShowFacets"):
        show_facets = admin.ShowFacets.NEVER

    def get_list_filter(self, request: Any) -> Any:
        return (*self.list_filter, (self.model._time, admin.DateFieldListFilter), OlderThanFilter)

    def get_ordering(self, request: Any) -> Any:
        if _by_time(request):
            # A user's entries, newest first in the order of the context table's user
            # index: a page is a walk down that index (see filter_context()).
            return (f"-{self.model._time}", "-pk")
        return ("-pk",)

    def get_fieldsets(self, request: Any, obj: Any = None) -> Any:
        return [
            (None, {"fields": self.detail_fields}),
            ("Who", {"fields": ("login_role", "context")}),
            ("What changed", {"fields": ("changes",)}),
            ("The row after the change (before it, for a delete)", {"fields": ("row",)}),
        ]

    def get_readonly_fields(self, request: Any, obj: Any = None) -> Any:
        return self.detail_fields + ("login_role", "context", "changes", "row")

    def get_search_results(self, request: Any, queryset: Any, search_term: str) -> tuple[Any, bool]:
        key = search_term.strip()
        if not key:
            return queryset, False
        return queryset.filter_key(key, registration().enabled), False

    def get_changelist(self, request: Any, **kwargs: Any) -> Any:
        site = self.admin_site

        model_admin = self

        class AuditChangeList(super().get_changelist(request, **kwargs)):  # type: ignore[misc]
            scan_floor = None
            scan_window = model_admin.list_scan
            scan_of_user = False

            def get_queryset(self, request: Any, *args: Any, **kwargs: Any) -> Any:
                queryset = super().get_queryset(request, *args, **kwargs)
                if not args and not kwargs and any(p in self.params for p in model_admin.scanned_filters):
                    # No index serves these filters in the list's order: they read the
                    # entries in that order and test each one, so they look at the
                    # list_scan entries after the cursor only ("Older entries" goes on).
                    before = _cursor(self.params.get(OlderThanFilter.parameter_name))
                    if _by_time(request):
                        self._window_of_user(request, before)
                        if self.scan_floor is not None:
                            queryset = _from(queryset, self._floor_time, self.scan_floor, older=False)
                    else:
                        # The bound reads the keys view: a walk of the event-id index alone.
                        start = _on_view(self.root_queryset, self.model._layout_object().keys_view)
                        if before is not None:
                            start = start.filter(pk__lt=before)
                        floor = list(
                            start.order_by("-pk").values_list("pk", flat=True)[self.scan_window - 1 :][:1]
                        )
                        if floor:
                            self.scan_floor = floor[0]
                            queryset = queryset.filter(pk__gte=self.scan_floor)
                    if self.scan_floor is not None:
                        request._dpa_scanned = True  # see get_paginator()
                # Only the user filter reads the context: without it, the paginator reads
                # the keys from the keys view.
                request._dpa_keys_only = UserFilter.parameter_name not in self.params
                return queryset

            def _window_of_user(self, request: Any, before: int | None) -> None:
                """Under the user filter, the window is list_scan of the user's entries in
                the list's order, from the cursor on: its floor is read down the user
                index (a walk of list_scan entries), and a page's walk stops at its time."""
                start = _user_entries(self.root_queryset, self.params[UserFilter.parameter_name].strip())
                if before is not None:
                    when = _time_of(request, start, before)
                    start = (
                        start.filter(pk__lt=before)
                        if when is None
                        else _from(start, when, before, older=True)
                    )
                time = self.model._time
                floor = list(start.newest_first().values_list("pk", time)[self.scan_window - 1 :][:1])
                if floor:
                    self.scan_floor, self._floor_time = floor[0]
                    self.scan_of_user = True

            def get_results(self, request: Any) -> None:
                super().get_results(request)
                if isinstance(self.result_list, QuerySet):
                    # Django takes the whole selection when its count fits on one page; an
                    # estimated count may be short of the truth: never more than a page.
                    shown = self.list_max_show_all if self.show_all else self.list_per_page
                    self.result_list = self.result_list[:shown]
                _mark_existing(site, request, self.result_list)
                paginator = self.paginator
                self.count_estimated = getattr(paginator, "estimated", False)
                # Keyset links: older than this page's last entry, where the numbered pages
                # end; back to the newest entries, once the list starts below them.
                self.older_url = self.newest_url = None
                # The cursor is the last entry of a page in the list's own order; sorted by a
                # column (?o=), the entries after that one in the sort are not the older
                # ones, so the numbered pages are all there is.
                # (Django may repeat the primary key at the end, to make the order total.)
                ordering = list(dict.fromkeys(self.get_ordering(request, self.root_queryset.order_by())))
                own_order = ordering == list(model_admin.get_ordering(request))
                last_page = self.page_num >= paginator.num_pages
                beyond = paginator.estimated or paginator.count > paginator.num_pages * paginator.per_page
                short = len(self.result_list) < self.list_per_page  # an estimate may promise more pages
                if own_order and self.scan_floor is not None and (last_page or short):
                    # On to the next window; but after a full page, from its last entry: the
                    # window's count is the planner's, which may be short of its entries.
                    cursor = self.scan_floor if short else list(self.result_list)[-1].pk
                    self.older_url = self.get_query_string(
                        {OlderThanFilter.parameter_name: cursor}, [PAGE_VAR]
                    )
                elif own_order and self.multi_page and last_page and beyond and self.result_list:
                    last = list(self.result_list)[-1]
                    self.older_url = self.get_query_string(
                        {OlderThanFilter.parameter_name: last.pk}, [PAGE_VAR]
                    )
                if OlderThanFilter.parameter_name in self.params:
                    self.newest_url = self.get_query_string({}, [OlderThanFilter.parameter_name, PAGE_VAR])

        return AuditChangeList

    def get_paginator(self, request: Any, queryset: Any, per_page: int, *args: Any, **kwargs: Any) -> Any:
        paginator = super().get_paginator(request, queryset, per_page, *args, **kwargs)
        if isinstance(paginator, EstimatedCountPaginator):
            paginator.keys_only = getattr(request, "_dpa_keys_only", False)
        if getattr(request, "_dpa_scanned", False) and isinstance(paginator, EstimatedCountPaginator):
            # A scanned filter's count is the planner's: an exact one could be read through
            # another index than the window's (the table's key index, over the whole trail).
            paginator.exact_below = 0
        return paginator

    def get_object(self, request: Any, object_id: str, from_field: Any = None) -> Any:
        entry = super().get_object(request, object_id, from_field)
        if entry is not None:
            _mark_existing(self.admin_site, request, [entry])
        return entry

    def render_change_form(self, request: Any, context: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        # Titled with what the entry records ("UPDATE of shop.Order 1, 2026-12-06 09:24:20"),
        # not with the read model's name.
        if kwargs.get("obj") is not None:
            context.update(title=str(kwargs["obj"]), subtitle=None)
        return super().render_change_form(request, context, *args, **kwargs)

    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    @admin.display(description="id", ordering="pk")
    def entry_id(self, entry: Any) -> Any:
        return entry.pk

    @admin.display(description="time")
    def when(self, entry: Any) -> str:
        return timezone.localtime(getattr(entry, entry._time)).isoformat(sep=" ", timespec="microseconds")

    @admin.display(description="table")
    def table(self, entry: Any) -> str:
        return ".".join(entry._table())

    @admin.display(description="operation")
    def operation(self, entry: Any) -> str:
        return entry.get_operation().name  # type: ignore[no-any-return]

    @admin.display(description="key")
    def key(self, entry: Any) -> str:
        return entry.object_pk or "—"

    @admin.display(description="user")
    def user(self, entry: Any) -> str:
        return who(entry.audit_context)

    @admin.display(description="database role")
    def login_role(self, entry: Any) -> str:
        """The role that logged in (``session_user``), recorded by the capture: unlike the
        context, which the writer declares, the application cannot choose it."""
        return entry.session_user_name or "—"

    @admin.display(description="context (declared by the writer)")
    def context(self, entry: Any) -> str:
        rows = [(k, _shown(v)) for k, v in sorted((entry.audit_context or {}).items())]
        return render_to_string(f"{TEMPLATES}/context.html", {"rows": rows})

    @admin.display(description="object")
    def object_links(self, entry: Any) -> str:
        history, change = _object_urls(self.admin_site, entry)
        links = [(url, label) for url, label in ((history, "audit history"), (change, "change")) if url]
        if not links:
            return "—"
        return format_html_join(" · ", '<a href="{}">{}</a>', links)

    @admin.display(description="changes")
    def changes(self, entry: Any) -> str:
        try:  # typed by the model's fields, as the object's history shows them
            changes = entry.version().changes
        except LookupError:  # no installed model has the table: its JSON values
            changes = entry.changes()
        return _render_changes(entry.get_operation(), changes)

    @admin.display(description="row")
    def row(self, entry: Any) -> str:
        rows = [(k, _shown(v)) for k, v in entry.get_row_data().items()]
        return render_to_string(f"{TEMPLATES}/context.html", {"rows": rows})


class SimpleAuditEntryAdmin(AuditEntryAdmin):
    pass


class AdvancedAuditEntryAdmin(AuditEntryAdmin):
    detail_fields = (
        *AuditEntryAdmin.detail_fields,
        "application_name",
        "client_addr",
        "transaction_id",
        "query",
    )

    @admin.display(description="query")
    def query(self, entry: AdvancedAuditEntry) -> str:
        return entry.get_client_query() or "—"


#: 1.0.4's name for the audit admin.
TriggerAuditEntryAdmin = SimpleAuditEntryAdmin

_ADMINS: dict[type, type[AuditEntryAdmin]] = {
    SimpleAuditEntry: SimpleAuditEntryAdmin,
    AdvancedAuditEntry: AdvancedAuditEntryAdmin,
}


class AuditHistoryAdminMixin:
    """Adds an "Audit history" button to each change page of a ``ModelAdmin``, opening the
    object's versions, oldest first, with a field-by-field diff, ``audit_history_per_page``
    at a time (keyset pages over the (table, key) index), and a "Deleted objects" button to
    its list.

    Seeing it takes the view (or change) permission on the object and the view permission
    on the active layout's audit entry model. Each version offers "Revert to this version"
    to users with the change permission on the object, and "Restore" once the object is
    deleted to users with the add permission: a confirmation page shows what would be
    written, a POST writes it (see docs/undo.md).

    ``audit_history_in_history_button = True`` shows the audit history in Django's own
    "History" button instead of a button beside it.
    """

    change_form_template = f"{TEMPLATES}/change_form_with_history.html"
    change_list_template = f"{TEMPLATES}/change_list_with_deleted.html"
    audit_history_template = f"{TEMPLATES}/audit_history.html"
    audit_revert_template = f"{TEMPLATES}/audit_revert.html"
    audit_deleted_template = f"{TEMPLATES}/audit_deleted.html"
    audit_history_per_page = 50
    audit_history_in_history_button = False
    audit_deleted_per_page = 50
    #: The most keys of the trail one page of "Deleted objects" reads (see ``deleted()``).
    audit_deleted_scan = 1000

    def get_urls(self) -> list[URLPattern]:
        opts = self.model._meta  # type: ignore[attr-defined]
        site = self.admin_site  # type: ignore[attr-defined]
        prefix = f"{opts.app_label}_{opts.model_name}"
        # Before the ModelAdmin's own patterns: the last of them catches every "<id>/...".
        return [
            path("audit-deleted/", site.admin_view(self.audit_deleted_view), name=f"{prefix}_audit_deleted"),
            path(
                "<path:object_id>/audit-history/",
                site.admin_view(self.audit_history_view),
                name=f"{prefix}_audit_history",
            ),
            path(
                "<path:object_id>/audit-revert/<int:event_id>/",
                site.admin_view(self.audit_revert_view),
                name=f"{prefix}_audit_revert",
            ),
            *super().get_urls(),  # type: ignore[misc]
        ]

    def history_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> HttpResponse:
        """Django's "History": the audit history when ``audit_history_in_history_button``."""
        if self.audit_history_in_history_button:
            return self.audit_history_view(request, object_id)
        return super().history_view(request, object_id, extra_context)  # type: ignore[misc,no-any-return]

    def _may_read_trail(self, request: HttpRequest) -> bool:
        opts = entry_model()._meta
        return bool(request.user.has_perm(f"{opts.app_label}.view_{opts.model_name}"))

    def _revert_url(self, request: HttpRequest, obj: Any, version: Any, object_id: str) -> str | None:
        """The confirmation page of a revert to ``version``, where the user may make it: the
        change permission on the object, the add permission once it is deleted."""
        model_admin: Any = self
        entry = version.entry
        if type(entry) is not entry_model() or entry.is_truncate() or len(table_spec(self.model).pk) != 1:  # type: ignore[attr-defined]
            return None  # a version kept in the other layout's table, or no row to write
        allowed = (
            model_admin.has_change_permission(request, obj)
            if obj is not None
            else model_admin.has_add_permission(request)
        )
        if not allowed:
            return None
        opts = model_admin.opts
        name = f"{model_admin.admin_site.name}:{opts.app_label}_{opts.model_name}_audit_revert"
        return reverse(name, args=[quote(object_id), entry.pk])

    def audit_history_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The object's versions; for a deleted object, those the trail keeps (then they are
        needed most), read by key. Only an object with no row and no history redirects, as
        the admin does for a missing object."""
        model_admin: Any = self
        entries = entry_model()
        opts = model_admin.opts
        obj = model_admin.get_object(request, unquote(object_id))
        entries_opts = entries._meta
        if not model_admin.has_view_or_change_permission(request, obj) or not request.user.has_perm(
            f"{entries_opts.app_label}.view_{entries_opts.model_name}"
        ):
            raise PermissionDenied
        if obj is not None:
            key, using = obj.pk, obj._state.db
        else:
            try:
                key = opts.pk.to_python(unquote(object_id))
            except ValidationError:
                key = None
            using = model_admin.get_queryset(request).db
        after = request.GET.get("after") or None
        try:  # both layouts' tables, where a switch of layout left the other one
            page = entries.objects.using(using).history(
                self.model,
                key,
                after=after,
                limit=self.audit_history_per_page,
                all_layouts=True,  # type: ignore[attr-defined]
            )
        except ValueError as exc:
            raise Http404("No such page of the audit history.") from exc
        if obj is None and (key is None or (not page.versions and after is None)):
            return model_admin._get_obj_does_not_exist_redirect(request, opts, object_id)  # type: ignore[no-any-return]
        site = model_admin.admin_site
        versions = [
            {
                "version": v,
                "who": who(v.context),
                "role": v.session_user or "—",
                "context": sorted((v.context or {}).items()),
                "rows": changes_rows(v.changes),
                "unchanged": not v.changes and v.operation is Operation.UPDATE,
                "url": _entry_url(site, v.entry),
                "revert_url": self._revert_url(request, obj, v, unquote(object_id)),
            }
            for v in page.versions
        ]
        shown = obj if obj is not None else f"{opts.verbose_name} {unquote(object_id)} (deleted)"
        context = {
            **model_admin.admin_site.each_context(request),
            "title": f"Audit history: {shown}",
            "subtitle": None,
            "opts": opts,
            "object": obj,
            "object_id": unquote(object_id),
            "versions": versions,
            "next_after": page.next_after,
            "paged": after is not None,
        }
        request.current_app = model_admin.admin_site.name
        return TemplateResponse(request, self.audit_history_template, context)

    def audit_revert_view(self, request: HttpRequest, object_id: str, event_id: int) -> HttpResponse:
        """GET: what a revert of the object to the version of ``event_id`` would write (or
        why it is refused); POST: writes it, then goes to the object's change page.

        Takes the view permission on the audit entries, and the change permission on the
        object, or the add permission when it no longer exists (a restore).
        """
        from .revert import plan_revert, revert

        model_admin: Any = self
        opts = model_admin.opts
        if not self._may_read_trail(request):
            raise PermissionDenied
        try:
            key = opts.pk.to_python(unquote(object_id))
        except ValidationError as exc:
            raise Http404("No such object.") from exc
        using = model_admin.get_queryset(request).db
        entry = entry_model().objects.using(using).filter(pk=event_id).first()
        if entry is None:
            raise Http404("No such audit entry.")
        obj = model_admin.get_object(request, unquote(object_id))
        error = None
        try:
            plan: Any = plan_revert(self.model, key, entry, using=using)  # type: ignore[attr-defined]
        except RevertError as exc:
            plan, error = None, str(exc)
        restores = obj is None and (plan is None or plan.restores)
        if restores:
            allowed = model_admin.has_add_permission(request)
        else:
            allowed = obj is not None and model_admin.has_change_permission(request, obj)
        if not allowed:
            raise PermissionDenied
        when = timezone.localtime(getattr(entry, entry._time)).strftime("%Y-%m-%d %H:%M:%S")
        if request.method == "POST" and plan is not None:
            try:
                instance = revert(self.model, key, entry, using=using)  # type: ignore[attr-defined]
            except RevertError as exc:
                error = str(exc)
            else:
                if restores:
                    model_admin.log_addition(request, instance, f"Restored from audit event {entry.pk}.")
                    done = f"The {opts.verbose_name} “{instance}” was restored as it was on {when}."
                else:
                    model_admin.log_change(request, instance, f"Reverted to audit event {entry.pk}.")
                    done = f"The {opts.verbose_name} “{instance}” was reverted to its version of {when}."
                messages.success(request, done)
                site = model_admin.admin_site.name
                return HttpResponseRedirect(
                    reverse(f"{site}:{opts.app_label}_{opts.model_name}_change", args=[quote(instance.pk)])
                )
        shown = obj if obj is not None else f"{opts.verbose_name} {unquote(object_id)} (deleted)"
        verb = "Restore" if restores else "Revert"
        context = {
            **model_admin.admin_site.each_context(request),
            "title": f"{verb} {shown} to its version of {when}",
            "subtitle": None,
            "opts": opts,
            "object": obj,
            "object_id": unquote(object_id),
            "entry": entry,
            "entry_url": _entry_url(model_admin.admin_site, entry),
            "restores": restores,
            "verb": verb,
            "error": error,
            "rows": changes_rows(plan.changes) if plan is not None else [],
            "kept": plan.kept if plan is not None else (),
        }
        request.current_app = model_admin.admin_site.name
        return TemplateResponse(request, self.audit_revert_template, context)

    def audit_deleted_view(self, request: HttpRequest) -> HttpResponse:
        """The objects of the model whose last version is a DELETE, by key, with a "Restore"
        for users with the add permission; pages of ``audit_deleted_per_page``, each reading
        at most ``audit_deleted_scan`` keys of the trail (see ``deleted()``)."""
        model_admin: Any = self
        opts = model_admin.opts
        if not model_admin.has_view_or_change_permission(request) or not self._may_read_trail(request):
            raise PermissionDenied
        if len(table_spec(self.model).pk) != 1:  # type: ignore[attr-defined]
            raise Http404("A model with a composite primary key has no list of deleted objects.")
        after = request.GET.get("after") or None
        using = model_admin.get_queryset(request).db
        page = (
            entry_model()
            .objects.using(using)
            .deleted(
                self.model,  # type: ignore[attr-defined]
                after=after,
                limit=self.audit_deleted_per_page,
                scan=self.audit_deleted_scan,
            )
        )
        site = model_admin.admin_site
        may_add = model_admin.has_add_permission(request)
        # A few of the last values, in the model's order: enough to tell the objects apart.
        shown_fields = [
            f
            for f in self.model._meta.concrete_fields  # type: ignore[attr-defined]
            if not f.primary_key and all(f.name in v.changes for v in page)
        ][:4]
        rows = []
        for version in page:
            key = version.entry.object_pk
            rows.append(
                {
                    "key": key,
                    "version": version,
                    "who": who(version.context),
                    "role": version.session_user or "—",
                    "summary": ", ".join(
                        f"{f.name}={_shown(version.changes[f.name][0])}" for f in shown_fields
                    ),
                    "history_url": reverse(
                        f"{site.name}:{opts.app_label}_{opts.model_name}_audit_history", args=[quote(key)]
                    ),
                    "restore_url": self._revert_url(request, None, version, key) if may_add else None,
                }
            )
        context = {
            **site.each_context(request),
            "title": f"Deleted {opts.verbose_name_plural}",
            "subtitle": None,
            "opts": opts,
            "rows": rows,
            "next_after": page.next_after,
            "paged": after is not None,
            "scan": self.audit_deleted_scan,
        }
        request.current_app = site.name
        return TemplateResponse(request, self.audit_deleted_template, context)


def _entry_url(site: admin.AdminSite, entry: Any) -> str | None:
    """The entry's detail page, where its model is registered on ``site``."""
    if not site.is_registered(type(entry)):
        return None
    opts = entry._meta
    return reverse(f"{site.name}:{opts.app_label}_{opts.model_name}_change", args=[entry.pk])


def register(site: admin.AdminSite | None = None) -> type | None:
    """Register the active layout's read model on ``site`` (``admin.site`` by default) unless
    ``DPA_ADMIN`` is False or it is registered already; returns the model registered."""
    site = site or admin.site
    if not conf.admin_enabled():
        return None
    model = entry_model()
    if site.is_registered(model):
        return None
    site.register(model, _ADMINS[model])
    return model


def register_default() -> None:
    """Register on ``admin.site`` unless the project registered the model itself.

    When ``django.contrib.admin`` comes first in ``INSTALLED_APPS`` (as ``startproject``
    puts it), its autodiscovery imports every ``admin`` module before this app is ready:
    the registration then waits for this app's ``ready()``, so a project's own
    ``admin.site.register(SimpleAuditEntry, ...)``, as 1.0.4 projects have, wins. Otherwise
    it happens here, when autodiscovery imports this module.
    """
    from django.apps import apps

    if not apps.is_installed("django.contrib.admin"):
        return  # the mixin imported from a project without the admin app
    try:
        register()
    except ImproperlyConfigured:
        pass  # a wrong DPA_* setting: the system check partitioned_audit.E010 says which


def _app_ready() -> bool:
    from django.apps import apps

    return bool(getattr(apps.get_app_config("django_partitioned_audit"), "is_ready", False))


if _app_ready():
    register_default()
