"""A forgotten password in real Chromium, with JavaScript on: the link from the real mail, a new password, signed
in; the session another browser had is dead, and the link does not work a second time."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from app.accounts import password_reset, service
from app.mail.core import MailCore
from tests.browser.people import htmx_is_running, log_in, submit
from tests.functional.mail.conftest import SmtpServer, mail_settings
from tests.support import PASSWORD

pytestmark = pytest.mark.browser

EMAIL = "forgetful@example.com"
NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture(scope="module")
def smtp_server():
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def live_settings(smtp_server) -> dict:
    """The live app sends its mail to this module's SMTP server (flushed by the test, not on a timer)."""
    return mail_settings(smtp_server)


def mailed_link(app, smtp_server, live_server: str) -> str:
    """Deliver the outbox, then the reset link of the last mail to EMAIL, pointed at the live server (the mail's
    links start with the configured PUBLIC_BASE_URL)."""
    MailCore.of(app).sender.send_due()
    [message] = [m for m in smtp_server.recorder.messages() if m["To"] == EMAIL]
    base = mail_settings(smtp_server)["PUBLIC_BASE_URL"]
    text = message.get_body(("plain",)).get_content()
    match = re.search(re.escape(password_reset.reset_link(base, "")) + r"(\S+)", text)
    assert match, text
    return live_server + password_reset.RESET_PATH + "?token=" + match.group(1)


def test_forgot_password_mail_link_new_password_signed_in_old_session_dead_link_refused_again(
        live_app, new_page, smtp_server, page_problems: list[str]):
    app, live_server = live_app
    with app.app_context():
        service.create_user(EMAIL, PASSWORD)
    old = new_page()
    log_in(old, live_server, EMAIL)
    expect(old).to_have_url(f"{live_server}/keys/")

    page: Page = new_page()
    referers: list[str] = []
    page.on("request", lambda request: referers.append(request.headers.get("referer", "")))
    page.goto(f"{live_server}/login")
    page.get_by_role("link", name="Forgot your password?").click()
    expect(page.get_by_role("heading", name="Forgot your password?")).to_be_visible()
    assert htmx_is_running(page)
    page.get_by_label("Email").fill(EMAIL)
    submit(page, page.get_by_role("button", name="Send the link"))
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text(EMAIL)

    link = mailed_link(app, smtp_server, live_server)
    page.goto(link)
    expect(page).to_have_url(f"{live_server}{password_reset.RESET_PATH}")  # the token has left the address bar
    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    page.get_by_label("New password").fill(NEW_PASSWORD)
    page.get_by_label("Repeat password").fill(NEW_PASSWORD)
    submit(page, page.get_by_role("button", name="Set the new password"))
    expect(page).to_have_url(f"{live_server}/keys/")
    expect(page.get_by_role("heading", name="Your API keys")).to_be_visible()
    expect(page.get_by_role("navigation", name="Main")).to_contain_text(EMAIL)
    expect(page.get_by_role("status")).to_contain_text("Your password is changed and you are signed in")

    old.reload()
    expect(old).to_have_url(re.compile(rf"^{re.escape(live_server)}/login"))
    expect(old.get_by_role("navigation", name="Main")).not_to_contain_text(EMAIL)

    page.goto(link)
    expect(page.get_by_role("heading", name="This link has expired or was already used")).to_be_visible()
    expect(page.get_by_role("link", name="Ask for a new link")).to_be_visible()
    assert [referer for referer in referers if "token" in referer] == []
    assert page_problems == []
