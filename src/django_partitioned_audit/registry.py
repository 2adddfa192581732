"""Which models are audited: read from each ``AppConfig`` and validated in one place."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from django.apps import AppConfig, apps
from django.db import models

from partitioned_audit.layouts import CAPTURE_LEVELS, TableSpec

from . import conf


@dataclass(frozen=True)
class Problem:
    """A registration mistake; ``id`` is the system check id."""

    id: str
    message: str
    hint: str
    obj: object


@dataclass(frozen=True)
class Registration:
    enabled: tuple[type[models.Model], ...]
    disabled: tuple[type[models.Model], ...]
    problems: tuple[Problem, ...]


def _names(app_config: AppConfig, attribute: str) -> tuple[object, ...]:
    value = getattr(app_config, attribute, None) or ()
    if isinstance(value, str):  # ("Model") without a comma is a string, not a tuple
        return (value,)
    return tuple(value)


def _model_named(
    app_config: AppConfig, name: str, where: str, problems: list[Problem]
) -> type[models.Model] | None:
    """The model ``name`` of ``app_config``; None, with an E001 in ``problems``, when the app
    has none of that name (``where`` says which setting named it)."""
    try:
        return app_config.get_model(name)
    except LookupError:
        problems.append(
            Problem(
                "partitioned_audit.E001",
                f"{where} names '{name}', which is not a model of app '{app_config.label}'.",
                "Check the spelling; abstract models have no table and cannot be audited.",
                app_config,
            )
        )
        return None


def _resolve(app_config: AppConfig, attribute: str, problems: list[Problem]) -> list[type[models.Model]]:
    found = []
    for name in _names(app_config, attribute):
        where = f"{type(app_config).__module__}.{type(app_config).__qualname__}.{attribute}"
        if not isinstance(name, str):
            problems.append(
                Problem(
                    "partitioned_audit.E001",
                    f"{where} holds {name!r}, not a model name.",
                    "List model class names as strings, e.g. ('Invoice',).",
                    app_config,
                )
            )
            continue
        model = _model_named(app_config, name, where, problems)
        if model is None:
            continue
        # An unmanaged model is audited like any other once its table exists (RunSQL, a
        # partitioned table made by hand); a proxy has no table of its own.
        if model._meta.proxy and attribute == "trigger_audit_models":
            problems.append(
                Problem(
                    "partitioned_audit.E002",
                    f"{where} names '{name}', a proxy model.",
                    "Register the concrete model that owns the table instead.",
                    model,
                )
            )
            continue
        found.append(model)
    return found


def registration() -> Registration:
    """Every model registered for auditing or for removal, and what is wrong with the lists."""
    problems: list[Problem] = []
    enabled: list[type[models.Model]] = []
    disabled: list[type[models.Model]] = []
    for app_config in apps.get_app_configs():
        on = _resolve(app_config, "trigger_audit_models", problems)
        off = _resolve(app_config, "audit_disabled", problems)
        for model in set(on) & set(off):
            problems.append(
                Problem(
                    "partitioned_audit.E003",
                    f"{model._meta.label} is listed in both trigger_audit_models and audit_disabled.",
                    "Keep it in one of the two lists.",
                    model,
                )
            )
        enabled.extend(m for m in on if m not in off)
        disabled.extend(m for m in off if m not in on)
        problems.extend(_level_problems(app_config, on))
    problems.extend(_column_problems(enabled))
    return Registration(tuple(enabled), tuple(disabled), tuple(problems))


#: The AppConfig attribute giving some of its models a capture level of their own.
LEVEL_ATTRIBUTE = "trigger_audit_capture_level"


def _levels(app_config: AppConfig) -> object:
    return getattr(app_config, LEVEL_ATTRIBUTE, None) or {}


def _level_problems(app_config: AppConfig, audited: list[type[models.Model]]) -> list[Problem]:
    """What is wrong with ``app_config``'s :data:`LEVEL_ATTRIBUTE`: not a mapping of model
    names to levels, a name that is no model of the app, or a model it does not audit."""
    where = f"{type(app_config).__module__}.{type(app_config).__qualname__}.{LEVEL_ATTRIBUTE}"
    levels = _levels(app_config)
    if not isinstance(levels, Mapping):
        return [
            Problem(
                "partitioned_audit.E006",
                f"{where} is {levels!r}, not a mapping of model names to capture levels.",
                "Map model class names to 'row' or 'statement', e.g. {'Invoice': 'row'}.",
                app_config,
            )
        ]
    problems = []
    for name, level in levels.items():
        if not isinstance(name, str) or level not in CAPTURE_LEVELS:
            problems.append(
                Problem(
                    "partitioned_audit.E006",
                    f"{where} maps {name!r} to {level!r}: a model name must map to 'row' or 'statement'.",
                    "Map model class names to 'row' or 'statement', e.g. {'Invoice': 'row'}.",
                    app_config,
                )
            )
            continue
        model = _model_named(app_config, name, where, problems)
        if model is None:
            continue
        if model not in audited:
            problems.append(
                Problem(
                    "partitioned_audit.E007",
                    f"{where} sets a capture level for {model._meta.label}, which is not in trigger_audit_models.",
                    "Add the model to trigger_audit_models, or remove it from the capture levels.",
                    model,
                )
            )
    return problems


def capture_level(model: type[models.Model]) -> str:
    """``"row"`` or ``"statement"``: the level its app's :data:`LEVEL_ATTRIBUTE` gives
    ``model``, else ``DPA_CAPTURE_LEVEL`` (a level that is not valid reads as the setting's:
    :func:`registration` reports it)."""
    levels = _levels(apps.get_app_config(model._meta.app_label))
    if isinstance(levels, Mapping):
        # Model names are case-insensitive, as AppConfig.get_model() reads them.
        for name, level in levels.items():
            if isinstance(name, str) and name.lower() == model._meta.model_name and level in CAPTURE_LEVELS:
                return str(level)
    return conf.capture_level()


def _columns(model: type[models.Model], setting: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    names = setting.get(model._meta.label_lower, ())
    return tuple(model._meta.get_field(name).column for name in names)  # type: ignore[union-attr]


def _column_problems(enabled: list[type[models.Model]]) -> list[Problem]:
    problems = []
    labels = {m._meta.label_lower: m for m in enabled}
    for setting_name, setting in (
        ("DPA_EXCLUDED_COLUMNS", conf.excluded_columns()),
        ("DPA_MASKED_COLUMNS", conf.masked_columns()),
    ):
        for label, fields in setting.items():
            model = labels.get(label)
            if model is None:
                problems.append(
                    Problem(
                        "partitioned_audit.E004",
                        f"{setting_name} names '{label}', which is not an audited model.",
                        "Use 'app_label.ModelName' of a model in trigger_audit_models.",
                        label,
                    )
                )
                continue
            for field in fields:
                try:
                    concrete = model._meta.get_field(field).concrete  # type: ignore[union-attr]
                except Exception:
                    concrete = False
                if not concrete:
                    problems.append(
                        Problem(
                            "partitioned_audit.E005",
                            f"{setting_name}['{label}'] names '{field}', which is not a column of {model._meta.label}.",
                            "Use the name of a concrete field of the model.",
                            model,
                        )
                    )
    return problems


def split_table(db_table: str) -> tuple[str, str]:
    """``(schema, table)`` of a model's ``db_table``; ``'"s"."t"'`` or ``'s"."t'`` name a schema."""
    text = db_table
    if text.startswith('"') and text.endswith('"') and '"."' in text:
        text = text[1:-1]
    if '"."' in text:
        schema, table = text.split('"."', 1)
        return schema.replace('""', '"'), table.replace('""', '"')
    return "public", db_table


def table_spec(model: type[models.Model]) -> TableSpec:
    """The engine's description of a model's table."""
    schema, table = split_table(model._meta.db_table)
    pk_field = model._meta.pk
    assert pk_field is not None
    pk: tuple[str, ...]
    names = getattr(pk_field, "field_names", None)  # CompositePrimaryKey (Django 5.2)
    if names:
        pk = tuple(model._meta.get_field(name).column for name in names)
    else:
        pk = (pk_field.column,)
    return TableSpec(
        schema=schema,
        table=table,
        pk=pk,
        excluded=_columns(model, conf.excluded_columns()),
        masked=_columns(model, conf.masked_columns()),
        skip_unchanged=conf.skip_unchanged_updates(),
        row_level=capture_level(model) == "row",
    )
