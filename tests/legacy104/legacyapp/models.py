from django.db import models


class Item(models.Model):
    name = models.CharField(max_length=50)
    qty = models.IntegerField(null=True)
    flag = models.BooleanField(default=False)
