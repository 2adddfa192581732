"""Undo: write an object back as it was at a version of its audit trail, or bring back a
deleted one, through the ORM.

The version's row is typed back by PostgreSQL (``jsonb_populate_record``, as
``get_instance()`` does), checked against the model and the data as they are now, then
saved in one transaction: ``save(update_fields=...)`` of the existing row, or
``save(force_insert=True)`` of a deleted one with its old primary key. Signals fire, and the
write is audited like any other, with the caller's ``audit_context`` plus
``revert_of=<event id>``. Masked and excluded columns are never written from the trail.
See docs/undo.md.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import DatabaseError, IntegrityError, models, router, transaction
from django.db.models import NOT_PROVIDED

from partitioned_audit.errors import one_line

from .context import audit_context
from .errors import RevertError
from .models import AdvancedAuditEntry, SimpleAuditEntry, Version, _pk_text, _virtual, entry_model
from .registry import split_table, table_spec

__all__ = ["RevertError", "RevertPlan", "plan_revert", "revert"]


@dataclass(frozen=True)
class RevertPlan:
    """What :func:`revert` would write, checked but not written (the admin shows it before
    asking for confirmation)."""

    model: type[models.Model]
    pk: Any
    #: The audit entry of the version written back.
    entry: Any
    #: The row as it is now; None when it no longer exists (the revert restores it).
    current: models.Model | None
    #: The instance :func:`revert` saves: the current row with the version's values, or a
    #: new instance with the old primary key.
    target: models.Model
    #: The fields written from the version.
    fields: tuple[Any, ...]
    #: Field name -> (now, after the revert), for the fields whose value changes; (None,
    #: value) for every field of a restore.
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    #: Masked and excluded fields: never written from the trail (their current value stays;
    #: a restore gives them their default).
    kept: tuple[str, ...] = ()

    @property
    def restores(self) -> bool:
        """Whether the object no longer exists and the revert inserts it again."""
        return self.current is None


def _has_default(f: Any) -> bool:
    return bool(f.null or f.has_default() or getattr(f, "db_default", NOT_PROVIDED) is not NOT_PROVIDED)


def _entry_at(
    read_model: Any, model: type[models.Model], pk: Any, when: dt.datetime, using: str, label: str
) -> Any:
    """The version of (model, pk) in force at ``when``, or RevertError when none was."""
    entries = read_model.objects.using(using)
    last = (
        entries.filter_object(model, pk).filter(**{f"{read_model._time}__lte": when}).order_by("-pk").first()
    )
    if last is None:
        raise RevertError(
            f"Cannot revert {label} to {when.isoformat()}: it has no version at or before that time."
        )
    if last.is_delete():
        raise RevertError(
            f"Cannot revert {label} to {when.isoformat()}: it was deleted then (event {last.pk}). "
            "Revert it to that event to bring it back as it was when deleted."
        )
    truncated = (
        entries.filter_model(model)
        .filter(**{read_model._operation: "T", f"{read_model._time}__lte": when, "pk__gt": last.pk})
        .order_by("-pk")
        .first()
    )
    if truncated is not None:
        raise RevertError(
            f"Cannot revert {label} to {when.isoformat()}: its table was truncated then (event {truncated.pk}). "
            f"Revert it to event {last.pk}, its last version before the truncate."
        )
    return last


def _entry_of(to: Any, read_model: Any, model: type[models.Model], pk: Any, using: str, label: str) -> Any:
    if isinstance(to, Version):
        return to.entry
    if isinstance(to, SimpleAuditEntry | AdvancedAuditEntry):
        return to
    if isinstance(to, dt.datetime):
        return _entry_at(read_model or entry_model(), model, pk, to, using, label)
    raise TypeError(f"to must be a Version, an audit entry or a datetime, got {type(to).__name__}")


def plan_revert(
    model: type[models.Model],
    pk: Any,
    to: Any,
    *,
    using: str | None = None,
    read_model: Any = None,
    lock: bool = False,
) -> RevertPlan:
    """Check a revert of the row ``pk`` of ``model`` to the version ``to`` and say what it
    would write, writing nothing.

    Args:
        model: the audited model.
        pk: the primary key of the row (as the model's field takes it, or its text).
        to: a :class:`~django_partitioned_audit.models.Version`, an audit entry, or a
            datetime (the version in force then, read from ``read_model``).
        using: the database; the model's write database by default.
        read_model: the read model ``to=datetime`` is looked up in; the active layout's by
            default.
        lock: lock the current row (``SELECT ... FOR UPDATE``); :func:`revert` does, inside
            its transaction.

    Returns:
        The checked :class:`RevertPlan`.

    Raises:
        RevertError: the revert is refused (see docs/undo.md for each reason).
    """
    opts = model._meta
    label = f"{opts.label} {pk}"
    if len(table_spec(model).pk) != 1:
        raise RevertError(
            f"Cannot revert {label}: a composite primary key is not supported; write it back by hand."
        )
    try:
        pk = opts.pk.to_python(pk)  # type: ignore[union-attr]
    except ValidationError as exc:
        raise RevertError(
            f"Cannot revert {opts.label} {pk!r}: not a valid key ({'; '.join(exc.messages)})."
        ) from exc
    label = f"{opts.label} {pk}"
    using = using or router.db_for_write(model)
    entry = _entry_of(to, read_model, model, pk, using, label)
    prefix = f"Cannot revert {label} to event {entry.pk}: "
    schema, table = split_table(opts.db_table)
    if entry._table() != (schema, table) or entry.object_pk != _pk_text(pk):
        other = ".".join(entry._table())
        raise RevertError(f"{prefix}that event is a change of {other} {entry.object_pk}, not of this object.")
    if entry.is_truncate():
        raise RevertError(f"{prefix}it is a TRUNCATE, which holds no row.")

    spec = table_spec(model)
    hidden = set(spec.masked) | set(spec.excluded)
    row = entry.get_row_data()
    concrete = list(opts.concrete_fields)
    unknown = sorted(set(row) - {f.column for f in concrete})
    if unknown:
        raise RevertError(
            f"{prefix}its row has columns the model no longer has: {', '.join(unknown)}. "
            "Write it back by hand, or give the model those fields again."
        )
    # A generated column is computed by the database: never written.
    writable = [f for f in concrete if not getattr(f, "generated", False) and not _virtual(f)]
    missing = [
        f.column for f in writable if f.column not in row and f.column not in hidden and not _has_default(f)
    ]
    if missing:
        raise RevertError(
            f"{prefix}its row lacks columns the model has since, which are not null and have no default: "
            f"{', '.join(missing)}. Write it back by hand."
        )
    fields = tuple(f for f in writable if f.column in row and f.column not in hidden)
    kept = tuple(f.name for f in writable if f.column in hidden)

    try:
        with transaction.atomic(using=using):  # a value that no longer fits aborts only this
            version = entry.get_instance(model)
    except DatabaseError as exc:
        raise RevertError(f"{prefix}its values no longer fit the table's columns: {one_line(exc)}") from exc
    assert version is not None  # not a TRUNCATE

    rows = model._base_manager.using(using)
    current = (rows.select_for_update() if lock else rows).filter(pk=pk).first()
    if current is None:
        unset = [f.column for f in writable if f.column in hidden and not _has_default(f)]
        if unset:
            raise RevertError(
                f"{prefix}the object no longer exists and the trail does not hold its columns "
                f"{', '.join(unset)} (masked or excluded), which are not null and have no default. "
                "Write it back by hand."
            )
        target = model(**{f.attname: getattr(version, f.attname) for f in fields})
        target._state.db = using
        changes = {f.name: (None, getattr(target, f.attname)) for f in writable if not f.primary_key}
    else:
        changes = {}
        for f in fields:
            old, new = getattr(current, f.attname), getattr(version, f.attname)
            if old != new:
                changes[f.name] = (old, new)
        # A copy, so that the plan keeps the current values apart (copy.copy() would go
        # through pickling, which needs the model in the app registry).
        loaded = [f for f in concrete if f.attname in current.__dict__]
        target = model.from_db(
            using, [f.attname for f in loaded], [getattr(current, f.attname) for f in loaded]
        )
        for f in fields:
            setattr(target, f.attname, getattr(version, f.attname))
    plan = RevertPlan(model, pk, entry, current, target, fields, changes, kept)
    _check_foreign_keys(plan, prefix, using)
    _check_unique(plan, prefix)
    return plan


def _check_foreign_keys(plan: RevertPlan, prefix: str, using: str) -> None:
    """Foreign keys are checked by PostgreSQL at commit (Django makes them deferrable):
    checked here first, so a revert is refused before it writes."""
    gone = []
    for f in plan.fields:
        if not f.many_to_one and not f.one_to_one:
            continue
        value = getattr(plan.target, f.attname)
        if value is None:
            continue
        remote = f.remote_field.model
        if not remote._base_manager.using(using).filter(**{f.target_field.attname: value}).exists():
            gone.append(f"{f.name} ({remote._meta.label} {value})")
    if gone:
        raise RevertError(
            f"{prefix}its foreign keys point to rows that no longer exist: {', '.join(gone)}. "
            "Restore those first."
        )


def _check_unique(plan: RevertPlan, prefix: str) -> None:
    """Unique fields and constraints the model declares; any other constraint is caught
    when the write fails (see :func:`revert`)."""
    try:
        plan.target.validate_unique()
        plan.target.validate_constraints()
    except ValidationError as exc:
        taken = [
            f"{'constraint' if name == NON_FIELD_ERRORS else name}: {' '.join(messages)}"
            for name, messages in exc.message_dict.items()
        ]
        raise RevertError(
            f"{prefix}another row holds the same values ({'; '.join(taken)}). Change that row first."
        ) from exc


def revert(
    model: type[models.Model], pk: Any, to: Any, *, using: str | None = None, read_model: Any = None
) -> models.Model:
    """Write the row ``pk`` of ``model`` back as it was at the version ``to``, or insert it
    again with its old primary key when it was deleted, in one transaction.

    Args:
        model: the audited model.
        pk: the primary key of the row.
        to: a :class:`~django_partitioned_audit.models.Version`, an audit entry, or a
            datetime (the version in force then).
        using: the database; the model's write database by default.
        read_model: the read model ``to=datetime`` is looked up in; the active layout's by
            default.

    Returns:
        The saved instance.

    Raises:
        RevertError: the revert is refused; nothing was written.
    """
    using = using or router.db_for_write(model)
    with transaction.atomic(using=using):
        plan = plan_revert(model, pk, to, using=using, read_model=read_model, lock=True)
        target = plan.target
        with audit_context(revert_of=plan.entry.pk):
            try:
                with transaction.atomic(using=using):
                    if plan.restores:
                        target.save(using=using, force_insert=True)
                    else:
                        fields = [f.name for f in plan.fields if not f.primary_key]
                        target.save(using=using, update_fields=fields)
            except IntegrityError as exc:
                cause = exc.__cause__ or exc
                name = getattr(getattr(cause, "diag", None), "constraint_name", None)
                raise RevertError(
                    f"Cannot revert {plan.model._meta.label} {plan.pk} to event {plan.entry.pk}: "
                    f"the database refused the write{f' (constraint {name})' if name else ''}: {one_line(cause)}"
                ) from exc
    return target
