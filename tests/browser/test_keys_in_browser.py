"""The key dashboard in real Chromium: the journeys a person takes, with and without JavaScript."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from tests.browser.people import htmx_is_running, register, screenshot

pytestmark = pytest.mark.browser
KEY = re.compile(r"^kf_[0-9A-Za-z]{33}$")


def create_key(page: Page, base_url: str, name: str, scopes: list[str], *, expiry: str = "In 30 days",
               on_date: str | None = None) -> str:
    """Fill in and send the create form as a person would; returns the key shown once."""
    page.goto(f"{base_url}/keys/")
    page.get_by_role("link", name=re.compile("Create (a|your first) key")).first.click()
    expect(page.get_by_role("heading", name="Create an API key")).to_be_visible()
    page.get_by_label("Name").fill(name)
    for scope in scopes:
        page.get_by_role("checkbox", name=scope).check()
    page.get_by_role("radio", name=expiry).check()
    if on_date:
        page.get_by_label("Expiry date").fill(on_date)
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_text("It will not be shown again")).to_be_visible()
    token = page.get_by_label("API key").input_value()
    assert KEY.match(token), token
    return token


def whoami(page: Page, base_url: str, token: str) -> int:
    return page.request.get(f"{base_url}/api/v1/whoami", headers={"Authorization": f"Bearer {token}"}).status


def wait_for_usage(page: Page, text: str) -> None:
    """Usage is written by a background flush each second: reload the detail page until it shows."""
    deadline = time.monotonic() + 10
    while text not in page.locator("figcaption").inner_text():
        assert time.monotonic() < deadline, f"usage never showed {text!r}"
        time.sleep(0.3)
        page.reload()


def test_create_copy_use_see_usage_rotate_and_revoke(new_page, live_server: str, page_problems: list[str]):
    page = new_page(permissions=["clipboard-read", "clipboard-write"])
    register(page, live_server, "journey@example.com")
    expect(page.get_by_text("You have no API keys yet.")).to_be_visible()
    assert htmx_is_running(page)

    token = create_key(page, live_server, "deploy bot", ["read:data", "write:data"])
    assert page.evaluate("document.querySelector('[hx-history=false]') !== null")
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_text("Copied.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == token
    screenshot(page, "key-created")
    # The secret is in no URL and no htmx history entry in the browser's storage.
    assert token not in page.url
    assert token not in page.evaluate("JSON.stringify(localStorage)")

    assert whoami(page, live_server, token) == 200
    assert whoami(page, live_server, token) == 200
    page.get_by_role("link", name="I have stored it: go to the key").click()
    expect(page.get_by_role("heading", name=re.compile("deploy bot"))).to_be_visible()
    wait_for_usage(page, "2 valid")
    expect(page.locator("svg rect.bar-valid")).to_have_count(1)
    expect(page.get_by_role("cell", name="created")).to_be_visible()
    screenshot(page, "key-detail", full_page=True)

    page.get_by_label("Keep the old key working for").select_option("none")
    page.get_by_role("button", name="Rotate").click()
    expect(page.get_by_text("The old secret stopped working now.")).to_be_visible()
    rotated = page.get_by_label("API key").input_value()
    assert rotated != token and KEY.match(rotated)
    assert whoami(page, live_server, token) == 401
    assert whoami(page, live_server, rotated) == 200

    page.get_by_role("link", name="I have stored it: go to the key").click()
    page.get_by_label("Reason").fill("no longer needed")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revoke").click()
    expect(page.get_by_role("status")).to_contain_text("Revoked deploy bot")
    expect(page.locator(".badge")).to_have_text("Revoked")
    expect(page.get_by_role("cell", name="no longer needed")).to_be_visible()  # the audit event
    assert whoami(page, live_server, rotated) == 401
    assert page_problems == []


def test_a_row_is_disabled_and_revoked_in_place(page: Page, live_server: str, page_problems: list[str]):
    register(page, live_server, "rows@example.com")
    token = create_key(page, live_server, "row key", ["read:data"])
    page.goto(f"{live_server}/keys/")
    assert htmx_is_running(page)
    row = page.get_by_role("row", name=re.compile("row key"))
    row.get_by_role("button", name="Disable row key").click()
    expect(row.get_by_text("Disabled", exact=True)).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("Disabled row key")
    assert whoami(page, live_server, token) == 401
    row.get_by_role("button", name="Enable row key").click()
    expect(row.get_by_text("Active", exact=True)).to_be_visible()
    assert whoami(page, live_server, token) == 200

    dialogs = []
    page.once("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
    row.get_by_role("link", name="Revoke row key").click()
    expect(row.get_by_text("Revoked", exact=True)).to_be_visible()
    assert "cannot be undone" in dialogs[0]
    assert page.url == f"{live_server}/keys/"  # swapped in place, no page load
    assert whoami(page, live_server, token) == 401
    assert page_problems == []


def test_a_key_expiring_in_three_days_is_listed_and_renew_takes_it_off(page: Page, live_server: str,
                                                                         page_problems: list[str]):
    register(page, live_server, "renewal@example.com")
    soon = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()
    create_key(page, live_server, "short lived", ["read:data"], expiry="On a date", on_date=soon)
    create_key(page, live_server, "long lived", ["read:data"], expiry="In 90 days")
    page.goto(f"{live_server}/keys/")
    assert htmx_is_running(page)
    renewal = page.get_by_role("region", name="Needs renewal")
    expect(renewal.get_by_role("listitem")).to_have_count(1)
    expect(renewal).to_contain_text("short lived")
    expect(renewal).to_contain_text(re.compile(r"Expires in [23] days"))
    expect(page.get_by_role("row", name=re.compile("short lived")).get_by_text("Expiring")).to_be_visible()
    screenshot(page, "keys-index", full_page=True)

    renewal.get_by_role("button", name="Renew short lived").click()
    expect(renewal).to_contain_text("Nothing expires in the next 14 days.")
    expect(page.get_by_role("status")).to_contain_text("Renewed short lived")
    # The key table heard "keys-changed" and refreshed itself: the row is no longer expiring.
    expect(page.get_by_role("row", name=re.compile("short lived")).get_by_text("Active")).to_be_visible()
    assert page_problems == []


def test_create_and_revoke_without_javascript(new_page, live_server: str, page_problems: list[str]):
    page = new_page(java_script_enabled=False)
    register(page, live_server, "nojs-keys@example.com")
    page.goto(f"{live_server}/keys/new")
    page.get_by_role("button", name="Create key").click()
    expect(page.locator("#name-error")).to_contain_text("Give the key a name")
    page.get_by_label("Name").fill("plain form")
    page.get_by_label("Allowed IP addresses").fill("not an address")
    page.get_by_role("button", name="Create key").click()
    expect(page.locator("#allowed_ips-error")).to_contain_text("is not an IP address")
    expect(page.get_by_label("Name")).to_have_value("plain form")
    page.get_by_label("Allowed IP addresses").fill("")
    page.get_by_role("checkbox", name="read:data").check()
    page.get_by_role("button", name="Create key").click()
    token = page.get_by_label("API key").input_value()
    assert KEY.match(token)
    expect(page.get_by_role("button", name="Copy")).to_be_hidden()  # nothing that needs JavaScript shows
    assert whoami(page, live_server, token) == 200

    page.goto(f"{live_server}/keys/")
    page.get_by_role("row", name=re.compile("plain form")).get_by_role("link", name="Revoke plain form").click()
    expect(page.get_by_role("heading", name="Revoke “plain form”?")).to_be_visible()
    page.get_by_label("Reason").fill("done with it")
    page.get_by_role("button", name="Revoke key").click()
    expect(page.get_by_role("status")).to_contain_text("Revoked plain form")
    assert whoami(page, live_server, token) == 401
    assert page_problems == []


def test_another_user_cannot_reach_my_key(new_page, live_server: str, page_problems: list[str]):
    mine = new_page()
    register(mine, live_server, "owner@example.com")
    create_key(mine, live_server, "private", ["read:data"])
    mine.get_by_role("link", name="I have stored it: go to the key").click()
    expect(mine).to_have_url(re.compile(r"/keys/\d+$"))
    key_url = mine.url

    theirs = new_page()
    register(theirs, live_server, "intruder@example.com")
    response = theirs.goto(key_url)
    assert response is not None and response.status == 404
    expect(theirs.get_by_role("heading", name=re.compile("There is nothing here"))).to_be_visible()
    theirs.goto(f"{live_server}/keys/")
    expect(theirs.get_by_text("private")).to_have_count(0)
    assert page_problems == []


def test_screenshot_of_the_create_form(page: Page, live_server: str, page_problems: list[str]):
    register(page, live_server, "shots@example.com")
    page.goto(f"{live_server}/keys/new")
    page.get_by_label("Name").fill("billing sync")
    page.get_by_role("checkbox", name="read:data").check()
    screenshot(page, "key-create", full_page=True)
    assert page_problems == []


def test_create_errors_show_next_to_the_field_with_javascript(page: Page, live_server: str, page_problems: list[str]):
    register(page, live_server, "errors@example.com")
    page.goto(f"{live_server}/keys/new")
    assert htmx_is_running(page)
    page.get_by_label("Name").fill("typo")
    page.get_by_label("Allowed IP addresses").fill("10.0.0.300")
    page.get_by_label("Rate limit").fill("0")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_label("Allowed IP addresses")).to_have_accessible_description(
        re.compile("is not an IP address"))
    expect(page.locator("#rate_limit-error")).to_contain_text("between 1 and")
    expect(page.get_by_label("Name")).to_have_value("typo")
    assert page_problems == []


def test_the_key_list_fits_a_phone(new_page, live_server: str, page_problems: list[str]):
    page = new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    register(page, live_server, "phone@example.com")
    create_key(page, live_server, "pocket key", ["read:data", "write:data"])
    page.goto(f"{live_server}/keys/")
    row = page.get_by_role("row", name=re.compile("pocket key"))
    expect(row.get_by_role("button", name="Disable pocket key")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "the page scrolls sideways"
    page.keyboard.press("Tab")  # keyboard use: focus lands on something visible, with a visible outline
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
    assert page_problems == []
