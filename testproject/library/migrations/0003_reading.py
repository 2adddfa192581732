from django.db import migrations, models

# A table partitioned by hand, as RunSQL or django-postgres-extra make them, behind an
# unmanaged model.
TABLE = """
CREATE TABLE library_reading (
    id bigint NOT NULL,
    taken date NOT NULL,
    value integer NOT NULL,
    PRIMARY KEY (id, taken)
) PARTITION BY RANGE (taken);
CREATE TABLE library_reading_2024 PARTITION OF library_reading FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE library_reading_2025 PARTITION OF library_reading
    FOR VALUES FROM ('2025-01-01') TO ('2026-01-01') PARTITION BY RANGE (taken);
CREATE TABLE library_reading_2025_h1 PARTITION OF library_reading_2025 FOR VALUES FROM ('2025-01-01') TO ('2025-07-01');
CREATE TABLE library_reading_2025_h2 PARTITION OF library_reading_2025 FOR VALUES FROM ('2025-07-01') TO ('2026-01-01');
"""


class Migration(migrations.Migration):
    dependencies = [("library", "0002_copy")]

    operations = [
        migrations.RunSQL(TABLE, "DROP TABLE library_reading"),
        migrations.CreateModel(
            name="Reading",
            fields=[
                ("id", models.BigIntegerField(primary_key=True, serialize=False)),
                ("taken", models.DateField()),
                ("value", models.IntegerField()),
            ],
            options={"managed": False, "db_table": "library_reading"},
        ),
    ]
