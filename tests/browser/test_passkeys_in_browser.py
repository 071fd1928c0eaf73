"""Passkeys in real Chromium under the real CSP, with Chromium's virtual authenticator (the DevTools WebAuthn
domain): an admin registers a passkey from the account page, which satisfies the admin requirement, then signs in
with the password and the passkey. The live app is reached as http://localhost:<port>, a secure context that is a
name, as WebAuthn needs, and PUBLIC_BASE_URL says so."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from app.accounts import service
from app.accounts.models import Passkey
from app.extensions import db
from tests.browser.people import htmx_is_running, log_in, log_out

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def live_host() -> str:
    return "localhost"


@pytest.fixture(scope="module")
def live_settings(live_base_url: str) -> dict:
    return {"PUBLIC_BASE_URL": live_base_url, "TWO_FACTOR_FOR_ADMINS": "true"}


def virtual_authenticator(page: Page) -> tuple[object, str]:
    """A platform authenticator that verifies its user, attached to the page's browser context."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    found = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": True}})
    return cdp, found["authenticatorId"]


def test_an_admin_registers_a_passkey_and_signs_in_with_it(live_app, page: Page, page_problems: list[str]):
    app, live_server = live_app
    with app.app_context():
        service.create_user("root@example.com", "a sturdy passphrase", is_admin=True)
    cdp, authenticator = virtual_authenticator(page)
    log_in(page, live_server, "root@example.com", "a sturdy passphrase")
    page.goto(f"{live_server}/admin/users")
    expect(page).to_have_url(f"{live_server}/account/two-factor/enrol?next=/admin/users")
    page.get_by_role("link", name="register a passkey").click()
    expect(page.get_by_role("heading", name="Register a passkey")).to_be_visible()
    expect(page.get_by_text("needs JavaScript")).to_be_hidden()
    assert htmx_is_running(page)
    page.get_by_label("Name").fill("Chromium's own")
    with page.expect_navigation(url=f"{live_server}/account"):
        page.get_by_label("Name").press("Enter")  # as the button does: the ceremony, then the form with its answer
    expect(page.get_by_role("cell", name="Chromium's own")).to_be_visible()
    assert len(cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]) == 1
    page.goto(f"{live_server}/admin/users")  # the passkey meets the admin requirement
    expect(page.get_by_role("heading", name="Users")).to_be_visible()

    log_out(page)
    log_in(page, live_server, "root@example.com", "a sturdy passphrase")
    expect(page).to_have_url(f"{live_server}/login/two-factor")
    expect(page.get_by_label("Code")).to_have_count(0)  # no authenticator app: the passkey is the step
    with page.expect_navigation(url=f"{live_server}/keys/"):
        page.get_by_role("button", name="Use a passkey").click()
    page.goto(f"{live_server}/account")
    expect(page.get_by_role("cell", name="Never")).to_have_count(0)  # last used: just now
    assert page_problems == []


def test_without_javascript_the_passkey_step_says_it_needs_it(live_app, new_page):
    app, live_server = live_app
    with app.app_context():
        user = service.create_user("nojs@example.com", "a sturdy passphrase")
        db.session.add(Passkey(user_id=user.id, credential_id="AAAA", public_key=b"\xa0", name="elsewhere"))
        db.session.commit()
    page = new_page(java_script_enabled=False)
    log_in(page, live_server, "nojs@example.com", "a sturdy passphrase")
    expect(page).to_have_url(f"{live_server}/login/two-factor")
    expect(page.get_by_text("Using a passkey needs JavaScript")).to_be_visible()
    expect(page.get_by_role("button", name="Use a passkey")).to_be_hidden()
