"""The archive from Django: history()/as_of() with archive=, the command, DPA_ARCHIVE_URL."""

from __future__ import annotations

import datetime as dt
import json

from django.core import checks
from library.models import Book

from django_partitioned_audit.context import audit_context
from django_partitioned_audit.maintenance import maintainer
from partitioned_audit import archive
from partitioned_audit.partitioning.ranges import PartitionInfo
from partitioned_audit.store import open_store
from tests.helpers import past_the_guard, sql

JAN = (dt.date(2001, 1, 1), dt.date(2001, 2, 1))
NOW = dt.datetime(2026, 3, 15, 12, tzinfo=dt.UTC)


def _old_versions(layout_name: str) -> tuple[Book, PartitionInfo]:
    """A book written three times, its first two versions (inside an audit context) moved
    into January 2001 with their context row (one transaction: one time)."""
    manager = maintainer()
    old = PartitionInfo.create(manager.layout.table, *JAN)
    manager.create([old])
    with audit_context(user_id=5, via="archive test"):
        book = Book.objects.create(isbn="arch-1", title="first")
        book.title = "second"
        book.save()
    time = manager.layout.time_column
    table = manager.layout.table
    past_the_guard(
        f"UPDATE {manager.layout.context_table} SET created = '2001-01-10 10:00+00'"
        f" WHERE context_id IN (SELECT audit_context_id FROM {table})"
    )
    past_the_guard(f"UPDATE {table} SET {time} = '2001-01-10 10:00+00'")
    book.title = "third"
    book.save()
    return book, old


def test_history_and_as_of_include_archived_versions(layout, read_model, tmp_path):
    book, old = _old_versions(layout)
    url = f"file://{tmp_path}"
    done = archive.archive(maintainer(), open_store(url), 30, drop=True, now=NOW)
    assert [a.dropped for a in done] == [True]
    live = read_model.objects.history(book).versions
    assert [v.row["title"] for v in live] == ["third"]
    versions = read_model.objects.history(book, archive=url).versions
    assert [v.row["title"] for v in versions] == ["first", "second", "third"]
    # The archived versions show who wrote them, as the live ones do.
    (login,) = sql("SELECT session_user::text")[0]
    assert [(v.context, v.session_user) for v in versions] == [
        ({"user_id": 5, "via": "archive test"}, login),
        ({"user_id": 5, "via": "archive test"}, login),
        (None, login),
    ]
    assert [v.changes.get("title") for v in versions] == [
        (None, "first"),
        ("first", "second"),
        ("second", "third"),
    ]
    # Keyset pages run across both tiers.
    first = read_model.objects.history(book, archive=url, limit=2)
    rest = read_model.objects.history(book, archive=url, after=first.next_after, limit=2)
    assert [v.row["title"] for v in [*first, *rest]] == ["first", "second", "third"]
    assert rest[0].changes == {"title": ("second", "third")}
    when = versions[1].time
    assert read_model.objects.as_of(Book, book.pk, when) is None
    then = read_model.objects.as_of(Book, book.pk, when, archive=url)
    assert then is not None and then.title == "second"


def test_a_malformed_archive_url_is_a_check_error(settings):
    settings.DPA_ARCHIVE_URL = "s3:/bucket"
    errors = [e for e in checks.run_checks() if e.id == "partitioned_audit.E010"]
    assert [e.msg for e in errors] == [
        "DPA_ARCHIVE_URL: an s3:// archive URL names a bucket, as in s3://bucket/prefix; got 's3:/bucket'."
        " See docs/settings.md."
    ]


def test_the_command_archives_with_the_setting_as_default(tmp_path):
    from django.conf import settings as django_settings

    from tests.engine_db import connect, scratch_database
    from tests.frozen_manage import run_frozen

    with scratch_database(background=True) as dbname:
        env = {
            "DATABASE_URL": django_settings.SERVER.url,
            "DPA_DB_NAME": dbname,
            "DPA_ARCHIVE_URL": f"file://{tmp_path}",
        }
        assert run_frozen(NOW, "migrate", "-v0", **env).returncode == 0
        conn = connect(dbname, autocommit=True)
        try:
            cur = conn.cursor()
            cur.execute(
                "CREATE TABLE audit_simple_20010101_20010201 PARTITION OF audit_simple"
                " FOR VALUES FROM ('2001-01-01 00:00+00') TO ('2001-02-01 00:00+00')"
            )
            cur.execute("COMMENT ON TABLE audit_simple_20010101_20010201 IS 'partitioned_audit partition'")
            cur.execute(
                "INSERT INTO audit_simple (object_table, object_payload, audit_txid_current, audit_operation,"
                " audit_entry_created) SELECT 'library_book', jsonb_build_object('id', g), 1, 'I',"
                " '2001-01-05'::timestamptz FROM generate_series(1, 10) g"
            )
        finally:
            conn.close()
        result = run_frozen(NOW, "manage_partition_tables", "archive", "--older-than", "30", "--json", **env)
        assert result.returncode == 0, result.stderr
        document = json.loads(result.stdout)
        assert [(p["name"], p["rows"], p["state"]) for p in document["partitions"]] == [
            ("audit_simple_20010101_20010201", 10, "archived")
        ]
        listed = run_frozen(NOW, "manage_partition_tables", "list", **env)
        assert f"file://{tmp_path}/audit_simple_20010101_20010201/manifest.json" in listed.stdout
        # Thirty days after January 2001 had not passed on 2001-02-15: nothing to archive then.
        early = run_frozen(
            dt.datetime(2001, 2, 15, tzinfo=dt.UTC),
            "manage_partition_tables",
            "archive",
            "--older-than",
            "30",
            "--json",
            **env,
        )
        assert early.returncode == 0, early.stderr
        assert json.loads(early.stdout)["partitions"] == []
        result = run_frozen(NOW, "manage_partition_tables", "verify", "--archive", **env)
        assert result.returncode == 0, result.stderr
        assert f"archive file://{tmp_path}: 1 partition(s), 10 row(s) checked" in result.stdout
