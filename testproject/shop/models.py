import uuid

from django.contrib.postgres.fields import ArrayField
from django.db import models


class Customer(models.Model):
    """UUID primary key; ``password`` is masked in the audit trail."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    name = models.CharField(max_length=100)
    password = models.CharField(max_length=128, default="")

    def __str__(self) -> str:
        return self.name


class Order(models.Model):
    """Many column types, to check they survive the trip through the audit table."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="orders")
    total = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    status = models.CharField(max_length=20, default="new")
    quantity = models.IntegerField(null=True)
    data = models.JSONField(null=True)
    tags = ArrayField(models.CharField(max_length=20), default=list)
    placed_at = models.DateTimeField(null=True)
    blob = models.BinaryField(null=True)
