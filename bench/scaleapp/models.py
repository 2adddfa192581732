"""ORM models over the tables ``bench/scale.py`` creates (it makes them, not migrate)."""

from __future__ import annotations

from .fields import CustomerFields, ItemFields, OrderFields


class ScaleCustomer(CustomerFields):
    class Meta:
        managed = False
        db_table = "scale_customer"


class ScaleOrder(OrderFields):
    class Meta:
        managed = False
        db_table = "scale_order"


class ScaleItem(ItemFields):
    class Meta:
        managed = False
        db_table = "scale_item"
