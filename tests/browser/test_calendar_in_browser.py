"""The expiry calendar link on the account page in real Chromium: made and reset with htmx (Reset confirmed in a
dialog) and without JavaScript, the URL shown opening the feed until it is reset."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.people import htmx_is_running, register, submit

pytestmark = pytest.mark.browser

FEED = re.compile(r"^http://127\.0\.0\.1:\d+/calendar/[A-Za-z0-9_.-]+\.ics$")


def _feed_status(page: Page, url: str) -> int:
    """What a calendar app gets at `url`: a request with no cookie of the browser's."""
    return page.context.request.get(url, headers={"Cookie": ""}).status


def test_create_and_reset_the_link_with_htmx(page: Page, live_server: str, page_problems: list[str]):
    register(page, live_server, "calendar@example.com")
    page.goto(f"{live_server}/account")
    assert htmx_is_running(page)
    submit(page, page.get_by_role("button", name="Create calendar link"))
    expect(page.get_by_role("status")).to_have_text(re.compile("Your calendar link is ready"))
    field = page.get_by_label("Calendar URL")
    expect(field).to_have_value(FEED)
    first = field.input_value()
    expect(page).to_have_url(f"{live_server}/account")  # swapped in place: no navigation
    assert _feed_status(page, first) == 200

    dialogs = []
    page.once("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
    submit(page, page.get_by_role("button", name="Reset link"))
    assert dialogs and "stops working at once" in dialogs[0]
    expect(page.get_by_role("status")).to_have_text(re.compile("The old one stopped working"))
    expect(field).not_to_have_value(first)
    second = field.input_value()
    assert FEED.match(second)
    assert _feed_status(page, first) == 404
    assert _feed_status(page, second) == 200
    assert page_problems == []


def test_create_the_link_without_javascript(new_page, live_server: str, page_problems: list[str]):
    page = new_page(java_script_enabled=False)
    register(page, live_server, "calendar-nojs@example.com")
    page.goto(f"{live_server}/account")
    submit(page, page.get_by_role("button", name="Create calendar link"))
    expect(page).to_have_url(f"{live_server}/account")
    expect(page.get_by_role("status")).to_have_text(re.compile("Your calendar link is ready"))
    expect(page.get_by_label("Calendar URL")).to_have_value(FEED)
    expect(page.get_by_role("button", name="Reset link")).to_be_visible()
    assert _feed_status(page, page.get_by_label("Calendar URL").input_value()) == 200
    assert page_problems == []
