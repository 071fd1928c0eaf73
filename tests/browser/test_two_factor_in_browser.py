"""Two-factor sign-in in real Chromium under the real CSP: an admin is made to set an authenticator up before any
admin page (the test reads the key off the page and computes the codes, as the app would), then signs in with it;
and the code step with JavaScript off."""

from __future__ import annotations

import time

import pyotp
import pytest
from playwright.sync_api import Page, expect

from app.accounts import service
from tests.browser.people import htmx_is_running, log_in, log_out, screenshot, submit
from tests.two_factor_support import enrol

pytestmark = pytest.mark.browser

# The production default, which the shared test settings turn off.


@pytest.fixture(scope="module")
def live_settings() -> dict:
    return {"TWO_FACTOR_FOR_ADMINS": "true"}


def test_an_admin_sets_up_an_authenticator_first_then_signs_in_with_it(live_app, page: Page,
                                                                        page_problems: list[str]):
    app, live_server = live_app
    with app.app_context():
        service.create_user("root@example.com", "a sturdy passphrase", is_admin=True)
    log_in(page, live_server, "root@example.com")
    page.goto(f"{live_server}/admin/users")
    expect(page).to_have_url(f"{live_server}/account/two-factor/enrol?next=/admin/users")
    expect(page.get_by_role("heading", name="Set up two-factor sign-in")).to_be_visible()
    qr_code = page.get_by_role("img", name="QR code to scan with your authenticator app")
    expect(qr_code).to_be_visible()
    assert qr_code.evaluate("image => image.complete && image.naturalWidth > 0")  # the data: image the CSP allows
    assert htmx_is_running(page)
    screenshot(page, "two-factor-enrolment", full_page=True)

    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    totp = pyotp.TOTP(secret)
    page.get_by_label("Code from the app").fill(totp.now())
    submit(page, page.get_by_role("button", name="Switch on"))
    expect(page.get_by_role("heading", name="Two-factor sign-in is on")).to_be_visible()
    expect(page.get_by_role("list", name="Recovery codes").get_by_role("listitem")).to_have_count(10)
    page.get_by_role("link", name="I have stored them: go on").click()
    expect(page).to_have_url(f"{live_server}/admin/users")
    expect(page.get_by_role("heading", name="Users")).to_be_visible()

    log_out(page)
    log_in(page, live_server, "root@example.com")
    expect(page).to_have_url(f"{live_server}/login/two-factor")
    # The code that switched it on is spent: the app's next one (accepted a step early, for clock drift) signs in.
    page.get_by_label("Code").fill(totp.at(time.time() + 30))
    submit(page, page.get_by_role("button", name="Verify"))
    expect(page).to_have_url(f"{live_server}/keys/")
    page.goto(f"{live_server}/admin/users")
    expect(page.get_by_role("heading", name="Users")).to_be_visible()
    assert page_problems == []


def test_the_code_step_works_without_javascript(live_app, new_page, page_problems: list[str]):
    app, live_server = live_app
    with app.app_context():
        user = service.create_user("nojs@example.com", "a sturdy passphrase").id
    secret, _ = enrol(app, user)
    page = new_page(java_script_enabled=False)
    log_in(page, live_server, "nojs@example.com")
    expect(page).to_have_url(f"{live_server}/login/two-factor")
    code = page.get_by_label("Code")
    code.fill("12345")
    submit(page, page.get_by_role("button", name="Verify"))
    expect(page.locator("#code-error")).to_contain_text("Enter the 6 digits")
    expect(code).to_have_attribute("aria-invalid", "true")
    code.fill(pyotp.TOTP(secret).now())
    submit(page, page.get_by_role("button", name="Verify"))
    expect(page).to_have_url(f"{live_server}/keys/")
    expect(page.get_by_role("navigation", name="Main")).to_contain_text("nojs@example.com")
    assert page_problems == []
