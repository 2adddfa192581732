"""ORM models over the benchmark tables; the tables and triggers are made by ``bench/run.py``."""

from __future__ import annotations

from django.db import models

from . import VARIANTS


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


def _row_model(variant: str) -> type[RowBase]:
    meta = type("Meta", (), {"app_label": "benchapp", "managed": False, "db_table": f"orm_{variant}"})
    name = "OrmRow" + variant.title().replace("_", "")
    return type(name, (RowBase,), {"__module__": __name__, "Meta": meta})


ORM_MODELS = {variant: _row_model(variant) for variant in VARIANTS}


class HistoryRow(models.Model):
    """The audited table whose history is read among millions of audit rows."""

    amount = models.IntegerField()

    class Meta:
        app_label = "benchapp"
        managed = False
        db_table = "history_row"
