"""The 1.0.4 README quick start, step by step, on a fresh database, with either layout.

The clock is frozen for each run, on a day when ``create --extra-days=60`` has something left
to create after ``migrate`` and on one when it has nothing (2026-12-02: ``migrate`` made
December and January, and 60 days later is still January).
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings

from tests.calendar_days import first_of_next_month, monthly
from tests.conftest import MANAGERS
from tests.engine_db import scratch_database
from tests.frozen_manage import run_frozen


def manage(dbname: str, layout: str, now: dt.datetime, *args: str) -> str:
    result = run_frozen(
        now,
        *args,
        DATABASE_URL=settings.SERVER.url,  # the server of this run, embedded or not
        DPA_DB_NAME=dbname,
        DPA_AUDIT_TABLE_MANAGER=MANAGERS[layout],
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def rows_with(lines: list[str], status: str) -> list[str]:
    cells = [[cell.strip() for cell in line.split("|")[1:-1]] for line in lines if line.startswith("|")]
    return sorted(row[0] for row in cells if row[-1] == status)


@pytest.mark.parametrize("layout", ["simple", "advanced"])
@pytest.mark.parametrize(
    "now",
    [dt.datetime(2025, 1, 15, 9, tzinfo=dt.UTC), dt.datetime(2026, 12, 2, 9, tzinfo=dt.UTC)],
    ids=["something-to-create", "nothing-to-create"],
)
def test_readme_quick_start(layout, now):
    table = "audit_simple" if layout == "simple" else "logged_actions"
    today = now.date()
    made_by_migrate = monthly(table, today, first_of_next_month(today))
    wanted = monthly(table, today, today + dt.timedelta(days=60))
    with scratch_database() as dbname:
        # 2. migrate creates the partitioned table (and, in 2.0, this month's and next month's partitions).
        out = manage(dbname, layout, now, "migrate")
        assert "Applying django_partitioned_audit.0001_initial... OK" in out
        created = sorted(line.split()[2] for line in out.splitlines() if "Created partition" in line)
        assert created == made_by_migrate
        # 3. create --extra-days=60 prints 1.0.4's table and creates what is missing.
        out = manage(dbname, layout, now, "manage_partition_tables", "create", "--extra-days=60")
        lines = out.splitlines()
        assert lines[1].split() == ["|", "table_name", "|", "from_date", "|", "to_date", "|", "status", "|"]
        assert rows_with(lines, "✓ exists") == made_by_migrate
        missing = [name for name in wanted if name not in made_by_migrate]
        assert rows_with(lines, "✓ created") == missing  # the state after the run
        if missing:
            assert (
                lines[-1]
                == f"Created {len(missing)} partition(s); moved 0 row(s) out of the default partition."
            )
        else:
            assert lines[-1] == "All required partitions exist."
        # 4./5. registered models (shop, library) got triggers at migrate: writes are audited.
        out = manage(
            dbname,
            layout,
            now,
            "shell",
            "-c",
            "from library.models import Book; from django_partitioned_audit.models import "
            f"{'SimpleAuditEntry' if layout == 'simple' else 'AdvancedAuditEntry'} as E; "
            "b = Book.objects.create(isbn='1', title='t'); b.title = 'u'; b.save(); b.delete(); "
            "print(''.join('I' if e.is_insert() else 'U' if e.is_update() else 'D' if e.is_delete() else '?'"
            " for e in E.objects.filter_model(Book)))",
        )
        assert out.strip().splitlines()[-1] == "IUD"
        # migrate again changes nothing.
        assert "Created partition" not in manage(dbname, layout, now, "migrate")
