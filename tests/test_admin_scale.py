"""The audit admin on a trail larger than a page: what each page reads, read from the plans
PostgreSQL runs (EXPLAIN ANALYZE of every query a page sends), its deep pages and keyset
links, and a count that says when it is an estimate."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from library.models import Book

from django_partitioned_audit import admin as audit_admin
from django_partitioned_audit.context import audit_context
from partitioned_audit import get_layout
from tests.test_admin import entries_url, listed, site  # noqa: F401 - site is a fixture
from tests.test_read_api import nested_plans

pytestmark = pytest.mark.usefixtures("site")

#: Entries of the trail: far more than any page reads, in pages of 10; few enough that what
#: a rolled-back test leaves in the partitions' files does not change the next tests' plans.
TRAIL = 2_500


@pytest.fixture(autouse=True)
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages of 10 entries, and a count from the planner above 100 entries."""
    monkeypatch.setattr(audit_admin.AuditEntryAdmin, "list_per_page", 10)
    monkeypatch.setattr(audit_admin.EstimatedCountPaginator, "exact_below", 100)


@pytest.fixture
def trail(layout: str, read_model: Any) -> list[Book]:
    """TRAIL books inserted by one job, then a few renamed and deleted in requests, all
    through the capture; analyzed, so the planner knows how the entries spread over the
    tables and operations, as it does on a trail that autovacuum analyzes."""
    with audit_context(job="import"):
        books = Book.objects.bulk_create(
            [Book(isbn=str(i), title=f"Book {i}") for i in range(TRAIL)], batch_size=5000
        )
    with audit_context(user_id=7, username="alice"):
        for book in books[100:130]:
            book.title += " (2nd edition)"
            book.save()
        Book.objects.filter(isbn__in=[str(i) for i in range(200, 210)]).delete()
    with connection.cursor() as cursor:
        cursor.execute(f'ANALYZE "{get_layout(layout).table}"')
    return books


def reads(sql: str) -> tuple[dict[str, int], list[str]]:
    """Run ``sql`` under EXPLAIN ANALYZE: the audit rows (and index entries) each scan of an
    audit partition read, kept or filtered out, and the node types seen there. A query of
    the object function is read from the plan of the statement the function runs."""
    if OBJECT_FUNCTION.search(sql):
        plans = [found["Plan"] for found in nested_plans(sql, json_format=True)]
    else:
        plans = [_explained(sql)]
    read: dict[str, int] = {}
    kinds: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        relation = node.get("Relation Name", "")
        if re.fullmatch(r"(audit_simple|logged_actions)_(\d{8}_\d{8}|default)", relation):
            rows = node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
            rows += node.get("Rows Removed by Index Recheck", 0)
            read[relation] = read.get(relation, 0) + rows * node.get("Actual Loops", 1)
            kinds.append(node["Node Type"])
        for child in node.get("Plans", []):
            walk(child)

    for plan in plans:
        walk(plan)
    return read, kinds


#: A call of the object function (``filter_object()``, ``history()``).
OBJECT_FUNCTION = re.compile(r'"(audit_simple|logged_actions)_object_entries"\(')


def _explained(sql: str) -> dict[str, Any]:
    with connection.cursor() as cursor:
        # A table this small makes a sequential scan cheapest where an index serves at
        # scale: forbid it (as tests/test_read_api.py does), so one can only mean no index
        # serves the query.
        cursor.execute("SET enable_seqscan = off")
        try:
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)
            plan = cursor.fetchone()[0]
        finally:
            cursor.execute("RESET enable_seqscan")
    if isinstance(plan, str):
        plan = json.loads(plan)
    return plan[0]["Plan"]


def plan_nodes(sql: str) -> list[tuple[str, str]]:
    """(relation, node type) of every scan in the plan of ``sql`` (EXPLAIN, not run)."""
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    found: list[tuple[str, str]] = []

    def walk(node: dict[str, Any]) -> None:
        if "Relation Name" in node:
            found.append((node["Relation Name"], node["Node Type"]))
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return found


def page_reads(
    client: Any, url: str, params: dict[str, Any] | None = None
) -> list[tuple[str, int, list[str]]]:
    """(query, audit rows read, scan nodes) of each query that ``url`` runs on the trail."""
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, params or {})
    assert response.status_code == 200, (url, params, response.status_code)
    found = []
    for query in queries.captured_queries:
        sql = query["sql"]
        if sql.startswith("SELECT") and (
            re.search(r'"(audit_simple|logged_actions)(_keys|_context)?_view"', sql)
            or OBJECT_FUNCTION.search(sql)
        ):
            read, kinds = reads(sql)
            found.append((sql, sum(read.values()), kinds))
    assert found, f"{url} read no audit entry"
    return found


def test_no_page_reads_more_than_it_shows(read_model, trail, admin_client, monkeypatch):
    """Each page of the list, filtered or not, a search, an entry, an object's history: every
    query reads a bounded number of audit rows, whatever the trail's size; a filter that no
    index serves in the list's order looks at ``list_scan`` entries only."""
    monkeypatch.setattr(audit_admin.AuditEntryAdmin, "list_scan", 100)
    url = entries_url(read_model)
    time = read_model._time
    newest = read_model.objects.order_by("-pk").first()
    day = getattr(newest, time).replace(hour=0, minute=0, second=0, microsecond=0)
    pages = {
        "list": (url, {}),
        "list by table": (url, {"model": "library.book"}),
        "list by a table with no entry": (url, {"model": "shop.order"}),
        "list by operation": (url, {"operation": "D"}),
        "list by an operation with no entry": (url, {"operation": "T"}),
        "list by date": (url, {f"{time}__gte": day.isoformat()}),
        "key search": (url, {"q": "5000"}),
        "an entry": (entries_url(read_model, "change", newest.pk - 100), {}),
        "an object's history": (reverse("admin:library_book_audit_history", args=["110"]), {}),
        "page 20": (url, {"p": "20"}),
    }
    for name, (page, params) in pages.items():
        for sql, read, _ in page_reads(admin_client, page, params):
            # A sequential scan shows up on a partition the planner has no statistics for
            # (an empty one): it reads nothing, which the bound checks with the rest.
            # page 20 skips 19 pages of keys, on the index alone; every other query reads
            # about a page, or the scan window of a filter no index serves.
            bound = 20 * 10 + 10 if name == "page 20" else 100 + 12
            assert read <= bound, (name, read, sql)
    assert read_model.objects.count() > TRAIL


def test_a_page_skips_entries_without_building_them(read_model, trail, admin_client):
    """Django's OFFSET would build each skipped entry, its context included; the list reads
    the keys of a page alone first (no context subquery runs for a skipped entry)."""
    queries = page_reads(admin_client, entries_url(read_model), {"p": "20"})
    skipping = [(sql, read) for sql, read, _ in queries if " OFFSET 190" in sql]
    assert len(skipping) == 1
    sql, read = skipping[0]
    assert read >= 190  # it does walk past the skipped entries...
    assert "audit_context" not in sql and "SELECT" not in sql.split("FROM", 1)[0][6:]  # ...keys only
    shown = listed(admin_client.get(entries_url(read_model), {"p": "20"}))
    expected = list(read_model.objects.order_by("-pk")[190:200])
    assert [e.pk for e in shown] == [e.pk for e in expected]
    assert [e.audit_context for e in shown] == [e.audit_context for e in expected]


def test_the_bounds_read_the_keys_without_the_context(layout, read_model, trail, admin_client, monkeypatch):
    """The keys a page skips and the bound of a filter's window are read without the context
    join (PostgreSQL 15 keeps a LEFT JOIN to a partitioned table even when nothing of it is
    read): their plans scan no context partition, and the pages show what the read model
    shows."""
    monkeypatch.setattr(audit_admin.AuditEntryAdmin, "list_scan", 100)
    contexts = get_layout(layout).context_table
    url = entries_url(read_model)
    for params, bound in (({"p": "20"}, " OFFSET 190"), ({"operation": "U"}, " OFFSET 99")):
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(url, params)
        assert response.status_code == 200
        bounds = [q["sql"] for q in queries.captured_queries if bound in q["sql"]]
        assert len(bounds) == 1, (params, [q["sql"] for q in queries.captured_queries])
        nodes = plan_nodes(bounds[0])
        assert nodes and not [n for n in nodes if n[0].startswith(contexts)], (params, nodes)
    shown = listed(admin_client.get(url, {"operation": "U"}))
    floor = read_model.objects.order_by("-pk").values_list("pk", flat=True)[99]
    expected = [e for e in read_model.objects.filter(pk__gte=floor).order_by("-pk") if e.is_update()][:10]
    assert [e.pk for e in shown] == [e.pk for e in expected]
    assert [e.audit_context for e in shown] == [e.audit_context for e in expected]


def test_the_pages_are_numbered_up_to_a_bound_then_older_entries_go_on(
    read_model, trail, admin_client, monkeypatch
):
    monkeypatch.setattr(audit_admin.EstimatedCountPaginator, "max_pages", 3)
    url = entries_url(read_model)
    newest_first = list(read_model.objects.order_by("-pk").values_list("pk", flat=True)[:40])
    response = admin_client.get(url, {"p": "3"})
    assert [e.pk for e in listed(response)] == newest_first[20:30]
    cl = response.context["cl"]
    assert cl.paginator.num_pages == 3
    assert admin_client.get(url, {"p": "4"}).status_code == 302  # no page 4: Django's error redirect
    assert cl.older_url == f"?before={newest_first[29]}"
    assert admin_client.get(url, {"p": "2"}).context["cl"].older_url is None  # only on the last page
    older = admin_client.get(url + cl.older_url)
    assert [e.pk for e in listed(older)] == newest_first[30:40]
    assert older.context["cl"].newest_url == "?"
    assert 'class="dpa-older"' in response.content.decode()


def test_a_filter_no_index_serves_looks_at_a_window_and_goes_on_older(
    read_model, trail, admin_client, monkeypatch
):
    """The deletes are among the newest entries, the inserts far below: a filter on the
    inserts finds nothing in a small window of the newest entries, says so, and its "Older
    entries" link reaches them."""
    monkeypatch.setattr(audit_admin.AuditEntryAdmin, "list_scan", 35)
    url = entries_url(read_model)
    deletes = listed(admin_client.get(url, {"operation": "D"}))
    assert sorted(e.object_pk for e in deletes) == [str(i) for i in range(200, 210)]
    response = admin_client.get(url, {"operation": "I"})
    assert listed(response) == []  # the 35 newest entries are 30 updates and 5 of the deletes
    page = response.content.decode()
    assert "this filter looks at 35 entries at a time" in page
    cl = response.context["cl"]
    floor = read_model.objects.order_by("-pk").values_list("pk", flat=True)[34]
    assert cl.older_url == f"?before={floor}&operation=I"
    older = admin_client.get(url + cl.older_url)
    inserted = listed(older)
    assert inserted and {e.get_operation().name for e in inserted} == {"INSERT"}
    assert all(e.pk < floor for e in inserted)


def test_a_bad_cursor_is_refused_as_django_refuses_a_bad_lookup(read_model, trail, admin_client):
    url = entries_url(read_model)
    assert admin_client.get(url, {"before": "yesterday"}).status_code == 302
    assert admin_client.get(url, {"before": "yesterday", "e": "1"}).status_code == 200  # the error page
    assert listed(admin_client.get(url, {"before": "1"})) == []


def test_the_count_says_when_it_is_an_estimate(read_model, trail, admin_client, monkeypatch):
    url = entries_url(read_model)
    monkeypatch.setattr(audit_admin.EstimatedCountPaginator, "exact_below", 10**12)
    exact = admin_client.get(url)
    page = exact.content.decode()
    count = read_model.objects.count()
    assert exact.context["cl"].result_count == count and not exact.context["cl"].count_estimated
    assert "about" not in page and "estimate" not in page
    assert re.search(rf'<span class="dpa-count">{count} \w+ audit entries</span>', page)
    monkeypatch.setattr(audit_admin.EstimatedCountPaginator, "exact_below", 0)
    response = admin_client.get(url)
    page = response.content.decode()
    cl = response.context["cl"]
    assert cl.count_estimated  # the planner's figure, whatever it is
    assert f"about {cl.result_count} entries (the planner's estimate)" in page
    assert f"about {cl.result_count} results, estimated" in page


def test_show_counts_is_not_offered(read_model, trail, admin_client):
    """Django 5's facets count every choice of every filter over the selection, a scan of the
    trail per page view: the audit list never offers them."""
    url = entries_url(read_model)
    assert "Show counts" not in admin_client.get(url).content.decode()
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(url, {"_facets": "True"})
    if hasattr(admin, "ShowFacets"):  # Django 5.0+: the parameter is ignored
        assert response.status_code == 200
    else:  # Django 4.2 has no facets: an unknown parameter, refused as Django refuses one
        assert response.status_code == 302
    assert not [q for q in queries.captured_queries if "FILTER (WHERE" in q["sql"]]


def test_the_user_filter_walks_the_user_index_newest_first(read_model, trail, admin_client):
    """The user filter lists a user's newest entries first, as ``filter_context(user_id=)
    .newest_first()`` does, and reads its page from the context table's user index walked
    backwards (newest first), not from both the user and the name index (their OR, which
    only a bitmap of every match could serve, then sorted)."""
    url = entries_url(read_model)
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(url, {"user": "7"})
    expected = list(read_model.objects.filter_context(user_id=7).newest_first()[:10])
    assert len(expected) == 10 and [e.pk for e in listed(response)] == [e.pk for e in expected]
    keys = [
        q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT") and "LIMIT 10" in q["sql"]
    ]
    assert len(keys) == 1, [q["sql"] for q in queries.captured_queries]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + keys[0])
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert re.search(r"Index Scan Backward using \w+_context_\w+_expr_created_idx", plan), plan
    assert "BitmapOr" not in plan, plan
    assert listed(admin_client.get(url, {"user": "alice"})) == listed(response)  # by name: the same entries


def test_older_entries_of_a_user_walk_the_user_index_from_the_cursors_time(
    read_model, trail, admin_client, monkeypatch
):
    """Under the user filter, "Older entries" carries the last entry's id, whose time the
    page reads by id: its keys are a walk down the user index that starts at that time (an
    index condition), then told apart from the cursor by (time, id), in the list's order."""
    monkeypatch.setattr(audit_admin.EstimatedCountPaginator, "max_pages", 1)
    url = entries_url(read_model)
    first = admin_client.get(url, {"user": "7"})
    expected = list(read_model.objects.filter_context(user_id=7).newest_first()[:20])
    cl = first.context["cl"]
    assert cl.older_url == f"?before={expected[9].pk}&user=7"
    with CaptureQueriesContext(connection) as queries:
        older = admin_client.get(url + cl.older_url)
    assert [e.pk for e in listed(older)] == [e.pk for e in expected[10:20]]
    assert older.context["cl"].newest_url == "?user=7"
    keys = [
        q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT") and "LIMIT 10" in q["sql"]
    ]
    assert len(keys) == 1, [q["sql"] for q in queries.captured_queries]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + keys[0])
        plan = "\n".join(row[0] for row in cursor.fetchall())
    walk = re.search(
        r"Index Scan Backward using \w+_context_\w+_expr_created_idx.*\n.*Index Cond: (.*)", plan
    )
    assert walk and "created <=" in walk.group(1), plan
    assert "BitmapOr" not in plan and not re.search(r"(^|-> +)Sort ", plan, re.MULTILINE), plan
    for sql, read, _ in page_reads(admin_client, url + cl.older_url):
        assert read <= 112, (read, sql)
    # A filter no index serves, under the user filter: a window of the user's entries, whose
    # floor is read down the user index and whose time bounds the page's walk.
    monkeypatch.setattr(audit_admin.AuditEntryAdmin, "list_scan", 15)
    response = admin_client.get(url, {"user": "7", "operation": "D"})
    cl = response.context["cl"]
    updates_first = list(read_model.objects.filter_context(user_id=7).newest_first())
    assert (
        cl.scan_floor == updates_first[14].pk
        and "15 of the user's entries at a time" in response.content.decode()
    )
    assert [e.pk for e in listed(response)] == [e.pk for e in updates_first[:15] if e.is_delete()]
    for sql, read, _ in page_reads(admin_client, url, {"user": "7", "operation": "D"}):
        assert read <= 112, (read, sql)
