import django
from django.db import models


class Book(models.Model):
    """Primary key that is not ``id``."""

    isbn = models.CharField(max_length=13, primary_key=True)
    title = models.CharField(max_length=200)


class Weird(models.Model):
    """A table and columns whose names need quoting."""

    select = models.IntegerField(default=0, db_column="select")
    label = models.CharField(max_length=50, db_column="Label Mixed")

    class Meta:
        db_table = "Weird Name Table"


class Shelved(models.Model):
    """A table in another schema."""

    name = models.CharField(max_length=50)

    class Meta:
        db_table = 'library_ext"."shelved'


class Loan(models.Model):
    """Listed in ``audit_disabled``: never audited."""

    book = models.ForeignKey(Book, on_delete=models.CASCADE)


class Reading(models.Model):
    """Unmanaged, over a table partitioned by hand in two levels (migration 0003)."""

    id = models.BigIntegerField(primary_key=True)
    taken = models.DateField()
    value = models.IntegerField()

    class Meta:
        managed = False
        db_table = "library_reading"


if django.VERSION >= (5, 2):

    class Copy(models.Model):
        """A composite primary key (Django 5.2 and later)."""

        pk = models.CompositePrimaryKey("book_isbn", "number")
        book_isbn = models.CharField(max_length=13)
        number = models.IntegerField()
        condition = models.CharField(max_length=20, default="good")
