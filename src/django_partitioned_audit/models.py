"""Read models over the audit views, and the 1.0.4 query API."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import enum
import json
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Self, overload

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.db.models.sql.datastructures import BaseTable

from partitioned_audit.layouts import ADVANCED, SIMPLE, Layout

from . import conf
from .errors import RevertError
from .registry import split_table

__all__ = [
    "AdvancedAuditEntry",
    "HistoryPage",
    "Operation",
    "RevertError",
    "SimpleAuditEntry",
    "Version",
    "entry_model",
    "read_models",
]


class Operation(enum.Enum):
    INSERT = 1
    UPDATE = 2
    DELETE = 3
    TRUNCATE = 4


_CODES = {Operation.INSERT: "I", Operation.UPDATE: "U", Operation.DELETE: "D", Operation.TRUNCATE: "T"}


def _json_value(key: str, value: Any) -> Any:
    """``value`` as the JSON value to_jsonb() stores for it, or TypeError if none is exact."""
    if isinstance(value, models.Model):
        return _json_value(key, value.pk)
    if isinstance(value, Decimal):
        if value == value.to_integral_value():
            return int(value)
        if Decimal(repr(float(value))) == value:
            return float(value)  # jsonb compares numbers by value: 10.5 matches 10.50
        raise TypeError(f"filter_payload({key}=...): {value!r} has no exact float; pass it as a string")
    if isinstance(value, dt.date | dt.time):
        return _iso(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bool | int | float | str | dict | list) or value is None:
        return value
    raise TypeError(
        f"filter_payload({key}=...) cannot compare a {type(value).__name__}; pass a JSON value "
        "(str, number, bool, None, dict, list), a Decimal, a date or time, a UUID or a model instance"
    )


#: The alias under which ``filter_context_any()`` names a key's text.
_KEY_ALIAS = "_dpa_context_"


def _candidates(value: Any) -> list[Any]:
    """The JSON values that mean ``value``: typed (2.0 rows) and as text (1.0.4 hstore rows)."""
    found = [value]
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        if isinstance(parsed, bool | int | float) or parsed is None:
            found.append(parsed)
    elif isinstance(value, bool):
        found += ["true" if value else "false", "t" if value else "f"]
    elif isinstance(value, int | float):
        found.append(str(value))
    return found


def _payload_q(column: str, key: str, value: Any) -> Q:
    """Payloads whose ``key`` holds ``value``, by containment (``@>``), which the opt-in GIN
    index serves; a model instance matches its key under ``key`` and ``key_id``."""
    keys = [key, f"{key}_id"] if isinstance(value, models.Model) and not key.endswith("_id") else [key]
    q = Q()
    for candidate in _candidates(_json_value(key, value)):
        for name in keys:
            if isinstance(candidate, dict | list):  # containment would also match a part of it
                q |= Q(**{f"{column}__{name}": candidate})
            else:
                q |= Q(**{f"{column}__contains": {name: candidate}})
    return q


def _table_q(model_class: type[models.Model], layout: Layout) -> Q:
    """Entries of ``model_class``'s table, in its schema: a same-named table elsewhere is
    another table. 1.0.4's simple rows carry no schema (``Layout.schemaless_rows``); they
    were all in ``public``."""
    schema, table = split_table(model_class._meta.db_table)
    schema_field, table_field = layout.schema_column, layout.table_column
    in_schema = Q(**{schema_field: schema})
    if schema == "public" and layout.schemaless_rows:
        in_schema |= Q(**{f"{schema_field}__isnull": True})
    return Q(**{table_field: table}) & in_schema


def _model_for_table(schema: str, table: str) -> type[models.Model]:
    from django.apps import apps

    for model in apps.get_models(include_auto_created=True):
        if split_table(model._meta.db_table) == (schema, table):
            return model
    raise LookupError(f"no installed model has the table {schema}.{table}; pass the model to get_instance()")


class _ModelName:
    """A name of the queryset's read model (see :class:`_Snapshot`): the queryset's
    ``_time`` is its model's ``_time``."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, queryset: Any, owner: type | None = None) -> str:
        return str(getattr(queryset.model, self.name))


class _Snapshot:
    """What both read models share: the names of their layout's read view, the tests of
    the operation, ``get_instance()``.

    A read model names its layout once, as ``class Entry(_Snapshot, models.Model,
    layout=SIMPLE)``: each name of a view or a column below is taken from that
    :class:`partitioned_audit.layouts.Layout`, so the engine's layout is the one place
    that names them (the model's fields bear the same names; tests/test_read_models.py
    checks both against the view in the database).
    """

    #: The layout's name: "simple" or "advanced".
    _layout: str
    #: The read view and its key column.
    _view: str
    _key: str
    #: The partition key: with it the entry is read from its own partition only.
    _time: str
    _statement_time: str
    _operation: str
    _txid: str
    _schema_field: str
    _table_field: str

    def __init_subclass__(cls, layout: Layout | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if layout is not None:
            cls._layout = layout.name
            cls._row_sql = layout.row_after
            cls._old_row_sql = layout.row_before
            cls._view = layout.view
            cls._key = layout.view_key_column
            cls._time = layout.time_column
            cls._statement_time = layout.statement_time_column
            cls._operation = layout.operation_column
            cls._txid = layout.txid_column
            cls._schema_field = layout.schema_column
            cls._table_field = layout.table_column

    @classmethod
    def _layout_object(cls) -> Layout:
        """The engine's :class:`partitioned_audit.layouts.Layout` of this read model."""
        from partitioned_audit.layouts import get_layout

        return get_layout(cls._layout)

    #: SQL for the row after the change, from the view aliased ``v`` (``Layout.row_after``).
    _row_sql: str
    #: SQL for the row before an UPDATE, where the entry holds it, else NULL: the version
    #: before holds it (``Layout.row_before``).
    _old_row_sql: str

    def _table(self) -> tuple[str, str]:
        raise NotImplementedError

    def _is(self, operation: Operation) -> bool:
        return bool(getattr(self, self._operation) == _CODES[operation])

    def is_insert(self) -> bool:
        return self._is(Operation.INSERT)

    def is_update(self) -> bool:
        return self._is(Operation.UPDATE)

    def is_delete(self) -> bool:
        return self._is(Operation.DELETE)

    def is_truncate(self) -> bool:
        return self._is(Operation.TRUNCATE)

    def merge_key(self) -> tuple[dt.datetime, dt.datetime]:
        """Where the entry falls among the entries of another table: its transaction's start,
        then its statement's (a transaction's entries share the first)."""
        return getattr(self, self._time), getattr(self, self._statement_time)

    def get_operation(self) -> Operation:
        return _OPERATIONS[getattr(self, self._operation)]

    def __str__(self) -> str:
        """What happened to which row, and when: ``UPDATE of shop.Order 1, 2026-12-06 09:24:20``
        (the model's label where an installed model has the table, the time in the current
        time zone)."""
        from django.utils import timezone

        schema, table = self._table()
        try:
            what = _model_for_table(schema, table)._meta.label
        except LookupError:
            what = f"{schema}.{table}"
        key = "" if self.object_pk is None else f" {self.object_pk}"  # type: ignore[attr-defined]
        when = getattr(self, self._time)
        if timezone.is_aware(when):
            when = timezone.localtime(when)
        return f"{self.get_operation().name} of {what}{key}, {when:%Y-%m-%d %H:%M:%S}"

    def needs_previous(self) -> bool:
        raise NotImplementedError

    def previous(self) -> Any:
        raise NotImplementedError

    def changes_since(self, previous: Any) -> dict[str, tuple[Any, Any]]:
        raise NotImplementedError

    def changes(self) -> dict[str, tuple[Any, Any]]:
        """Column -> (old, new) of this change, reading the version before when the layout
        does not keep the old values on the entry (one indexed query)."""
        return self.changes_since(self.previous() if self.needs_previous() else None)

    def get_instance(self, model: type[models.Model] | None = None) -> models.Model | None:
        """The row after the change (before it, for a delete) as an instance of its model,
        with every value typed by the model's fields: exact decimals, aware datetimes,
        bytes, arrays, UUIDs.

        PostgreSQL turns the stored JSON back into the table's row type, so nothing is lost
        on the way through Python floats or strings. Excluded and masked columns come back
        as ``None``. A virtual ``GeneratedField`` (``db_persist=False``), which the trail
        does not record (see docs/reading.md), is left unloaded, as Django leaves a deferred
        field: never set from the trail. The instance is a snapshot: do not ``save()`` it.

        Args:
            model: the model of the audited table; found from the table name when omitted.

        Returns:
            None for a TRUNCATE entry, which has no row.
        """
        from django.db import connections

        from partitioned_audit.sql import SQL, ident, render

        from .registry import table_spec

        if self.is_truncate():
            return None
        schema, table = self._table()
        model = model or _model_for_table(schema, table)
        masked = list(table_spec(model).masked)
        if getattr(self, "archived", False):
            # Read from the archive, not in the view: PostgreSQL types the entry's own JSON.
            statement = SQL("SELECT (jsonb_populate_record(NULL::{table}, %s::jsonb - %s::text[])).*").format(
                table=ident(schema, table)
            )
            params = [json.dumps(self.get_row_data()), masked]
        else:
            statement = SQL(
                "SELECT (jsonb_populate_record(NULL::{table}, ({row}) - %s::text[])).*"
                " FROM {view} AS v WHERE v.{key} = %s AND v.{time} = %s"
            ).format(
                table=ident(schema, table),
                row=SQL(self._row_sql),
                view=ident(conf.audit_schema(), self._view),
                key=ident(self._key),
                time=ident(self._time),
            )
            params = [masked, self.pk, getattr(self, self._time)]  # type: ignore[attr-defined]
        using = self._state.db or "default"  # type: ignore[attr-defined]
        connection = connections[using]
        with connection.cursor() as cursor:
            cursor.execute(render(statement, cursor), params)
            row = cursor.fetchone()
            columns = [c[0] for c in cursor.description or ()]
        if row is None:
            return None
        # Model.from_db() takes the values in the order of the model's concrete fields.
        typed = _converted(model, connection, dict(zip(columns, row, strict=True)))
        fields = [f for f in model._meta.concrete_fields if f.column in typed]
        return model.from_db(using, [f.attname for f in fields], [typed[f.column] for f in fields])

    def version(self, model: type[models.Model] | None = None) -> Version:
        """This entry as a :class:`Version` of its row: its changes typed as in ``history()``
        (one query, two for an UPDATE of the simple layout, which reads the version before).

        Args:
            model: the model of the audited table; found from the table name when omitted.
        """
        schema, table = self._table()
        model = model or _model_for_table(schema, table)
        return _versions(model, [self], self.previous() if self.needs_previous() else None)[0]


def _converted(model: type[models.Model], connection: Any, found: dict[str, Any]) -> dict[str, Any]:
    """Column -> value of a row read from the database, as a queryset types it: each
    field's converters (``from_db_value``), for the columns of ``found`` the model has.
    A virtual generated column is left out: the trail has no value of it (see :func:`_virtual`)."""
    typed = {}
    for field in model._meta.concrete_fields:
        if field.column not in found or _virtual(field):
            continue
        value = found[field.column]
        expression = field.get_col(model._meta.db_table)
        converters = connection.ops.get_db_converters(expression) + field.get_db_converters(connection)
        for converter in converters:
            value = converter(value, expression, connection)
        typed[field.column] = value
    return typed


_Typed = dict[tuple[type, Any], tuple[dict[str, Any], dict[str, Any]]]


def _typed_rows(model: type[models.Model], entries: list[Any]) -> _Typed:
    """(read model, entry pk) -> (the row before, the row after) of each entry, typed by
    ``model``'s fields as ``get_instance()`` types a row: PostgreSQL turns the JSON back
    into the table's row type (exact numerics, timestamps), then each field's converters.
    One query per read model. The row before is empty where the entry does not hold it.

    A value that no longer fits its column (its type changed since) leaves the rows of
    that read model untyped (empty), rather than failing the whole history.
    """
    from django.db import DatabaseError, connections, transaction

    from partitioned_audit.sql import SQL, Composable, ident, render

    from .registry import table_spec

    typed: _Typed = {}
    by_model: dict[Any, list[Any]] = {}
    for entry in entries:
        if not entry.is_truncate():
            by_model.setdefault(type(entry), []).append(entry)
    schema, table = split_table(model._meta.db_table)
    masked = list(table_spec(model).masked)
    for read_model, found in by_model.items():
        keys = {e.object_pk for e in found}
        source: Composable
        if read_model is entry_model() and len(keys) == 1:
            # One object's versions (history(), version()): read through the object
            # function, whose plan the connection keeps, rather than planning the view's
            # join over every partition of both tables once more.
            source = SQL("{}(%s, %s, %s)").format(
                ident(conf.audit_schema(), read_model._layout_object().object_function)
            )
            source_params = [table, schema, keys.pop()]
        else:
            source, source_params = ident(conf.audit_schema(), read_model._view), []
        statement = SQL(
            "SELECT v.{key}, b.*, a.* FROM {source} AS v"
            " CROSS JOIN LATERAL jsonb_populate_record(NULL::{table}, coalesce({old}, '{{}}') - %s::text[]) AS b"
            " CROSS JOIN LATERAL jsonb_populate_record(NULL::{table}, ({row}) - %s::text[]) AS a"
            " WHERE v.{key} = ANY(%s) AND v.{time} = ANY(%s)"
        ).format(
            key=ident(read_model._key),
            table=ident(schema, table),
            old=SQL(read_model._old_row_sql),
            row=SQL(read_model._row_sql),
            source=source,
            time=ident(read_model._time),
        )
        using = found[0]._state.db or "default"
        connection = connections[using]
        params = [
            *source_params,
            masked,
            masked,
            [e.pk for e in found],
            list({getattr(e, e._time) for e in found}),
        ]
        # A savepoint keeps the caller's transaction usable if the query fails; outside a
        # transaction there is nothing to keep, and BEGIN and COMMIT would cost two round trips.
        atomic = transaction.atomic(using) if connection.in_atomic_block else contextlib.nullcontext()
        try:
            with atomic, connection.cursor() as cursor:
                cursor.execute(render(statement, cursor), params)
                rows = cursor.fetchall()
                columns = [c[0] for c in cursor.description or ()][1:]
        except DatabaseError:
            continue
        half = len(columns) // 2
        for pk, *values in rows:
            before = dict(zip(columns[:half], values[:half], strict=True))
            after = dict(zip(columns[half:], values[half:], strict=True))
            typed[read_model, pk] = (
                _converted(model, connection, before),
                _converted(model, connection, after),
            )
    return typed


def _virtual(field: models.Field[Any, Any]) -> bool:
    """Whether ``field`` is a virtual generated column (``GeneratedField(db_persist=False)``,
    Django 5.0+), which a trigger reads as NULL and the trail leaves out."""
    return bool(getattr(field, "generated", False)) and not getattr(field, "db_persist", True)


def _pk_text(value: Any) -> str:
    """A key as the capture stores it in ``object_pk``: ``j ->> 'pk'`` for one column, the
    text of a jsonb array for several (non-ASCII kept as is, ", " between elements)."""
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_json_text(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.date | dt.time):
        return _iso(value)
    return str(value)


def _iso(value: dt.date | dt.time) -> str:
    """ISO 8601 as PostgreSQL writes it into JSON: trailing zeros of a fraction dropped."""
    return re.sub(
        r"\.(\d*?)0+(?=[^\d]|$)", lambda m: f".{m.group(1)}" if m.group(1) else "", value.isoformat()
    )


def _json_text(value: Any) -> str:
    """``value`` as jsonb prints it: exact decimals, dates and times in ISO 8601 (with a
    ``T``), UUIDs and other values as strings, non-ASCII text as is."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.date | dt.time):
        value = _iso(value)
    elif not (isinstance(value, bool | int | float | str) or value is None):
        value = str(value)
    return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class Version:
    """One version of an object in its history (see ``history()``)."""

    entry: Any  # the read model instance
    operation: Operation
    time: dt.datetime
    #: What the writer declared (``audit_context``): claims, not proof (docs/context.md).
    context: dict[str, Any] | None
    #: The row after the change (before it, for a delete), as JSON values.
    row: dict[str, Any]
    #: Field name (the column where no field has it) -> (old, new), typed by the model's
    #: fields as ``get_instance()`` types them (a ``DecimalField`` gives ``Decimal("19.90")``,
    #: a ``DateTimeField`` an aware datetime); None where there was no value: every field
    #: for an INSERT (old) or a DELETE (new).
    changes: dict[str, tuple[Any, Any]]
    #: The model of the object (the one ``history()`` was given).
    model: type[models.Model] | None = dataclasses.field(default=None, repr=False, compare=False)
    #: The database role that logged in and wrote it (``session_user``), recorded by the
    #: capture whatever the context says; None for rows written before it was recorded.
    session_user: str | None = None

    def revert(self, *, using: str | None = None) -> models.Model:
        """Write the object back as it was at this version, through the ORM, in one
        transaction; a deleted object is inserted again with its old primary key. A DELETE
        version brings the row back as it was when deleted. See docs/undo.md.

        Args:
            using: the database; the model's write database by default.

        Returns:
            The saved instance.

        Raises:
            RevertError: the revert is refused (a conflict, a column the trail does not
                hold); nothing was written.
        """
        from .revert import revert

        model = self.model or _model_for_table(*self.entry._table())
        return revert(model, self.entry.object_pk, self, using=using)


@dataclass(frozen=True)
class HistoryPage:
    """One page of an object's history: iterate it, index it or take its ``len()`` as the
    list of its ``versions``."""

    versions: list[Version]
    #: Pass as ``after=`` for the next page; None on the last one.
    next_after: int | str | None

    def __iter__(self) -> Iterator[Version]:
        return iter(self.versions)

    def __len__(self) -> int:
        return len(self.versions)

    @overload
    def __getitem__(self, index: int) -> Version: ...

    @overload
    def __getitem__(self, index: slice) -> list[Version]: ...

    def __getitem__(self, index: int | slice) -> Version | list[Version]:
        return self.versions[index]


_OPERATIONS = {code: op for op, code in _CODES.items()}


def _versions(model: type[models.Model], page: list[Any], previous: Any) -> list[Version]:
    """``page``'s entries as versions, each compared with the one before it, their changes
    typed by ``model``'s fields (see ``_typed_rows()``). Masked values stay ``"[masked]"``,
    and a column the model no longer has keeps its JSON value."""
    from .registry import table_spec

    columns = {f.column: f.name for f in model._meta.concrete_fields}
    masked = set(table_spec(model).masked)
    typed = _typed_rows(model, [*page, *([previous] if previous is not None else [])])
    nothing: tuple[dict[str, Any], dict[str, Any]] = ({}, {})
    versions = []
    for entry in page:
        changes = entry.changes_since(previous)
        before, after = typed.get((type(entry), entry.pk), nothing)
        if entry.is_delete():
            before = after  # the row of a delete is the row before it
        elif entry.is_update() and entry.needs_previous() and previous is not None:
            before = typed.get((type(previous), previous.pk), nothing)[1]

        def value(column: str, raw: Any, row: dict[str, Any]) -> Any:
            if raw is None or column in masked or column not in row:
                return raw
            return row[column]

        versions.append(
            Version(
                entry=entry,
                operation=entry.get_operation(),
                time=getattr(entry, entry._time),
                context=entry.audit_context,
                session_user=entry.session_user_name,
                row=entry.get_row_data(),
                changes={
                    columns.get(k, k): (value(k, old, before), value(k, new, after))
                    for k, (old, new) in changes.items()
                },
                model=model,
            )
        )
        previous = entry
    return versions


def _parse_cursor(after: Any) -> dict[str, int]:
    """``"simple:12,advanced:40"``: the last version read from each table, in the order the
    tables were last read."""
    if after is None:
        return {}
    positions: dict[str, int] = {}
    for part in after.split(",") if isinstance(after, str) else [None]:
        name, _, pk = (part or "").partition(":")
        if name not in read_models() or not pk.isdigit():
            raise ValueError(
                f"after must be the next_after of a history(all_layouts=True) page, got {after!r}"
            )
        positions[name] = int(pk)
    return positions


_NO_KEY: Any = object()


def _model_and_key(obj: Any, pk: Any) -> tuple[type[models.Model], Any]:
    """(model, key) of ``history(obj)`` or ``history(Model, pk)``."""
    if isinstance(obj, type) and issubclass(obj, models.Model):
        if pk is _NO_KEY:
            raise TypeError(f"history({obj.__name__}, pk): the key of the row is missing")
        return obj, pk
    if isinstance(obj, models.Model) and pk is _NO_KEY:
        return type(obj), obj.pk
    shown = type(obj).__name__ if isinstance(obj, models.Model) else repr(obj)
    raise TypeError(
        "history(obj) takes an instance alone, or history(Model, pk) a model and a key; "
        f"got {shown}{'' if pk is _NO_KEY else f' and {pk!r}'}"
    )


def _view_exists(entries: Any, using: str | None) -> bool:
    from django.db import connections

    with connections[using or "default"].cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [entries._meta.db_table])
        return bool(cursor.fetchone()[0])


def _on_view(queryset: Any, view: str, chain: bool = True) -> Any:
    """``queryset`` reading ``view`` (another read view of its layout, with the columns
    the query names) in place of its model's view: the same rows, the same instances.

    The view takes the place of the query's base table under an alias, so every column,
    filter and order the query has or is given later reads the other view. A read model's
    view in an audit schema is a qualified name, which cannot be an alias: the base table
    is renamed to the bare name of the model's view first.
    """
    table = conf.read_model_table(view)
    return _on_base_table(queryset, table, lambda alias: BaseTable(table, alias), chain)


def _on_base_table(queryset: Any, name: str, base: Callable[[str], Any], chain: bool = True) -> Any:
    """``queryset`` reading ``base(alias)`` in its FROM clause in place of its model's view,
    under the bare name of that view (see :func:`_on_view`); ``name`` is what Django's
    table map knows it by. ``chain=False`` changes ``queryset`` itself, for one just made."""
    chained = queryset._chain() if chain else queryset
    query = chained.query
    alias = query.get_initial_alias()
    query.unref_alias(alias)
    bare = queryset.model._view
    if alias != bare:
        query.change_aliases({alias: bare})
        query.__dict__.pop("base_table", None)  # cached: the first alias, renamed
    del query.alias_map[bare]
    query.alias_map = {bare: base(bare), **query.alias_map}
    query.table_map = {name: aliases for name, aliases in query.table_map.items() if bare not in aliases}
    query.table_map[name] = [bare]
    return chained


@dataclass(frozen=True)
class _Json:
    """A jsonb argument of a :class:`_FunctionTable`, kept as its text (a FROM item is
    hashed) and bound as Django binds a JSONField's value on the connection's driver."""

    text: str


class _FunctionTable(BaseTable):  # type: ignore[misc]
    """A FROM item calling the set-returning function ``table_name`` (a quoted name) with
    ``arguments``, bound as parameters: ``function(%s, ...) alias``."""

    def __init__(self, table_name: str, alias: str, arguments: tuple[Any, ...] = ()) -> None:
        super().__init__(table_name, alias)
        self.arguments = arguments

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        placeholders = ", ".join(["%s"] * len(self.arguments))
        params = [
            models.JSONField().get_db_prep_value(json.loads(value.text), connection)
            if isinstance(value, _Json)
            else value
            for value in self.arguments
        ]
        return f"{self.table_name}({placeholders}) {self.table_alias}", params

    def relabeled_clone(self, change_map: dict[str, str]) -> _FunctionTable:
        alias = change_map.get(self.table_alias) or self.table_alias
        return self.__class__(self.table_name, alias, self.arguments)

    @property
    def identity(self) -> tuple[Any, ...]:
        return (self.__class__, self.table_name, self.arguments, self.table_alias)


def _function_name(name: str) -> str:
    """The read function ``name``, named as the read models name their views: qualified in
    an audit schema of its own."""
    from partitioned_audit.sql import quote_ident

    where = conf.audit_schema()
    return quote_ident(name) if where == "public" else quote_ident(where, name)


def _on_context_function(queryset: Any, any_of: list[dict[str, Any]], chain: bool = True) -> Any:
    """``queryset`` (a context search) reading the layout's context function, which returns
    the context view's rows whose context contains one of ``any_of``, rather than the
    context view itself: the same rows, with a plan the server keeps per connection instead
    of planning every partition of both tables at each search (see
    ``partitioned_audit/templates/context_entries.sql``). The search's filters stay in the
    query, so whatever else it holds (other keys, another table) still selects the rows."""
    function = _function_name(queryset.model._layout_object().context_function)
    argument = _Json(json.dumps(any_of, sort_keys=True))
    return _on_base_table(
        queryset, function, lambda alias: _FunctionTable(function, alias, (argument,)), chain
    )


def _on_object_function(queryset: Any, table: str, schema: str, key: str) -> Any:
    """``queryset`` (a new one, filtered to the entries of one object) reading them from the
    layout's object function rather than its read view: the same rows, with a plan the
    server keeps per connection instead of planning the view's join over every partition
    of both tables at each read (see ``partitioned_audit/templates/object_entries.sql``).

    The filters stay in the query: were the queryset moved to another view later (a
    context search, see :meth:`_HistoryQuerySet._on_fitting_view`), they still select this
    object. A queryset already reading another view than the model's stays there.
    """
    query = queryset.query
    alias = query.get_initial_alias()
    query.unref_alias(alias)
    if query.alias_map[alias].table_name != queryset.model._meta.db_table:
        return queryset
    function = _function_name(queryset.model._layout_object().object_function)
    return _on_base_table(
        queryset, function, lambda alias: _FunctionTable(function, alias, (table, schema, key)), chain=False
    )


class _HistoryQuerySet(models.QuerySet):  # type: ignore[type-arg]
    """``history()``, ``as_of()`` and ``changes()``, shared by both read models."""

    _time = _ModelName()
    _operation = _ModelName()
    _txid = _ModelName()
    _schema_field = _ModelName()
    _table_field = _ModelName()

    def filter_payload(self, **kwargs: Any) -> Self:
        """Entries whose payload has these values (see :meth:`_payload_match`); ``id=42``
        and ``id="42"`` both match."""
        if not kwargs:
            raise TypeError("filter_payload() needs at least one key=value pair")
        qs = self
        for key, value in kwargs.items():
            qs = qs.filter(self._payload_match(key, value))
        return qs

    def _payload_match(self, key: str, value: Any) -> Q:
        raise NotImplementedError

    def filter_operation(self, operation: Operation) -> Self:
        if operation not in _CODES:
            raise ValueError(f"Invalid operation: {operation}")
        return self.filter(**{self._operation: _CODES[operation]})

    def _of_table(self, model_class: type[models.Model]) -> Q:
        return _table_q(model_class, self.model._layout_object())

    def filter_model(self, model_class: type[models.Model]) -> Any:
        """Entries of the table behind ``model_class``."""
        return self.filter(self._of_table(model_class))

    def filter_object(self, model_class: type[models.Model], pk: Any) -> Any:
        """Entries of one row, by primary key; served by the (table, pk) index, read through
        the layout's object function (a plan kept per connection, see
        :func:`_on_object_function`), with the filters of the read view's rows."""
        schema, table = split_table(model_class._meta.db_table)
        return _on_object_function(self._of_object(model_class, pk), table, schema, _pk_text(pk))

    def _of_object(self, model_class: type[models.Model], pk: Any) -> Any:
        """Entries of one row, read from the read view."""
        return self.filter(self._of_table(model_class), object_pk=_pk_text(pk))

    def filter_key(self, key: str, model_classes: Iterable[type[models.Model]]) -> Any:
        """Entries whose key, as stored in ``object_pk``, is ``key``, in any of the tables of
        ``model_classes``; one probe of the (table, pk) index per table."""
        tables = Q(pk__in=[])
        for model_class in model_classes:
            tables |= self._of_table(model_class)
        return self.filter(tables, object_pk=key)

    def filter_context(self, **values: Any) -> Any:
        """Entries written inside an ``audit_context`` holding these values, by containment
        (``@>``), which the partial GIN index on ``audit_context`` serves. A number or a
        boolean also matches its text (``user_id=7`` finds ``"7"``), and the reverse."""
        if not values:
            raise TypeError("filter_context() needs at least one key=value pair")
        return self.filter_context_any(
            [[{key: candidate} for candidate in _candidates(value)] for key, value in values.items()]
        )

    def filter_context_any(self, conditions: list[list[dict[str, Any]]]) -> Any:
        """Entries whose context contains, for each list of ``conditions``, one of its
        objects (``[[{"username": "ann"}, {"user_id": 7}]]``: written by ann or by user 7).

        The context lives in the context table, one row per transaction (docs/context.md):
        its indexes find the context rows, and the (context id) index their audit rows. A
        scalar value of a key with an index of its own (``user_id``) is compared as text,
        which that index serves newest first (see :meth:`newest_first`); any other value
        by containment (``@>``), which the GIN index on the context serves. Everything
        reads the views only, so a role granted the read views alone can search.

        The entries are read from the layout's context view (see
        :func:`partitioned_audit.ddl.create_view`): the read view's columns and rows,
        each context row first, so ``newest_first()[:n]`` walks the ``user_id`` index
        newest first and stops after ``n`` entries, however many the user wrote. A search
        on ``user_id`` in another order (``order_by("-pk")``, the default order by id) is
        read from the read view (see :meth:`_on_fitting_view`).
        """
        from django.db.models.fields.json import KT

        from partitioned_audit.layouts import ORDERED_CONTEXT_KEYS

        if not conditions or not all(conditions):
            raise TypeError("filter_context_any() needs at least one non-empty list of conditions")
        keys: set[str] = set()
        shown = Q()
        for alternatives in conditions:
            either, texts = Q(pk__in=[]), {}
            for alternative in alternatives:
                [(key, value)] = alternative.items() if len(alternative) == 1 else [(None, None)]
                if key in ORDERED_CONTEXT_KEYS and isinstance(value, str | int | float | bool):
                    # ->> gives a scalar's text: 7 and "7" both read '7'
                    texts.setdefault(key, set()).add(value if isinstance(value, str) else json.dumps(value))
                else:
                    either |= Q(audit_context__contains=alternative)
            for key, values in texts.items():
                either |= Q(**{f"{_KEY_ALIAS}{key}__in": sorted(values)})
            keys |= set(texts)
            shown &= either
        found = self.alias(**{f"{_KEY_ALIAS}{key}": KT(f"audit_context__{key}") for key in keys}).filter(
            shown
        )
        # Whether it searches a key of the user B-tree (a user's entries may be many).
        found.query.dpa_context_search = "ordered" if keys else "contained"
        # What the context function finds the context rows by: the first list's objects.
        found.query.dpa_context_any_of = conditions[0]
        return found._on_fitting_view(chain=False)

    def _on_fitting_view(self, chain: bool = True) -> Any:
        """This context search on the view that serves it: the context view, but for a
        user's entries in another order than newest first (``order_by("-pk")``, the
        model's default order by id), which read the read view. Newest first, the context
        view walks the user B-tree and stops after a page; in another order it would probe
        every one of a busy user's context rows to sort their entries, at a cost that also
        starts JIT, where the read view's join (hashed) costs less. Containment alone (a
        request, a job) reads the context view's rows through the context function
        (:func:`_on_context_function`), whatever the order: it finds the context rows
        through the GIN in any case, and sorts what it found. ``chain=False`` changes this
        queryset itself, for one just made."""
        search = getattr(self.query, "dpa_context_search", None)
        if search is None:
            return self
        if search == "contained":
            return _on_context_function(self, self.query.dpa_context_any_of, chain)
        layout = self.model._layout_object()
        query = self.query
        ordering = query.order_by or (self.model._meta.ordering if query.default_ordering else ())
        newest = bool(ordering) and ordering[0] == f"-{self._time}"
        read_view = search == "ordered" and bool(ordering) and not newest
        return _on_view(self, layout.view if read_view else layout.context_view, chain)

    def order_by(self, *field_names: Any) -> Any:
        """Django's ``order_by()``; a context search moves to the view serving the order
        (see :meth:`filter_context_any`)."""
        return super().order_by(*field_names)._on_fitting_view(chain=False)

    def newest_first(self) -> Any:
        """Newest entries first: by time (the transaction's start), then by id; the order
        of the context table's ``user_id`` index: ``filter_context(user_id=7).newest_first()[:100]``
        walks it newest first and stops after 100 entries (docs/context.md)."""
        return self.order_by(f"-{self._time}", "-pk")

    def history(
        self,
        obj: models.Model | type[models.Model],
        pk: Any = _NO_KEY,
        *,
        after: int | str | None = None,
        limit: int = 100,
        all_layouts: bool = False,
        archive: str | None = None,
    ) -> HistoryPage:
        """The versions of ``obj``, oldest first, ``limit`` at a time: each with its operation,
        time, context and changed fields. ``after`` is the ``next_after`` of the previous page
        (keyset pagination, served by the (table, key) index).

        ``history(Model, pk)`` reads the history of the row ``pk`` of ``Model``'s table,
        which needs no instance: a deleted row has none.

        ``all_layouts=True`` also reads the table of the other layout where it exists (kept
        after a switch of ``DPA_AUDIT_TABLE_MANAGER``): one history across both tables,
        merged by time, each table's versions in their own order. Its ``next_after`` is a
        text cursor holding the position in each table.

        ``archive`` (an ``s3://`` or ``file://`` URL, see docs/archive.md) adds the versions
        of partitions archived there, read with pyarrow; a version both there and in the
        database (a restored partition) is listed once. Their changes are JSON values.
        """
        model, pk = _model_and_key(obj, pk)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        if all_layouts:
            if archive is not None:
                raise ValueError(
                    "history(): archive= reads one layout's archive; it cannot go with all_layouts=True"
                )
            return self._merged_history(model, pk, after, limit)
        if after is not None and (not isinstance(after, int) or isinstance(after, bool)):
            raise ValueError(f"after must be the next_after of a page, an integer, got {after!r}")
        entries = self.filter_object(model, pk).order_by("pk")
        if after is not None:
            entries = entries.filter(pk__gt=after)
        found = list(entries[: limit + 1])
        archived = self._archived(model, pk, archive) if archive is not None else []
        if archived:
            # The first limit + 1 of the union hold no database entry past the first limit + 1.
            known = {e.pk for e in found}
            found += [e for e in archived if (after is None or e.pk > after) and e.pk not in known]
            found = sorted(found, key=lambda e: e.pk)[: limit + 1]
        page, more = found[:limit], len(found) > limit
        previous = None
        if page and after is not None and page[0].needs_previous():
            previous = self.filter_object(model, pk).filter(pk__lte=after).order_by("-pk").first()
            earlier = [e for e in archived if e.pk <= after]
            if earlier and (previous is None or earlier[-1].pk > previous.pk):
                previous = earlier[-1]
        return HistoryPage(_versions(model, page, previous), page[-1].pk if more else None)

    def _archived(self, model: type[models.Model], pk: Any, url: str, **equal: Any) -> list[Any]:
        """The entries of ``model``'s row ``pk`` (or, with ``pk=None``, of ``equal``) archived
        at ``url``, as unsaved read-model instances marked ``archived``, by event id."""
        from partitioned_audit.archive import read_rows
        from partitioned_audit.layouts import get_layout
        from partitioned_audit.store import open_store

        layout = get_layout(self.model._layout)
        schema, table = split_table(model._meta.db_table)
        conditions = {self._table_field: table, **equal}
        if pk is not None:
            conditions["object_pk"] = _pk_text(pk)
        fields = self.model._meta.concrete_fields
        entries = []
        for row in read_rows(open_store(url), layout.table, conditions):
            where = row.get(self._schema_field)
            if where != schema and not (where is None and schema == "public" and layout.schemaless_rows):
                continue
            values = {}
            for f in fields:
                value = row.get(f.column)
                if isinstance(f, models.JSONField) and isinstance(value, str):
                    value = json.loads(value)
                values[f.attname] = value
            entry = self.model(**values)
            entry._state.adding, entry._state.db = False, self.db
            entry.archived = True
            entries.append(entry)
        return sorted(entries, key=lambda e: e.pk)

    def _merged_history(self, model: type[models.Model], pk: Any, after: Any, limit: int) -> HistoryPage:
        positions = _parse_cursor(after)
        sources = {
            name: entries.objects.using(self.db)  # type: ignore[attr-defined]
            for name, entries in read_models().items()
            if entries is self.model or _view_exists(entries, self.db)
        }
        if set(positions) - set(sources):
            raise ValueError(f"after={after!r} names a layout whose table is not in this database")
        streams = {}
        for name, manager in sources.items():
            # The other layout's table may be kept from an earlier version, without the
            # object function: its rows are read from its read view.
            of_object = manager.filter_object if name == self.model._layout else manager.all()._of_object
            entries = of_object(model, pk).order_by("pk")
            if name in positions:
                entries = entries.filter(pk__gt=positions[name])
            streams[name] = list(entries[: limit + 1])
        merged: list[tuple[str, Any]] = []
        heads = dict.fromkeys(streams, 0)
        while len(merged) < limit + 1:
            ready = [(streams[n][i].merge_key(), n) for n, i in heads.items() if i < len(streams[n])]
            if not ready:
                break
            _, name = min(ready)
            merged.append((name, streams[name][heads[name]]))
            heads[name] += 1
        page, more = merged[:limit], len(merged) > limit
        previous = None
        if page and positions and page[0][1].needs_previous():
            last = next(reversed(positions))  # the cursor lists the last version's table last
            previous = sources[last].filter(pk=positions[last]).first()
        cursor = None
        if more:
            for name, entry in page:
                positions.pop(name, None)
                positions[name] = entry.pk
            cursor = ",".join(f"{name}:{pk}" for name, pk in positions.items())
        return HistoryPage(_versions(model, [entry for _, entry in page], previous), cursor)

    def as_of(
        self, model_class: type[models.Model], pk: Any, when: dt.datetime, *, archive: str | None = None
    ) -> models.Model | None:
        """The row ``pk`` of ``model_class`` as it was at ``when`` (an instance typed as
        ``get_instance()`` types it); None if it did not exist then. ``archive`` (a URL, see
        ``history()``) also reads the partitions archived there."""
        last = (
            self.filter_object(model_class, pk).filter(**{f"{self._time}__lte": when}).order_by("-pk").first()
        )
        if archive is not None:
            earlier = [e for e in self._archived(model_class, pk, archive) if getattr(e, self._time) <= when]
            if earlier and (last is None or earlier[-1].pk > last.pk):
                last = earlier[-1]
        if last is None or last.is_delete():
            return None
        truncated = (
            self.filter_model(model_class)
            .filter(**{self._operation: "T", f"{self._time}__lte": when, "pk__gt": last.pk})
            .exists()
        )
        if archive is not None and not truncated:
            truncated = any(
                getattr(e, self._time) <= when and e.pk > last.pk
                for e in self._archived(model_class, None, archive, **{self._operation: "T"})
            )
        return None if truncated else last.get_instance(model_class)

    def revert(self, model_class: type[models.Model], pk: Any, *, to: Any) -> models.Model:
        """Write the row ``pk`` of ``model_class`` back as it was at ``to`` (a
        :class:`Version`, an entry, or a datetime: the version in force then), or insert it
        again when it was deleted. See :func:`django_partitioned_audit.revert.revert` and
        docs/undo.md.

        Raises:
            RevertError: the revert is refused; nothing was written.
        """
        from .revert import revert

        return revert(model_class, pk, to, using=self._db, read_model=self.model)

    def deleted(
        self, model_class: type[models.Model], *, after: str | None = None, limit: int = 50, scan: int = 1000
    ) -> HistoryPage:
        """The objects of ``model_class`` whose last version is a DELETE and which do not
        exist now, as the :class:`Version` of their DELETE (``version.revert()`` brings one
        back), in the order of their key's text, ``limit`` at a time.

        The keys are walked through the (table, object_pk) index, one distinct key after the
        other (a skip scan), and each key's last version is read through the same index: a
        page reads at most ``scan`` keys, whatever the size of the trail, and may hold fewer
        than ``limit`` objects when few of those keys were deleted; ``next_after`` then still
        points past the keys read. Four queries: the keys, the rows that exist now, the
        DELETE entries and their rows typed by the model's fields.

        Args:
            model_class: the audited model (one primary key column).
            after: the ``next_after`` of the previous page (a key's text).
            limit: the most objects on a page.
            scan: the most keys a page reads.
        """
        from django.db import connections

        from partitioned_audit.sql import SQL, ident, render

        from .registry import table_spec

        for name, value in (("limit", limit), ("scan", scan)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if after is not None and not isinstance(after, str):
            raise ValueError(f"after must be the next_after of a page, a key's text, got {after!r}")
        if len(table_spec(model_class).pk) != 1:
            raise ValueError(
                f"deleted() needs a model with one primary key column; {model_class.__name__} has several"
            )
        read_model: Any = self.model
        same_table = SQL("v.{table} = %s AND coalesce(v.{schema}, 'public') = %s").format(
            table=ident(self._table_field), schema=ident(self._schema_field)
        )
        statement = SQL(
            "WITH RECURSIVE keys(k, n) AS ("
            "(SELECT v.object_pk, 1 FROM {view} AS v WHERE {same} AND v.object_pk {first} %s"
            " ORDER BY v.object_pk LIMIT 1)"
            " UNION ALL"
            " SELECT (SELECT v.object_pk FROM {view} AS v WHERE {same} AND v.object_pk > keys.k"
            " ORDER BY v.object_pk LIMIT 1), keys.n + 1 FROM keys WHERE keys.k IS NOT NULL AND keys.n < %s)"
            " SELECT keys.k, last.{key}, last.{operation} FROM keys CROSS JOIN LATERAL"
            " (SELECT v.{key}, v.{operation} FROM {view} AS v WHERE {same} AND v.object_pk = keys.k"
            " ORDER BY v.{key} DESC LIMIT 1) AS last"
            " WHERE keys.k IS NOT NULL ORDER BY keys.k"
        ).format(
            view=ident(conf.audit_schema(), read_model._view),
            same=same_table,
            first=SQL(">" if after is not None else ">="),
            key=ident(read_model._key),
            operation=ident(read_model._operation),
        )
        schema, table = split_table(model_class._meta.db_table)
        where = [table, schema]
        params = [*where, after if after is not None else "", *where, scan, *where]
        using = self.db or "default"
        with connections[using].cursor() as cursor:
            cursor.execute(render(statement, cursor), params)
            walked = cursor.fetchall()
        gone: dict[Any, tuple[str, int]] = {}
        pk_field: Any = model_class._meta.pk
        for text, event, operation in walked:
            if operation == "D":
                try:
                    gone[pk_field.to_python(text)] = (text, event)
                except ValidationError:
                    continue  # a key the model's field no longer takes: not restorable here
        existing = set(
            model_class._base_manager.using(using).filter(pk__in=list(gone)).values_list("pk", flat=True)
        )
        found = [(text, event) for key, (text, event) in gone.items() if key not in existing]
        page = found[:limit]
        if len(found) > limit:
            next_after: str | None = page[-1][0]
        elif len(walked) >= scan:
            next_after = walked[-1][0]
        else:
            next_after = None
        by_pk = self.model._base_manager.using(using).in_bulk([event for _, event in page])
        return HistoryPage(_versions(model_class, [by_pk[event] for _, event in page], None), next_after)

    def changes(self, model_class: type[models.Model], since: dt.datetime, until: dt.datetime) -> Any:
        """The entries of ``model_class``'s table in [since, until), oldest first; the time
        range prunes the partitions outside it."""
        if since > until:
            raise ValueError(f"since ({since}) is after until ({until})")
        return (
            self.filter_model(model_class)
            .filter(**{f"{self._time}__gte": since, f"{self._time}__lt": until})
            .order_by("pk")
        )


class SimpleAuditEntryQuerySet(_HistoryQuerySet):
    def _payload_match(self, key: str, value: Any) -> Q:
        """The payload holds ``value`` under ``key``."""
        return _payload_q("object_payload", key, value)


class SimpleAuditEntry(_Snapshot, models.Model, layout=SIMPLE):
    """One change recorded by the simple layout (read-only; mapped to ``audit_simple_view``)."""

    id = models.BigIntegerField(primary_key=True, help_text="Event id, strictly increasing")
    object_table = models.CharField(max_length=63)
    object_payload = models.JSONField(null=True, help_text="The row after the change; NULL for TRUNCATE")
    audit_entry_created = models.DateTimeField()
    audit_entry_created_statement_timestamp = models.DateTimeField()
    audit_txid_current = models.BigIntegerField()
    audit_operation = models.CharField(max_length=32)
    object_schema = models.TextField(null=True)
    object_pk = models.TextField(null=True)
    audit_context = models.JSONField(null=True, help_text="What the writer declared (see docs/context.md)")
    audit_context_id = models.BigIntegerField(null=True, help_text="The row of the context table")
    session_user_name = models.TextField(
        null=True, help_text="The database role that logged in (session_user); NULL before 2.0"
    )

    objects = SimpleAuditEntryQuerySet.as_manager()

    class Meta:
        managed = False
        db_table = conf.read_model_table(SIMPLE.view)
        ordering = (SIMPLE.view_key_column,)
        verbose_name_plural = "simple audit entries"

    def get_row_data(self) -> dict[str, Any]:
        """The row after the change (before it, for a delete), as JSON values; empty for TRUNCATE."""
        return dict(self.object_payload or {})

    def needs_previous(self) -> bool:
        """An UPDATE stores only the row after it: its changes need the version before."""
        return self.is_update()

    def previous(self) -> SimpleAuditEntry | None:
        """The version of the same row just before this one, through the (table, key) index."""
        return (
            type(self)
            .objects.using(self._state.db)
            .filter(
                object_table=self.object_table,
                object_schema=self.object_schema,
                object_pk=self.object_pk,
                id__lt=self.id,
            )
            .order_by("-id")
            .first()
        )

    def changes_since(self, previous: SimpleAuditEntry | None) -> dict[str, tuple[Any, Any]]:
        """Column -> (old, new), from the version before (None when it is not in the trail)."""
        row = self.get_row_data()
        if self.is_delete():
            return {k: (v, None) for k, v in row.items()}
        before = {} if previous is None or self.is_insert() else previous.get_row_data()
        return {k: (before.get(k), v) for k, v in row.items() if k not in before or before[k] != v}

    def _table(self) -> tuple[str, str]:
        return self.object_schema or "public", self.object_table


class AdvancedAuditEntryQuerySet(_HistoryQuerySet):
    def _payload_match(self, key: str, value: Any) -> Q:
        """The new value (the changed field, else the row's) is ``value``."""
        changed = _payload_q("changed_fields_json", key, value)
        unchanged = Q(**{f"changed_fields_json__{key}__isnull": True}) & _payload_q(
            "row_data_json", key, value
        )
        return changed | unchanged


class AdvancedAuditEntry(_Snapshot, models.Model, layout=ADVANCED):
    """One change recorded by the advanced layout (read-only; mapped to ``logged_actions_view``)."""

    event_id = models.BigIntegerField(
        primary_key=True, help_text="Unique identifier for each auditable event"
    )
    schema_name = models.TextField(help_text="Database schema audited table for this event is in")
    table_name = models.TextField(help_text="Non-schema-qualified table name of table event occurred in")
    relid = models.BigIntegerField(help_text="Table OID")
    session_user_name = models.TextField(null=True)
    action_tstamp_tx = models.DateTimeField(help_text="Transaction start timestamp")
    action_tstamp_stm = models.DateTimeField(help_text="Statement start timestamp")
    action_tstamp_clk = models.DateTimeField(help_text="Wall clock time of the trigger call")
    transaction_id = models.BigIntegerField(null=True)
    application_name = models.TextField(null=True)
    client_addr = models.GenericIPAddressField(null=True)
    client_port = models.IntegerField(null=True)
    client_query = models.TextField(
        null=True, help_text="Top-level query; stored on the first row of each statement"
    )
    action = models.CharField(max_length=1, help_text="I = insert, D = delete, U = update, T = truncate")
    row_data = models.JSONField(null=True, help_text="INSERT: the new row. UPDATE and DELETE: the old row.")
    changed_fields = models.JSONField(null=True, help_text="UPDATE: new values of the changed columns.")
    statement_only = models.BooleanField()
    row_data_json = models.JSONField(null=True)
    changed_fields_json = models.JSONField(null=True)
    object_pk = models.TextField(null=True)
    statement_id = models.BigIntegerField(null=True)
    audit_context = models.JSONField(null=True, help_text="What the writer declared (see docs/context.md)")
    audit_context_id = models.BigIntegerField(null=True, help_text="The row of the context table")

    objects = AdvancedAuditEntryQuerySet.as_manager()

    class Meta:
        managed = False
        db_table = conf.read_model_table(ADVANCED.view)
        ordering = (ADVANCED.view_key_column,)
        verbose_name_plural = "advanced audit entries"

    def get_row_data(self) -> dict[str, Any]:
        """The row after the change (before it, for a delete), as JSON values."""
        row: dict[str, Any] = {}
        row.update(self.row_data_json or {})
        row.update(self.changed_fields_json or {})
        return row

    def needs_previous(self) -> bool:
        """The old row and the changed fields are both on the entry itself."""
        return False

    def previous(self) -> None:
        """Not needed: the entry holds the old row (see ``needs_previous()``)."""
        return None

    def changes_since(self, previous: AdvancedAuditEntry | None) -> dict[str, tuple[Any, Any]]:
        """Column -> (old, new): the changed fields of an UPDATE against its old row."""
        old = dict(self.row_data_json or {})
        if self.is_update():
            return {k: (old.get(k), v) for k, v in (self.changed_fields_json or {}).items()}
        if self.is_delete():
            return {k: (v, None) for k, v in old.items()}
        return {k: (None, v) for k, v in old.items()}

    def _table(self) -> tuple[str, str]:
        return self.schema_name, self.table_name

    def get_client_query(self) -> str | None:
        """The statement's query text, kept once per statement on its first row.

        The statement's id is drawn from the event-id sequence before its rows are
        numbered, so its first row is the first entry after that id: a probe of the
        event-id index, however many rows the statement wrote.
        """
        if self.client_query is not None or self.statement_id is None:
            return self.client_query
        first = (
            type(self)
            .objects.filter(
                statement_id=self.statement_id,
                transaction_id=self.transaction_id,
                action_tstamp_tx=self.action_tstamp_tx,
                client_query__isnull=False,
                event_id__gt=self.statement_id,
                event_id__lte=self.event_id,
            )
            .values_list("client_query", flat=True)
            .first()
        )
        return first


def read_models() -> dict[str, type[SimpleAuditEntry] | type[AdvancedAuditEntry]]:
    """Each layout's read model, by layout name."""
    return {model._layout: model for model in (SimpleAuditEntry, AdvancedAuditEntry)}


def entry_model() -> type[SimpleAuditEntry] | type[AdvancedAuditEntry]:
    """The read model of the layout ``DPA_AUDIT_TABLE_MANAGER`` chooses."""
    return read_models()[conf.layout().name]
