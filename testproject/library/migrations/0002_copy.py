import django
from django.db import migrations, models

# CompositePrimaryKey exists from Django 5.2 on; on 4.2 this migration does nothing.
COPY = (
    [
        migrations.CreateModel(
            name="Copy",
            fields=[
                ("pk", models.CompositePrimaryKey("book_isbn", "number", blank=True, editable=False, primary_key=True, serialize=False)),
                ("book_isbn", models.CharField(max_length=13)),
                ("number", models.IntegerField()),
                ("condition", models.CharField(default="good", max_length=20)),
            ],
        )
    ]
    if django.VERSION >= (5, 2)
    else []
)


class Migration(migrations.Migration):
    dependencies = [("library", "0001_initial")]

    operations = COPY
