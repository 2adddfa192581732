"""ORM models over the benchmark tables; the tables and triggers are made by ``bench/run.py``.

The ``pgh_*`` variants' models are tracked by django-pghistory (inserts, updates and
deletes, at its row or statement level), which generates their event models here. The
``auditrum`` variant's models are registered with auditrum in ``audit.py``, as its README
says, and auditrum's app finds that module when Django starts.
"""

from __future__ import annotations

import pghistory
import pgtrigger
from django.db import models

from bench.scaleapp.fields import TABLES as SCALE_TABLES

from . import AUDITRUM, PGHISTORY_LEVELS, PREFIXES, TPCB_TABLES, VARIANTS


class RowBase(models.Model):
    """The narrow six-column row every write workload uses."""

    account = models.IntegerField()
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    note = models.TextField()
    created = models.DateTimeField()
    flag = models.BooleanField()

    class Meta:
        abstract = True
        app_label = "benchapp"


def _model(name: str, table: str, base: type[models.Model], attrs: dict | None = None) -> type[models.Model]:
    meta = type("Meta", (), {"app_label": "benchapp", "managed": False, "db_table": table})
    return type(name, (base,), {"__module__": __name__, "Meta": meta, **(attrs or {})})


def _tracked(model: type[models.Model], variant: str) -> type[models.Model]:
    level = getattr(pgtrigger, PGHISTORY_LEVELS[variant])
    # Trigger names unique per table: both variants track a table called pgbench_accounts.
    trackers = (
        pghistory.InsertEvent(trigger_name=f"{variant}_insert"),
        pghistory.UpdateEvent(trigger_name=f"{variant}_update"),
        pghistory.DeleteEvent(trigger_name=f"{variant}_delete"),
    )
    return pghistory.track(*trackers, level=level, model_name=f"{model.__name__}Event")(model)


def _camel(text: str) -> str:
    return text.title().replace("_", "")


#: Every variant's model of each workload table, by (prefix, variant).
ROW_MODELS: dict[tuple[str, str], type[models.Model]] = {}
for _variant in VARIANTS:
    for _prefix in PREFIXES:
        _m = _model(_camel(f"{_prefix}_row_{_variant}"), f"{_prefix}_{_variant}", RowBase)
        if _variant in PGHISTORY_LEVELS:
            _m = _tracked(_m, _variant)
        ROW_MODELS[_prefix, _variant] = _m

ORM_MODELS = {variant: ROW_MODELS["orm", variant] for variant in VARIANTS}

#: The tables of ``bench/scale.py`` tracked by django-pghistory at its row level (its
#: default), every insert, update and delete: ``bench/scalebytes.py``.
SCALE_MODELS = [
    _tracked(_model(_camel(f"{table}_pgh"), table, base), "pgh_row") for table, base in SCALE_TABLES.items()
]


def _int(**kwargs: object) -> models.IntegerField:
    return models.IntegerField(null=True, **kwargs)  # type: ignore[arg-type]


#: pgbench's tables as ``pgbench -i`` makes them (plus the key every audited table needs).
_TPCB_FIELDS = {
    "pgbench_accounts": {
        "aid": _int(primary_key=True),
        "bid": _int(),
        "abalance": _int(),
        "filler": models.CharField(max_length=84, null=True),
    },
    "pgbench_branches": {
        "bid": _int(primary_key=True),
        "bbalance": _int(),
        "filler": models.CharField(max_length=88, null=True),
    },
    "pgbench_tellers": {
        "tid": _int(primary_key=True),
        "bid": _int(),
        "tbalance": _int(),
        "filler": models.CharField(max_length=84, null=True),
    },
    "pgbench_history": {
        "id": models.BigAutoField(primary_key=True),
        "tid": _int(),
        "bid": _int(),
        "aid": _int(),
        "delta": _int(),
        "mtime": models.DateTimeField(null=True),
        "filler": models.CharField(max_length=22, null=True),
    },
}


class _Tpcb(models.Model):
    class Meta:
        abstract = True
        app_label = "benchapp"


def _tpcb_model(table: str, variant: str) -> type[models.Model]:
    fields = {name: field.clone() for name, field in _TPCB_FIELDS[table].items()}
    return _tracked(_model(_camel(f"{table}_{variant}"), table, _Tpcb, fields), variant)


#: pgbench's tables in each pghistory variant's TPC-B database, by variant.
TPCB_MODELS = {
    variant: [_tpcb_model(table, variant) for table in TPCB_TABLES] for variant in PGHISTORY_LEVELS
}

#: pgbench's tables in auditrum's TPC-B database (registered in ``audit.py``).
AUDITRUM_TPCB_MODELS = [
    _model(
        _camel(f"{table}_{AUDITRUM}"),
        table,
        _Tpcb,
        {name: field.clone() for name, field in _TPCB_FIELDS[table].items()},
    )
    for table in TPCB_TABLES
]
