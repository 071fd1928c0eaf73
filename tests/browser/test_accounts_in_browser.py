"""Register, log in and log out in real Chromium, with and without JavaScript, under the real CSP."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.people import htmx_is_running, log_in, log_out, register, screenshot

pytestmark = pytest.mark.browser


def test_register_log_out_log_in_and_log_out_again(page: Page, live_server: str, page_problems: list[str]):
    register(page, live_server, "grace@example.com")
    expect(page).to_have_url(f"{live_server}/keys/")
    expect(page.get_by_role("heading", name="Your API keys")).to_be_visible()
    expect(page.get_by_role("navigation", name="Main")).to_contain_text("grace@example.com")
    expect(page.get_by_role("status")).to_have_text("Welcome to Keyfob. Your account is ready.")
    assert htmx_is_running(page), "htmx did not load (SRI mismatch or blocked by CSP?)"

    log_out(page)
    expect(page).to_have_url(f"{live_server}/login")
    expect(page.get_by_role("status")).to_have_text("You have logged out.")
    expect(page.get_by_role("button", name="Log out")).to_have_count(0)

    log_in(page, live_server, "grace@example.com")
    expect(page).to_have_url(f"{live_server}/keys/")
    expect(page.get_by_role("navigation", name="Main")).to_contain_text("grace@example.com")

    log_out(page)
    expect(page).to_have_url(f"{live_server}/login")
    page.goto(f"{live_server}/account")
    expect(page).to_have_url(f"{live_server}/login?next=%2Faccount")
    expect(page.get_by_role("status")).to_have_text("Log in to see that page.")
    assert page_problems == []


def test_a_common_password_is_refused_next_to_the_field(page: Page, live_server: str, page_problems: list[str]):
    register(page, live_server, "common@example.com", password="password123")
    expect(page).to_have_url(f"{live_server}/register")
    expect(page.get_by_role("heading", name="Create an account")).to_be_visible()
    password = page.get_by_label("Password", exact=True)
    expect(password).to_have_attribute("aria-invalid", "true")
    error = page.locator("#password-error")
    expect(error).to_contain_text("most common passwords")
    expect(password).to_have_accessible_description(re.compile("most common passwords"))
    expect(page.get_by_label("Email")).to_have_value("common@example.com")
    assert htmx_is_running(page)
    assert page_problems == []


def test_the_forms_work_without_javascript(new_page, live_server: str, page_problems: list[str]):
    page = new_page(java_script_enabled=False)
    register(page, live_server, "nojs@example.com", password="password123")
    expect(page).to_have_url(f"{live_server}/register")
    expect(page.locator("#password-error")).to_contain_text("most common passwords")

    register(page, live_server, "nojs@example.com")
    expect(page).to_have_url(f"{live_server}/keys/")
    expect(page.get_by_role("navigation", name="Main")).to_contain_text("nojs@example.com")
    expect(page.get_by_role("status")).to_have_text("Welcome to Keyfob. Your account is ready.")
    assert page_problems == []


def test_a_wrong_password_is_refused(page: Page, live_server: str, page_problems: list[str]):
    register(page, live_server, "wrong@example.com")
    log_out(page)
    log_in(page, live_server, "wrong@example.com", password="not the right passphrase")
    expect(page).to_have_url(f"{live_server}/login")
    expect(page.get_by_role("alert")).to_have_text("The email or password is incorrect.")
    expect(page.get_by_role("button", name="Log out")).to_have_count(0)
    assert page_problems == []


def test_screenshots_for_the_readme(page: Page, live_server: str, page_problems: list[str]):
    page.goto(f"{live_server}/login")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    screenshot(page, "login")

    register(page, live_server, "ada@example.com")
    expect(page).to_have_url(f"{live_server}/keys/")
    page.get_by_role("link", name="ada@example.com").click()
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()
    expect(page.locator(".facts")).to_contain_text("ada@example.com")
    screenshot(page, "account")
    assert page_problems == []
