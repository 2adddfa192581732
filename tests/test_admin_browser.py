"""The audit admin in a real browser: Debian's Chromium driven by Playwright, against the test
project's own admin on a live server. A change made through the admin form is recorded with
the request's context and shown as a diff in the object's history and in the entry list.

``DPA_SCREENSHOTS=docs/img`` (``make screenshots``) writes the pictures of docs/admin.md.
"""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from shop.models import Customer, Order

from django_partitioned_audit.context import audit_context, audit_job
from django_partitioned_audit.models import SimpleAuditEntry
from tests.helpers import empty_trails

CHROMIUM = os.environ.get("DPA_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("DPA_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@audit_job
def checkout(customer: Customer) -> Order:
    return Order.objects.create(
        customer=customer,
        total=Decimal("42.50"),
        status="new",
        quantity=2,
        data={"gift": True},
        tags=["book"],
        placed_at=dt.datetime(2026, 11, 30, 9, 15, tzinfo=dt.UTC),
    )


@pytest.mark.django_db(transaction=True)
def test_an_admin_edit_shows_up_in_the_history_with_its_diff_and_its_user(live_server, shots, monkeypatch):
    empty_trails()
    User.objects.create_superuser("ada", "ada@example.com", "correct horse")
    with audit_context(username="signup-form", path="/signup/"):
        customer = Customer.objects.create(name="Grace Hopper", password="s3cret")
    order = checkout(customer)
    with audit_context(user_id=12, username="billing-bot"):
        Order.objects.filter(pk=order.pk).update(status="paid")

    # Playwright's sync API runs an event loop in this thread; the ORM is left alone until it
    # is closed, and only the live server's thread touches the database meanwhile.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} not found: `make chromium` installs Debian's chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", "ada")
        page.fill("#id_password", "correct horse")
        page.click("input[type=submit]")
        page.wait_for_selector("#site-name")

        page.goto(f"{live_server.url}/admin/shop/order/{order.pk}/change/")
        page.fill("#id_status", "shipped")
        page.fill("#id_quantity", "3")
        page.click("input[name=_continue]")
        page.wait_for_selector(".messagelist .success")

        page.click("a.dpa-audit-history")
        page.wait_for_selector("#dpa-history")
        versions = page.locator("tr.dpa-version")
        history = [versions.nth(i).inner_text() for i in range(versions.count())]
        page.screenshot(path=str(shots / "admin-history.png"), full_page=True)

        page.goto(f"{live_server.url}/admin/django_partitioned_audit/simpleauditentry/")
        page.wait_for_selector("#result_list")
        listed = page.locator("#result_list tbody tr").count()
        page.screenshot(path=str(shots / "admin-list.png"), full_page=True)

        page.click("#result_list tbody tr:first-child th a")
        page.wait_for_selector(".dpa-changes")
        diff = page.locator(".dpa-changes tbody tr")
        detail = [diff.nth(i).inner_text().split("\t") for i in range(diff.count())]
        page.screenshot(path=str(shots / "admin-diff.png"), full_page=True)
        browser.close()

    assert len(history) == 3, history  # INSERT by the job, UPDATE by the bot, UPDATE by ada
    assert "INSERT" in history[0] and "checkout" in history[0]
    assert "billing-bot" in history[1] and "new\tpaid" in history[1].replace("\n", "\t")
    assert "ada" in history[2] and "paid\tshipped" in history[2].replace("\n", "\t")
    assert listed == SimpleAuditEntry.objects.count() == 4  # the customer's INSERT too
    assert sorted(detail) == [["quantity", "2", "3"], ["status", "paid", "shipped"]]
    edit = SimpleAuditEntry.objects.filter_object(Order, order.pk).order_by("pk").last()
    assert edit.audit_context["username"] == "ada" and edit.audit_context["method"] == "POST"
    assert edit.audit_context["path"] == f"/admin/shop/order/{order.pk}/change/"
    for name in ("admin-history.png", "admin-list.png", "admin-diff.png"):
        assert (shots / name).stat().st_size > 10_000


@pytest.mark.django_db(transaction=True)
def test_an_order_is_reverted_and_a_deleted_one_restored_from_the_admin(live_server, shots, monkeypatch):
    empty_trails()
    User.objects.create_superuser("ada", "ada@example.com", "correct horse")
    customer = Customer.objects.create(name="Grace Hopper")
    order = checkout(customer)
    with audit_context(user_id=12, username="billing-bot"):
        Order.objects.filter(pk=order.pk).update(status="cancelled", total=Decimal("0.00"))
    gone = Order.objects.create(customer=customer, status="gift", total=Decimal("5.00"))
    Order.objects.filter(pk=gone.pk).delete()

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} not found: `make chromium` installs Debian's chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", "ada")
        page.fill("#id_password", "correct horse")
        page.click("input[type=submit]")
        page.wait_for_selector("#site-name")

        page.goto(f"{live_server.url}/admin/shop/order/{order.pk}/change/")
        page.click("a.dpa-audit-history")
        page.wait_for_selector("#dpa-history")
        page.locator("tr.dpa-version").first.locator("a.dpa-revert").click()
        page.wait_for_selector(".dpa-revert-diff")
        rows = page.locator(".dpa-revert-diff tbody tr")
        planned = sorted(rows.nth(i).inner_text().split("\t") for i in range(rows.count()))
        page.screenshot(path=str(shots / "admin-revert.png"), full_page=True)
        page.click("input.dpa-revert-confirm")
        page.wait_for_selector(".messagelist .success")
        reverted_message = page.locator(".messagelist .success").inner_text()
        status_after = page.input_value("#id_status")
        reverted_url = page.url

        page.goto(f"{live_server.url}/admin/shop/order/")
        page.click("a.dpa-deleted-objects")
        page.wait_for_selector("#dpa-deleted")
        deleted_keys = page.locator("tr.dpa-deleted-object td:first-child").all_inner_texts()
        page.screenshot(path=str(shots / "admin-deleted.png"), full_page=True)
        page.click("a.dpa-restore")
        page.wait_for_selector("input.dpa-revert-confirm")
        page.click("input.dpa-revert-confirm")
        page.wait_for_selector(".messagelist .success")
        restored_message = page.locator(".messagelist .success").inner_text()
        browser.close()

    assert planned == [["status", "cancelled", "new"], ["total", "0.00", "42.50"]]
    assert reverted_url.endswith(f"/admin/shop/order/{order.pk}/change/") and status_after == "new"
    assert reverted_message.startswith(
        f"The order “Order object ({order.pk})” was reverted to its version of "
    )
    reverted = Order.objects.get(pk=order.pk)
    assert (reverted.status, reverted.total) == ("new", Decimal("42.50"))
    last = SimpleAuditEntry.objects.filter_object(Order, order.pk).order_by("pk").last()
    first = SimpleAuditEntry.objects.filter_object(Order, order.pk).order_by("pk").first()
    assert last.audit_context["username"] == "ada" and last.audit_context["revert_of"] == first.pk
    assert deleted_keys == [str(gone.pk)]
    assert restored_message.startswith(f"The order “Order object ({gone.pk})” was restored as it was on ")
    assert Order.objects.get(pk=gone.pk).status == "gift"
    for name in ("admin-revert.png", "admin-deleted.png"):
        assert (shots / name).stat().st_size > 10_000
