"""Undo in the admin: "Revert to this version" in an object's audit history, a confirmation
page with the diff it applies, "Deleted objects" with "Restore", and the audit history in
Django's own "History" button."""

from __future__ import annotations

import re
import types
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import path, reverse
from library.admin import BookAdmin
from library.models import Book
from shop.admin import OrderAdmin
from shop.models import Customer, Order

from django_partitioned_audit import admin as audit_admin
from django_partitioned_audit.context import audit_context
from tests.test_admin import diff, site, versions_of  # noqa: F401 - site is a fixture

REVERT = re.compile(r'<a href="([^"]*)" class="dpa-revert">([^<]*)</a>')


def revert_links(page: str) -> list[tuple[str, str]]:
    return REVERT.findall(page)


@pytest.fixture
def renamed_book(layout: str) -> Book:
    with audit_context(username="alice"):
        book = Book.objects.create(isbn="111", title="Dune")
    with audit_context(username="bob"):
        book.title = "Dune Messiah"
        book.save()
    return book


def revert_url(model: str, key: Any, event: int) -> str:
    return reverse(f"admin:{model}_audit_revert", args=[key, event])


def staff_with(client: Client, *codenames: str) -> User:
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(User.objects.get(pk=user.pk))
    return user


@pytest.mark.usefixtures("site")
def test_the_history_offers_a_revert_of_each_version_to_users_who_may_change_the_object(
    read_model, renamed_book, client
):
    insert, update = read_model.objects.filter_object(Book, "111").order_by("pk")
    history = reverse("admin:library_book_audit_history", args=["111"])
    staff_with(client, "view_book", f"view_{read_model._meta.model_name}")
    assert revert_links(client.get(history).content.decode()) == []
    assert client.get(revert_url("library_book", "111", insert.pk)).status_code == 403
    staff_with_change = User.objects.get(username="staff")
    staff_with_change.user_permissions.add(Permission.objects.get(codename="change_book"))
    client.force_login(User.objects.get(pk=staff_with_change.pk))
    assert revert_links(client.get(history).content.decode()) == [
        (revert_url("library_book", "111", insert.pk), "Revert to this version"),
        (revert_url("library_book", "111", update.pk), "Revert to this version"),
    ]
    staff_with_change.user_permissions.remove(
        Permission.objects.get(codename=f"view_{read_model._meta.model_name}")
    )
    client.force_login(User.objects.get(pk=staff_with_change.pk))
    assert client.get(revert_url("library_book", "111", insert.pk)).status_code == 403  # the trail is hidden


@pytest.mark.usefixtures("site")
def test_the_confirmation_shows_the_diff_and_a_post_reverts_audited_with_the_request(
    read_model, renamed_book, admin_user
):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    insert = read_model.objects.filter_object(Book, "111").order_by("pk").first()
    url = revert_url("library_book", "111", insert.pk)
    response = client.get(url)
    page = response.content.decode()
    assert response.status_code == 200
    assert diff(page) == [("title", "Dune Messiah", "Dune")]
    assert 'class="default dpa-revert-confirm"' in page and "csrfmiddlewaretoken" in page
    assert client.post(url).status_code == 403  # no CSRF token
    assert Book.objects.get(pk="111").title == "Dune Messiah"
    token = response.cookies["csrftoken"].value
    done = client.post(url, {"csrfmiddlewaretoken": token}, follow=True)
    assert done.redirect_chain == [(reverse("admin:library_book_change", args=["111"]), 302)]
    assert [str(m) for m in done.context["messages"]] == [
        f"The book “Book object (111)” was reverted to its version of "
        f"{getattr(insert, read_model._time):%Y-%m-%d %H:%M:%S}."
    ]
    assert Book.objects.get(pk="111").title == "Dune"
    last = read_model.objects.filter_object(Book, "111").order_by("pk").last()
    assert last.is_update() and last.audit_context["revert_of"] == insert.pk
    assert last.audit_context["username"] == admin_user.username and last.audit_context["method"] == "POST"


@pytest.mark.usefixtures("site")
def test_a_refused_revert_says_why_and_offers_no_form(read_model, layout, admin_client):
    from tests.helpers import sql

    sql('CREATE UNIQUE INDEX "book_title_only_in_db" ON library_book (title)')
    Book.objects.create(isbn="d1", title="Dune")
    Book.objects.filter(pk="d1").update(title="Emma")
    Book.objects.create(isbn="d2", title="Dune")
    insert = read_model.objects.filter_object(Book, "d1").order_by("pk").first()
    url = revert_url("library_book", "d1", insert.pk)
    # Only the database knows this constraint: the GET cannot tell, the POST finds out.
    assert 'class="default dpa-revert-confirm"' in admin_client.get(url).content.decode()
    response = admin_client.post(url)
    assert response.status_code == 200
    page = response.content.decode()
    assert (
        f'<p class="errornote dpa-revert-error">Cannot revert library.Book d1 to event {insert.pk}: the database '
        "refused the write (constraint book_title_only_in_db): duplicate key value violates unique constraint "
        "&quot;book_title_only_in_db&quot; DETAIL:  Key (title)=(Dune) already exists.</p>"
    ) in page
    assert 'class="default dpa-revert-confirm"' not in page
    assert Book.objects.get(pk="d1").title == "Emma"
    other = read_model.objects.filter_object(Book, "d2").get()
    wrong = admin_client.get(revert_url("library_book", "d1", other.pk)).content.decode()
    assert (
        f"Cannot revert library.Book d1 to event {other.pk}: that event is a change of public.library_book d2, "
        "not of this object."
    ) in wrong
    assert admin_client.get(revert_url("library_book", "d1", 10**12)).status_code == 404


@pytest.fixture
def deleted_orders(layout: str) -> list[Order]:
    ann = Customer.objects.create(name="Ann")
    orders = [Order.objects.create(customer=ann, status=f"s{n}") for n in range(3)]
    Order.objects.filter(pk__in=[orders[0].pk, orders[2].pk]).delete()
    return orders


@pytest.mark.usefixtures("site")
def test_deleted_objects_are_listed_and_restored_by_users_who_may_add(read_model, deleted_orders, client):
    gone = [deleted_orders[0], deleted_orders[2]]
    listing = reverse("admin:shop_order_audit_deleted")
    staff_with(client, "view_order", f"view_{read_model._meta.model_name}", "change_order")
    changelist = client.get(reverse("admin:shop_order_changelist")).content.decode()
    assert f'<a href="{listing}" class="dpa-deleted-objects">Deleted objects</a>' in changelist
    page = client.get(listing).content.decode()
    rows = page.split('class="dpa-deleted-object"')[1:]
    assert [r.split("<td>")[1].split("</td>")[0] for r in rows] == [str(o.pk) for o in gone]
    assert f"customer={deleted_orders[0].customer_id}, total=0.00, status=s0, quantity=—" in rows[0]
    assert "dpa-restore" not in page
    delete = read_model.objects.filter_object(Order, gone[0].pk).order_by("pk").last()
    restore = revert_url("shop_order", gone[0].pk, delete.pk)
    assert client.get(restore).status_code == 403  # a restore takes the add permission
    User.objects.get(username="staff").user_permissions.add(Permission.objects.get(codename="add_order"))
    client.force_login(User.objects.get(username="staff"))
    page = client.get(listing).content.decode()
    assert f'<a href="{restore}" class="dpa-restore">Restore</a>' in page
    confirmation = client.get(restore).content.decode()
    assert ("status", "—", "s0") in diff(confirmation)
    assert "Yes, restore" in confirmation
    done = client.post(restore, follow=True)
    assert done.redirect_chain == [(reverse("admin:shop_order_change", args=[gone[0].pk]), 302)]
    assert Order.objects.get(pk=gone[0].pk).status == "s0"
    page = client.get(listing).content.decode()
    assert len(page.split('class="dpa-deleted-object"')[1:]) == 1
    history = client.get(reverse("admin:shop_order_audit_history", args=[gone[1].pk])).content.decode()
    assert [label for _, label in revert_links(history)] == ["Restore this version", "Restore this version"]


@pytest.mark.usefixtures("site")
def test_deleted_objects_take_the_view_permissions_and_page_by_key(
    read_model, deleted_orders, client, monkeypatch
):
    listing = reverse("admin:shop_order_audit_deleted")
    staff_with(client, "view_order")
    assert client.get(listing).status_code == 403  # not allowed to read the trail
    monkeypatch.setattr(OrderAdmin, "audit_deleted_per_page", 1)
    User.objects.get(username="staff").user_permissions.add(
        Permission.objects.get(codename=f"view_{read_model._meta.model_name}")
    )
    client.force_login(User.objects.get(username="staff"))
    first = client.get(listing)
    assert first.context["next_after"] == str(deleted_orders[0].pk)
    second = client.get(listing, {"after": first.context["next_after"]})
    keys = [r["key"] for r in first.context["rows"] + second.context["rows"]]
    assert keys == [str(deleted_orders[0].pk), str(deleted_orders[2].pk)]
    assert second.context["next_after"] is None


def test_the_audit_history_can_take_the_place_of_djangos_history(
    layout, settings, admin_client, renamed_book
):
    class HistoryBookAdmin(BookAdmin):
        audit_history_in_history_button = True

    own = admin.AdminSite(name="admin")
    audit_admin.register(own)
    own.register(Book, HistoryBookAdmin)
    urls = types.ModuleType("audit_history_button_urls")
    urls.urlpatterns = [path("admin/", own.urls)]  # type: ignore[attr-defined]
    settings.ROOT_URLCONF = urls
    change = admin_client.get(reverse("admin:library_book_change", args=["111"])).content.decode()
    history = reverse("admin:library_book_history", args=["111"])
    assert "dpa-audit-history" not in change and f'href="{history}"' in change
    page = admin_client.get(history).content.decode()
    assert "<h1>Audit history: Book object (111)</h1>" in page
    assert diff(versions_of(page)[1]) == [("title", "Dune", "Dune Messiah")]
