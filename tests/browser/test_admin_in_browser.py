"""The admin overview and a key's admin page in real Chromium, with their charts drawn."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from app.accounts import service as accounts
from app.extensions import db
from tests.browser.people import htmx_is_running, log_in, screenshot
from tests.functional.keyhelpers import bearer, flush, new_key
from tests.support import PASSWORD

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def admin_world(live_app):
    """An admin, a user with two keys that have been used, and a refused request."""
    app, base = live_app
    with app.app_context():
        accounts.create_user("root@example.com", PASSWORD, is_admin=True)
        user = accounts.create_user("dev@example.com", PASSWORD).id
    busy, token = new_key(app, user, name="billing sync", scopes=("read:data",))
    new_key(app, user, name="reporting", scopes=("read:data", "write:data"))
    client = app.test_client()
    for _ in range(5):
        client.get("/api/v1/whoami", headers={**bearer(token), "User-Agent": "billing-sync/2.1"},
                   environ_base={"REMOTE_ADDR": "198.51.100.20"})
    client.get("/api/v1/api-keys", headers={**bearer(token), "User-Agent": "billing-sync/2.1"})  # lacks keys:read
    flush(app)
    with app.app_context():
        db.session.remove()
    return base, busy


def test_the_overview_draws_its_chart_and_totals(page: Page, admin_world, page_problems: list[str]):
    base, _ = admin_world
    log_in(page, base, "root@example.com")
    page.get_by_role("link", name="Admin").click()
    expect(page.get_by_role("heading", name="Admin", exact=True)).to_be_visible()
    assert htmx_is_running(page)
    totals = page.get_by_role("region", name="Totals")
    expect(totals).to_contain_text("Requests today")
    expect(totals.locator(".total").filter(has_text="Requests today").locator(".total-value")).to_have_text("5")
    chart = page.get_by_role("img", name=re.compile("bar chart"))
    expect(chart).to_be_visible()
    box = page.locator("rect.bar-valid").first.bounding_box()
    assert box is not None and box["height"] > 10, box  # a bar a person can see, not a zero-height rect
    expect(page.get_by_role("cell", name=re.compile("billing sync"))).to_be_visible()
    screenshot(page, "admin-overview", full_page=True)
    assert page_problems == []


def test_a_keys_admin_page_shows_its_chart_and_audit_events(page: Page, admin_world, page_problems: list[str]):
    base, busy = admin_world
    log_in(page, base, "root@example.com")
    page.goto(f"{base}/admin/keys")
    page.get_by_label("Search").fill("billing")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("row")).to_have_count(2)  # the header and the one key
    page.get_by_role("link", name="billing sync").click()
    expect(page.get_by_role("heading", name=re.compile("billing sync"))).to_be_visible()
    expect(page.locator("figcaption")).to_contain_text("5 valid")
    expect(page.locator("rect.bar-valid")).to_have_count(1)
    refused = page.get_by_role("row", name=re.compile("key.verify_failed"))
    expect(refused).to_contain_text("insufficient_scope")
    expect(refused).to_contain_text("billing-sync/2.1")  # with its user agent
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Disable").click()
    expect(page.get_by_role("status")).to_contain_text("Disabled billing sync")
    expect(page.get_by_role("cell", name="key.disabled")).to_be_visible()
    assert page_problems == []


def test_an_admin_issues_a_verifier_credential_shown_once_and_revokes_it(page: Page, admin_world,
                                                                         page_problems: list[str]):
    base, busy = admin_world
    log_in(page, base, "root@example.com")
    page.goto(f"{base}/admin")
    page.get_by_role("link", name="Verifiers").click()
    expect(page.get_by_role("heading", name="Verifiers")).to_be_visible()
    page.get_by_label("Service name").fill("Billing-Service")
    page.get_by_label("Description").fill("the invoices API")
    page.get_by_role("button", name="Issue credential").click()
    credential = page.get_by_label("Verifier credential").input_value()
    assert re.fullmatch(r"kfv_[0-9A-Za-z]{33}", credential)
    assert credential not in page.url
    page.get_by_role("link", name=re.compile("I have stored it")).click()
    row = page.get_by_role("row", name=re.compile("billing-service"))
    expect(row).to_contain_text("Active")
    assert credential not in page.content()  # only its start, never again the credential
    screenshot(page, "admin-verifiers", full_page=True)
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke billing-service").click()
    expect(page.get_by_role("status")).to_contain_text("Revoked the verifier billing-service")
    expect(page.get_by_role("row", name=re.compile("billing-service"))).to_contain_text("Revoked")
    assert page_problems == []
