"""The fields of the rows of each table ``bench/scale.py`` creates, as abstract models: the
app's models map them, and ``bench/benchapp`` tracks the same tables with django-pghistory
(``bench/scalebytes.py``) without this app installed.
"""

from __future__ import annotations

from django.db import models


class CustomerFields(models.Model):
    id = models.BigAutoField(primary_key=True)
    name = models.TextField()
    email = models.TextField()
    country = models.CharField(max_length=2)
    credit_limit = models.DecimalField(max_digits=12, decimal_places=2)
    created = models.DateTimeField()
    active = models.BooleanField()

    class Meta:
        abstract = True


class OrderFields(models.Model):
    id = models.BigAutoField(primary_key=True)
    customer_id = models.BigIntegerField()
    status = models.TextField()
    total = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    note = models.TextField()
    placed = models.DateTimeField()
    updated = models.DateTimeField()

    class Meta:
        abstract = True


class ItemFields(models.Model):
    id = models.BigAutoField(primary_key=True)
    order_id = models.BigIntegerField()
    sku = models.TextField()
    quantity = models.IntegerField()
    price = models.DecimalField(max_digits=10, decimal_places=2)

    class Meta:
        abstract = True


#: Each table of ``bench/scale.py`` and the fields of its rows.
TABLES: dict[str, type[models.Model]] = {
    "scale_customer": CustomerFields,
    "scale_order": OrderFields,
    "scale_item": ItemFields,
}
