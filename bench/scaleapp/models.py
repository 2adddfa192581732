"""ORM models over the tables ``bench/scale.py`` creates (it makes them, not migrate)."""

from __future__ import annotations

from django.db import models


class ScaleCustomer(models.Model):
    name = models.TextField()
    email = models.TextField()
    country = models.CharField(max_length=2)
    credit_limit = models.DecimalField(max_digits=12, decimal_places=2)
    created = models.DateTimeField()
    active = models.BooleanField()

    class Meta:
        managed = False
        db_table = "scale_customer"


class ScaleOrder(models.Model):
    customer_id = models.BigIntegerField()
    status = models.TextField()
    total = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    note = models.TextField()
    placed = models.DateTimeField()
    updated = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "scale_order"


class ScaleItem(models.Model):
    order_id = models.BigIntegerField()
    sku = models.TextField()
    quantity = models.IntegerField()
    price = models.DecimalField(max_digits=10, decimal_places=2)

    class Meta:
        managed = False
        db_table = "scale_item"
