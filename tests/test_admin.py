"""The audit admin: registered for the active layout, filters and search that use the
indexes, a detail page with the diff, the per-object history, and no write for anyone."""

from __future__ import annotations

import datetime as dt
import re
import threading
import types
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import path, reverse
from library.admin import BookAdmin
from library.models import Book
from shop.admin import CustomerAdmin, OrderAdmin
from shop.models import Customer, Order

from django_partitioned_audit import admin as audit_admin
from django_partitioned_audit.checks import check_settings
from django_partitioned_audit.context import audit_context
from django_partitioned_audit.models import AdvancedAuditEntry, Operation, SimpleAuditEntry
from tests.helpers import empty_trails
from tests.test_read_api import context_probes, explain, reading_scans


@pytest.fixture
def site(layout: str, settings: Any) -> admin.AdminSite:
    """An admin site of its own, built for the layout under test, as the project's URLconf."""
    site = admin.AdminSite(name="admin")
    audit_admin.register(site)
    site.register(Book, BookAdmin)
    site.register(Customer, CustomerAdmin)
    site.register(Order, OrderAdmin)
    urls = types.ModuleType("audit_admin_test_urls")
    urls.urlpatterns = [path("admin/", site.urls)]  # type: ignore[attr-defined]
    settings.ROOT_URLCONF = urls
    return site


DIFF_ROW = re.compile(
    r'<th scope="row">([^<]*)</th><td class="dpa-old"[^>]*>([^<]*)</td><td class="dpa-new"[^>]*>([^<]*)</td>'
)


def diff(html: str) -> list[tuple[str, str, str]]:
    """The (field, old, new) rows of the diff tables in a page."""
    return DIFF_ROW.findall(html)


def entries_url(read_model: Any, view: str = "changelist", *args: Any) -> str:
    return reverse(f"admin:django_partitioned_audit_{read_model._meta.model_name}_{view}", args=args)


def listed(response: Any) -> list[Any]:
    assert response.status_code == 200, response.status_code
    return list(response.context["cl"].result_list)


@pytest.fixture
def book_story(layout: str) -> Book:
    """A book written by alice in a request, renamed by bob, and another one by a job."""
    with audit_context(user_id=7, username="alice"):
        book = Book.objects.create(isbn="111", title="Dune")
    with audit_context(user_id=8, username="bob"):
        book.title = "Dune Messiah"
        book.save()
    with audit_context(job="import", job_id="j-1"):
        Book.objects.create(isbn="222", title="Emma")
    return book


def test_the_active_layouts_model_is_registered_and_a_setting_turns_it_off(settings, db):
    assert admin.site.is_registered(SimpleAuditEntry)  # the test project's default layout
    assert audit_admin.register(admin.AdminSite()) is SimpleAuditEntry
    settings.DPA_AUDIT_TABLE_MANAGER = (
        "django_partitioned_audit.audit_table.advanced_audit_table_manager.AdvancedAuditTableManager"
    )
    other = admin.AdminSite()
    assert audit_admin.register(other) is AdvancedAuditEntry
    assert not other.is_registered(SimpleAuditEntry)
    assert audit_admin.register(other) is None  # once only
    settings.DPA_ADMIN = False
    off = admin.AdminSite()
    assert audit_admin.register(off) is None and off._registry == {}


def test_a_wrong_admin_setting_is_reported(settings):
    settings.DPA_ADMIN = "yes"
    errors = [e for e in check_settings() if e.id == "partitioned_audit.E010"]
    assert len(errors) == 1 and "DPA_ADMIN must be True or False, got 'yes'" in errors[0].msg


def test_the_list_filters_by_table_operation_user_and_time(site, read_model, book_story, admin_client):
    url = entries_url(read_model)
    everything = listed(admin_client.get(url))
    assert [(e.object_pk, e.get_operation().name) for e in everything] == [
        ("222", "INSERT"),
        ("111", "UPDATE"),
        ("111", "INSERT"),
    ]  # newest first
    assert [e.object_pk for e in listed(admin_client.get(url, {"operation": "U"}))] == ["111"]
    assert {e.object_pk for e in listed(admin_client.get(url, {"model": "library.book"}))} == {"111", "222"}
    assert listed(admin_client.get(url, {"model": "shop.order"})) == []
    assert [e.object_pk for e in listed(admin_client.get(url, {"user": "alice"}))] == ["111"]
    assert [e.get_operation().name for e in listed(admin_client.get(url, {"user": "8"}))] == ["UPDATE"]
    assert listed(admin_client.get(url, {"user": "nobody"})) == []
    time = read_model._time
    first = min(getattr(e, time) for e in everything)
    assert len(listed(admin_client.get(url, {f"{time}__gte": first.isoformat()}))) == 3
    assert listed(admin_client.get(url, {f"{time}__lt": first.isoformat()})) == []
    page = admin_client.get(url, {"operation": "U"}).content.decode()
    assert 'name="user"' in page and "By user (id or name)" in page  # the text filter is shown
    assert "bob" in page  # the user column


def test_search_finds_the_entries_of_one_key_through_the_object_index(
    site, read_model, book_story, admin_client
):
    found = listed(admin_client.get(entries_url(read_model), {"q": "222"}))
    assert [(e.object_pk, e.audit_context["job"]) for e in found] == [("222", "import")]
    assert listed(admin_client.get(entries_url(read_model), {"q": "333"})) == []
    model_admin = site._registry[read_model]
    queryset, _ = model_admin.get_search_results(None, read_model.objects.all(), "111")
    assert "Seq Scan" not in explain(queryset)
    # The scans that read entries go through the (table, key) index; an empty partition may
    # be walked down the event-id index instead, in the list's order: it reads nothing.
    # (Each row's context row is an index probe of the context table.)
    scans, plan = reading_scans(queryset)
    rows = [line for line in scans if line.strip() not in context_probes(plan)]
    assert rows and all("object_pk_idx" in line for line in rows), plan


def test_the_detail_page_shows_the_context_and_the_old_and_new_values(
    site, read_model, book_story, admin_client
):
    update = [e for e in read_model.objects.filter_object(Book, "111") if e.is_update()][0]
    page = admin_client.get(entries_url(read_model, "change", update.pk)).content.decode()
    assert diff(page) == [("title", "Dune", "Dune Messiah")]  # the unchanged isbn is not listed
    assert '<th scope="row">username</th><td>bob</td>' in page
    insert = read_model.objects.filter_object(Book, "222").get()
    page = admin_client.get(entries_url(read_model, "change", insert.pk)).content.decode()
    assert sorted(diff(page)) == [("isbn", "—", "222"), ("title", "—", "Emma")]
    assert '<th scope="row">job_id</th><td>j-1</td>' in page


def test_the_login_role_is_shown_beside_the_context(site, read_model, book_story, admin_client):
    """The context is what the writer declared; the database role is what logged in: the
    list, an entry's page and the object's audit history show both."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT session_user::text")
        (login,) = cursor.fetchone()
    update = [e for e in read_model.objects.filter_object(Book, "111") if e.is_update()][0]
    assert update.session_user_name == login
    page = admin_client.get(entries_url(read_model, "change", update.pk)).content.decode()
    assert re.search(r"Database role:</label>\s*<div class=\"readonly\">" + re.escape(login), page), page
    listing = admin_client.get(entries_url(read_model)).content.decode()
    assert "Database role" in listing and f'<td class="field-login_role">{login}</td>' in listing
    book = Book.objects.get(isbn="111")
    history = admin_client.get(reverse("admin:library_book_audit_history", args=[book.pk])).content.decode()
    assert '<th scope="col">database role</th>' in history and f"<td>{login}</td>" in history
    (version, *_) = read_model.objects.history(book)
    assert version.session_user == login and version.context is not None


def test_nobody_adds_changes_or_deletes_an_entry_through_the_admin(
    site, read_model, book_story, admin_client
):
    before = [(e.pk, e.get_row_data()) for e in read_model.objects.order_by("pk")]
    entry = read_model.objects.order_by("pk").first()
    assert admin_client.get(entries_url(read_model, "add")).status_code == 403
    assert admin_client.post(entries_url(read_model, "add"), {"object_pk": "x"}).status_code == 403
    change = entries_url(read_model, "change", entry.pk)
    page = admin_client.get(change).content.decode()
    assert 'name="_save"' not in page and "deletelink" not in page  # a view, not a form
    assert admin_client.post(change, {"object_pk": "forged"}).status_code == 403
    delete = entries_url(read_model, "delete", entry.pk)
    assert admin_client.get(delete).status_code == 403
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    changelist = admin_client.get(entries_url(read_model))
    assert "delete_selected" not in changelist.content.decode()
    admin_client.post(
        entries_url(read_model),
        {"action": "delete_selected", "_selected_action": [entry.pk], "post": "yes", "index": 0},
    )
    assert [(e.pk, e.get_row_data()) for e in read_model.objects.order_by("pk")] == before


def test_the_change_page_links_to_the_history_which_shows_each_diff(
    site, read_model, book_story, admin_client
):
    change = admin_client.get(reverse("admin:library_book_change", args=["111"])).content.decode()
    history_url = reverse("admin:library_book_audit_history", args=["111"])
    assert f'href="{history_url}"' in change and "Audit history" in change
    page = admin_client.get(history_url).content.decode()
    rows = page.split('class="dpa-version"')[1:]
    assert len(rows) == 2 and "INSERT" in rows[0] and "UPDATE" in rows[1]
    assert "alice" in rows[0] and "bob" in rows[1]
    assert diff(rows[1]) == [("title", "Dune", "Dune Messiah")]
    assert sorted(diff(rows[0])) == [("isbn", "—", "111"), ("title", "—", "Dune")]
    assert "Emma" not in page  # another object's history


def test_the_history_pages_by_keyset(site, read_model, admin_client, monkeypatch):
    monkeypatch.setattr(BookAdmin, "audit_history_per_page", 2)
    book = Book.objects.create(isbn="5", title="v0")
    for n in range(1, 5):
        book.title = f"v{n}"
        book.save()
    url = reverse("admin:library_book_audit_history", args=["5"])
    titles, next_url, pages = [], url, 0
    while next_url:
        response = admin_client.get(next_url)
        pages += 1
        titles += [new for field, _, new in diff(response.content.decode()) if field == "title"]
        after = response.context["next_after"]
        next_url = f"{url}?after={after}" if after else None
    assert pages == 3 and titles == ["v0", "v1", "v2", "v3", "v4"]
    assert admin_client.get(url, {"after": "x"}).status_code == 404
    missing = admin_client.get(reverse("admin:library_book_audit_history", args=["nope"]))
    assert missing.status_code == 302  # the admin's "does not exist" redirect


def test_the_history_needs_view_permission_on_the_object_and_on_the_entries(
    site, read_model, book_story, client
):
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(staff)
    history = reverse("admin:library_book_audit_history", args=["111"])
    assert client.get(entries_url(read_model)).status_code == 403
    assert client.get(history).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_book"))
    staff = User.objects.get(pk=staff.pk)  # permissions are cached on the instance
    client.force_login(staff)
    assert client.get(history).status_code == 403  # not yet allowed to read the trail
    staff.user_permissions.add(Permission.objects.get(codename=f"view_{read_model._meta.model_name}"))
    client.force_login(User.objects.get(pk=staff.pk))
    assert client.get(history).status_code == 200
    assert client.get(entries_url(read_model)).status_code == 200
    assert client.get(entries_url(read_model, "add")).status_code == 403


def test_the_list_counts_a_large_trail_by_the_planners_estimate(site, read_model, book_story, monkeypatch):
    queryset = read_model.objects.order_by("-pk")
    # What rolled-back tests left in the partitions' files may make the planner expect more.
    monkeypatch.setattr(audit_admin.EstimatedCountPaginator, "exact_below", 10**9)
    exact = audit_admin.EstimatedCountPaginator(queryset, 50)
    with CaptureQueriesContext(connection) as queries:
        assert exact.count == 3
    assert any("COUNT(*)" in q["sql"] for q in queries.captured_queries)
    monkeypatch.setattr(audit_admin.EstimatedCountPaginator, "exact_below", 0)
    estimated = audit_admin.EstimatedCountPaginator(queryset, 50)
    with CaptureQueriesContext(connection) as queries:
        assert isinstance(estimated.count, int) and estimated.count >= 1
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["EXPLAIN"]
    assert audit_admin.EstimatedCountPaginator(read_model.objects.filter(pk__in=[]), 50).count == 0


def versions_of(page: str) -> list[str]:
    """The rows of the history table, one string each."""
    return page.split('class="dpa-version"')[1:]


@pytest.fixture
def deleted_order(layout: str) -> Order:
    """An order placed, paid and deleted: its history outlives it."""
    order = Order.objects.create(customer=Customer.objects.create(name="Ann"), total=Decimal("19.90"))
    order.status = "paid"
    order.total = Decimal("24.90")
    order.save()
    Order.objects.filter(pk=order.pk).delete()
    return order


def test_the_history_of_a_deleted_object_is_shown(site, read_model, deleted_order, admin_client):
    url = reverse("admin:shop_order_audit_history", args=[deleted_order.pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    page = response.content.decode()
    rows = versions_of(page)
    assert [r.split("<td>")[2].split("</td>")[0] for r in rows] == ["INSERT", "UPDATE", "DELETE"]
    assert diff(rows[1]) == [("total", "19.90", "24.90"), ("status", "new", "paid")]
    assert f"<h1>Audit history: order {deleted_order.pk} (deleted)</h1>" in page
    change = reverse("admin:shop_order_change", args=[deleted_order.pk])
    assert f'href="{change}"' not in page  # no change page to go to any more
    never = admin_client.get(reverse("admin:shop_order_audit_history", args=[deleted_order.pk + 1]))
    assert never.status_code == 302  # neither the object nor any trace of it: as before


def test_the_history_of_a_deleted_object_needs_the_same_permissions(site, read_model, deleted_order, client):
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    url = reverse("admin:shop_order_audit_history", args=[deleted_order.pk])
    client.force_login(staff)
    assert client.get(url).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_order"))
    client.force_login(User.objects.get(pk=staff.pk))
    assert client.get(url).status_code == 403  # not yet allowed to read the trail
    staff.user_permissions.add(Permission.objects.get(codename=f"view_{read_model._meta.model_name}"))
    client.force_login(User.objects.get(pk=staff.pk))
    assert client.get(url).status_code == 200
    client.logout()
    assert client.get(url).status_code == 302  # to the login page
    assert client.get(url)["Location"].startswith(reverse("admin:login"))


def test_each_entry_links_to_its_objects_history_and_while_it_exists_its_change_page(
    site, read_model, admin_client
):
    kept = Order.objects.create(customer=Customer.objects.create(name="Ann"))
    gone = Order.objects.create(customer=kept.customer)
    Order.objects.filter(pk=gone.pk).delete()
    history = {o.pk: reverse("admin:shop_order_audit_history", args=[o.pk]) for o in (kept, gone)}
    change = {o.pk: reverse("admin:shop_order_change", args=[o.pk]) for o in (kept, gone)}
    for order in (kept, gone):
        entry = read_model.objects.filter_object(Order, order.pk).order_by("pk").first()
        page = admin_client.get(entries_url(read_model, "change", entry.pk)).content.decode()
        assert f'href="{history[order.pk]}"' in page
        assert (f'href="{change[order.pk]}"' in page) is (order is kept)
    response = admin_client.get(entries_url(read_model), {"model": "shop.order"})
    listed(response)
    page = response.content.decode()
    assert all(f'href="{url}"' in page for url in history.values())
    assert f'href="{change[kept.pk]}"' in page and f'href="{change[gone.pk]}"' not in page


def test_the_entry_page_is_titled_with_what_happened_to_which_object_and_when(site, read_model, admin_client):
    order = Order.objects.create(customer=Customer.objects.create(name="Ann"))
    order.status = "paid"
    order.save()
    update = read_model.objects.filter_object(Order, order.pk).filter_operation(Operation.UPDATE).get()
    when = getattr(update, read_model._time).astimezone(dt.UTC)  # the project's TIME_ZONE
    title = f"UPDATE of shop.Order {order.pk}, {when:%Y-%m-%d %H:%M:%S}"
    assert str(update) == title
    page = admin_client.get(entries_url(read_model, "change", update.pk)).content.decode()
    assert f"<h1>{title}</h1>" in page and f"<title>{title} |" in page
    assert "SimpleAuditEntry" not in page and "AdvancedAuditEntry" not in page


def test_the_admin_shows_values_typed_by_the_models_fields(site, read_model, admin_client):
    placed = dt.datetime(2026, 12, 6, 9, 24, 20, tzinfo=dt.UTC)
    order = Order.objects.create(
        customer=Customer.objects.create(name="Ann"), total=Decimal("19.90"), placed_at=placed
    )
    order.total = Decimal("20.00")
    order.save()
    update = read_model.objects.filter_object(Order, order.pk).filter_operation(Operation.UPDATE).get()
    page = admin_client.get(entries_url(read_model, "change", update.pk)).content.decode()
    assert diff(page) == [("total", "19.90", "20.00")]
    history = admin_client.get(reverse("admin:shop_order_audit_history", args=[order.pk])).content.decode()
    insert, changed = versions_of(history)
    assert ("total", "—", "19.90") in diff(insert)
    assert ("placed_at", "—", "2026-12-06 09:24:20+00:00") in diff(insert)
    assert diff(changed) == [("total", "19.90", "20.00")]


def test_a_save_that_changed_nothing_shows_as_such(site, read_model, layout, admin_client):
    book = Book.objects.create(isbn="333", title="Dune")
    book.save()  # recorded by the simple layout only: the advanced one skips it
    page = admin_client.get(reverse("admin:library_book_audit_history", args=["333"])).content.decode()
    rows = versions_of(page)
    unchanged = (
        '<p class="dpa-unchanged" style="color: var(--body-quiet-color, #666);">saved, no field changed</p>'
    )
    if layout == "simple":
        assert len(rows) == 2 and diff(rows[1]) == [] and unchanged in rows[1]
        update = read_model.objects.filter_object(Book, "333").filter_operation(Operation.UPDATE).get()
        detail = admin_client.get(entries_url(read_model, "change", update.pk)).content.decode()
        assert unchanged in detail
    else:
        assert len(rows) == 1
    assert unchanged not in rows[0]


@pytest.fixture
def committed_site(settings: Any, django_db_blocker: Any) -> Iterator[admin.AdminSite]:
    """The admin site of the project's layout (the simple one, as migrated), for a test that
    commits its writes: the trail starts empty and is emptied again after."""
    site = admin.AdminSite(name="admin")
    audit_admin.register(site)
    urls = types.ModuleType("audit_admin_committed_urls")
    urls.urlpatterns = [path("admin/", site.urls)]  # type: ignore[attr-defined]
    settings.ROOT_URLCONF = urls
    with django_db_blocker.unblock():
        empty_trails()
    yield site
    with django_db_blocker.unblock():
        empty_trails()


def walk_the_list(client: Any, url: str, params: dict[str, Any]) -> list[Any]:
    """Every entry the list shows from its first page on, going to the next numbered page,
    else to "Older entries", until neither is offered (or for 50 pages: links going round)."""
    shown, response = [], client.get(url, params)
    for _ in range(50):
        shown += listed(response)
        cl = response.context["cl"]
        if cl.page_num < cl.paginator.num_pages:
            response = client.get(url + cl.get_query_string({"p": cl.page_num + 1}))
        elif cl.older_url:
            response = client.get(url + cl.older_url)
            assert response.context["cl"].newest_url == cl.get_query_string({}, ["before", "p"])
        else:
            break
    return shown


@pytest.mark.django_db(transaction=True)
def test_older_entries_of_a_user_follow_the_lists_order_by_time_then_id(
    committed_site, admin_client, monkeypatch
):
    """An entry's time is its transaction's start, its id is taken when it is written: a long
    transaction that started before another but wrote after it has the older times and the
    higher ids. The user filter lists by time then id, and its "Older entries" links go on in
    that order: every entry of the user once, none skipped, none twice."""
    monkeypatch.setattr(audit_admin.AuditEntryAdmin, "list_per_page", 2)
    monkeypatch.setattr(audit_admin.EstimatedCountPaginator, "max_pages", 1)

    def write(isbn: str, user_id: int = 7) -> None:
        with audit_context(user_id=user_id, username=f"user{user_id}"):
            Book.objects.create(isbn=isbn, title=isbn)

    def later_transactions() -> None:
        try:
            write("b1")
            write("b2")
            write("b3", user_id=8)
        finally:
            connection.close()

    write("first")
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT now()")  # the long transaction starts: its time is taken
        thread = threading.Thread(target=later_transactions)
        thread.start()
        thread.join()  # two later transactions wrote and committed meanwhile
        for isbn in ("a1", "a2", "a3"):
            write(isbn)
    write("last")
    entries = [e for e in SimpleAuditEntry.objects.all() if (e.audit_context or {}).get("user_id") == 7]
    by_time = sorted(entries, key=lambda e: (e.audit_entry_created, e.pk), reverse=True)
    assert [e.object_pk for e in by_time] == ["last", "b2", "b1", "a3", "a2", "a1", "first"]
    assert by_time != sorted(entries, key=lambda e: e.pk, reverse=True)  # the orders differ

    url = entries_url(SimpleAuditEntry)
    shown = walk_the_list(admin_client, url, {"user": "7"})
    assert [e.object_pk for e in shown] == [e.object_pk for e in by_time]
    assert [e.pk for e in shown] == [e.pk for e in by_time]
    # A window of the user's entries for a filter no index serves: in the same order.
    monkeypatch.setattr(audit_admin.AuditEntryAdmin, "list_scan", 3)
    shown = walk_the_list(admin_client, url, {"user": "7", "operation": "I"})
    assert [e.pk for e in shown] == [e.pk for e in by_time]


@pytest.mark.parametrize("user", [None, "7"])
def test_older_entries_are_offered_only_in_the_lists_own_order(
    site, read_model, admin_client, monkeypatch, user
):
    """ "Older entries" goes on from a page's last entry in the list's order (newest id; a
    user's newest time then id). Sorted by a column (``?o=``), the page's last entry is not
    where the rest starts: the link is not offered, and no entry is listed twice."""
    monkeypatch.setattr(audit_admin.AuditEntryAdmin, "list_per_page", 2)
    monkeypatch.setattr(audit_admin.EstimatedCountPaginator, "max_pages", 1)
    for isbn in ("s1", "s2", "s3", "s4", "s5"):
        with audit_context(user_id=7):
            Book.objects.create(isbn=isbn, title=isbn)
    url = entries_url(read_model)
    params = {"user": user} if user else {}
    newest = walk_the_list(admin_client, url, params)
    assert [e.object_pk for e in newest] == ["s5", "s4", "s3", "s2", "s1"]  # by the link
    oldest = walk_the_list(admin_client, url, {**params, "o": "0"})  # the id column, ascending
    assert [e.object_pk for e in oldest] == ["s1", "s2"]
    assert listed(admin_client.get(url, {**params, "o": "0"})) and (
        admin_client.get(url, {**params, "o": "0"}).context["cl"].older_url is None
    )
    # Sorted newest id first: the list's own order without the user filter, not with it.
    by_id = walk_the_list(admin_client, url, {**params, "o": "-0"})
    assert [e.object_pk for e in by_id] == (["s5", "s4"] if user else ["s5", "s4", "s3", "s2", "s1"])
