"""Switching ``DPA_AUDIT_TABLE_MANAGER``: migrate says what became of the old table, its
partitions stay manageable, and one history reads both tables."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from library.models import Book

from django_partitioned_audit.context import audit_context
from django_partitioned_audit.models import AdvancedAuditEntry, SimpleAuditEntry
from tests.conftest import MANAGERS


def migrate_to(settings, layout: str) -> str:
    settings.DPA_AUDIT_TABLE_MANAGER = MANAGERS[layout]
    out = io.StringIO()
    call_command("migrate", verbosity=1, stdout=out)
    return out.getvalue()


def retitle(book: Book, title: str) -> None:
    book.title = title
    book.save()


def test_migrate_says_the_old_table_is_kept_unwritten_and_how_to_read_and_retire_it(settings, db):
    Book.objects.create(isbn="1", title="a")
    said = migrate_to(settings, "advanced")
    assert (
        "The simple layout's table public.audit_simple is kept, with its rows in 3 partition(s); "
        "nothing writes to it any more. Read it with SimpleAuditEntry"
    ) in said
    assert "manage_partition_tables drop --layout simple --older-than DAYS --yes" in said
    Book.objects.create(isbn="2", title="b")
    assert [e.object_pk for e in SimpleAuditEntry.objects.filter_model(Book)] == ["1"]
    assert [e.object_pk for e in AdvancedAuditEntry.objects.filter_model(Book)] == ["2"]
    again = io.StringIO()
    call_command("migrate", verbosity=1, stdout=again)
    assert "is kept" not in again.getvalue()  # said once, at the switch


def test_the_kept_tables_partitions_are_listed_and_never_extended(settings, db):
    migrate_to(settings, "advanced")
    out = io.StringIO()
    call_command("manage_partition_tables", "list", "--layout", "simple", stdout=out)
    assert "audit_simple_" in out.getvalue() and "logged_actions_" not in out.getvalue()
    with pytest.raises(CommandError, match="nothing writes to the simple layout's table"):
        call_command("manage_partition_tables", "create", "--layout", "simple", stdout=io.StringIO())
    out = io.StringIO()
    call_command("manage_partition_tables", "list", stdout=out)  # the active layout
    assert "logged_actions_" in out.getvalue()


def test_one_history_reads_both_tables_in_order_across_two_switches(settings, db):
    with audit_context(username="ann"):
        book = Book.objects.create(isbn="7", title="v1")
        retitle(book, "v2")
    migrate_to(settings, "advanced")
    with audit_context(username="bob"):
        retitle(book, "v3")
    migrate_to(settings, "simple")
    retitle(book, "v4")  # a simple UPDATE whose version before is in the advanced table

    for reader in (SimpleAuditEntry, AdvancedAuditEntry):
        page = reader.objects.history(book, all_layouts=True)
        assert page.next_after is None
        assert [(v.operation.name, v.changes.get("title")) for v in page.versions] == [
            ("INSERT", (None, "v1")),
            ("UPDATE", ("v1", "v2")),
            ("UPDATE", ("v2", "v3")),
            ("UPDATE", ("v3", "v4")),
        ]
        assert [type(v.entry) for v in page.versions] == [
            SimpleAuditEntry,
            SimpleAuditEntry,
            AdvancedAuditEntry,
            SimpleAuditEntry,
        ]
        assert [v.context and v.context["username"] for v in page.versions] == ["ann", "ann", "bob", None]
    assert len(SimpleAuditEntry.objects.history(book).versions) == 3  # one table only

    seen, after = [], None
    while True:
        page = AdvancedAuditEntry.objects.history(book, all_layouts=True, limit=1, after=after)
        seen += [v.changes["title"] for v in page.versions]
        if page.next_after is None:
            break
        assert isinstance(page.next_after, str)
        after = page.next_after
    assert seen == [(None, "v1"), ("v1", "v2"), ("v2", "v3"), ("v3", "v4")]


def test_a_history_cursor_that_is_not_one_is_refused(settings, db):
    book = Book.objects.create(isbn="8", title="x")
    for after in ("simple", "simple:x", "other:3", 5, "simple:1,"):
        with pytest.raises(ValueError, match="after must be"):
            SimpleAuditEntry.objects.history(book, all_layouts=True, after=after)
    with pytest.raises(ValueError, match="after must be"):
        SimpleAuditEntry.objects.history(book, after="simple:3")


def test_retention_drops_the_kept_tables_old_partitions_only(settings, db):
    import datetime as dt

    from django_partitioned_audit.maintenance import maintainer
    from partitioned_audit import SIMPLE
    from partitioned_audit.partitioning.ranges import PartitionInfo

    migrate_to(settings, "advanced")
    old = PartitionInfo.create(SIMPLE.table, dt.date(2020, 1, 1), dt.date(2020, 2, 1))
    maintainer(layout=SIMPLE).create([old])
    active = sorted(p.partition for p in maintainer().existing())
    out = io.StringIO()
    call_command(
        "manage_partition_tables", "drop", "--layout", "simple", "--older-than", "30", "--yes", stdout=out
    )
    kept = [p.partition for p in maintainer(layout=SIMPLE).existing()]
    assert old.partition not in kept and any(name.startswith("audit_simple_2") for name in kept)
    assert sorted(p.partition for p in maintainer().existing()) == active  # the active layout's untouched
