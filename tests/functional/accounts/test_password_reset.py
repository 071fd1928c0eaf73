"""Forgotten passwords through a real SMTP server: one answer for known and unknown addresses, throttled per address
and per IP, a mailed link that works once, for 30 minutes, until a newer one replaces it, and a new password that
ends every session. Bad links and bad input get a 4xx page, never a 500."""

from __future__ import annotations

import re
import socket
import time

import pytest
from itsdangerous.timed import TimestampSigner
from sqlalchemy import select

from app.accounts import password_reset, service, signed_links
from app.accounts.models import User
from app.audit.service import Actor
from app.extensions import db
from app.mail.core import MailCore
from tests.functional.keyhelpers import audit_rows, count, rows
from tests.functional.mail import conftest as mail_fixtures
from tests.functional.mail.conftest import mail_settings
from tests.support import PASSWORD, AuthActions, count_hashing, csrf_token_from
from tests.two_factor_support import code_for, enrol, second_step

NEW_PASSWORD = "another sturdy passphrase"
LINK = re.compile(re.escape(password_reset.reset_link("https://keys.example.com", "")) + r"(\S+)")
REFUSED = "has expired or was already used"
MALFORMED = "This link is not valid"
NO_LINK = "Open the link from the password-reset mail we sent you."
CSRF_VALUES = re.compile(r'(value="|"X-CSRFToken": ")[^"]+"')

smtp = mail_fixtures.smtp  # the real SMTP server the mail tests use


@pytest.fixture
def mailing(apps, smtp):
    """An app sending to the SMTP server, with ada's account."""
    return _mailing_app(apps, smtp)


def _mailing_app(apps, smtp, **settings):
    """An app sending to the SMTP server, with these settings, on the test's one database, with ada's account."""
    app = apps(**mail_settings(smtp), **settings)
    with app.app_context():
        if service.find_user("ada@example.com") is None:
            service.create_user("ada@example.com", PASSWORD)
    return app


def client_from(app, ip="203.0.113.7"):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = ip
    return client


def ask(app, email="ada@example.com", ip="203.0.113.7"):
    """Ask for a reset link on the forgot-password page, as a browser would: the answer, after its redirect."""
    client = client_from(app, ip)
    token = AuthActions(client).token("/forgot-password")
    return client.post("/forgot-password", data={"csrf_token": token, "email": email}, follow_redirects=True)


def delivered(app, smtp) -> list:
    """Deliver the outbox, then every message the SMTP server received so far."""
    MailCore.of(app).sender.send_due()
    return smtp.recorder.messages()


def text_of(message) -> str:
    return message.get_body(("plain",)).get_content()


def link_in(message) -> str:
    """The reset link's path and query, as a browser would ask for it."""
    match = LINK.search(text_of(message))
    assert match, text_of(message)
    return password_reset.RESET_PATH + "?token=" + match.group(1)


def mailed_link(app, smtp, email="ada@example.com") -> str:
    assert ask(app, email).status_code == 200
    return link_in(delivered(app, smtp)[-1])


def set_password(client, password=NEW_PASSWORD, confirm=None):
    """Post the reset form of the link the client has opened (the CSRF token from another page: a refused link's
    page has no form)."""
    token = AuthActions(client).token("/forgot-password")
    return client.post(password_reset.RESET_PATH, data={
        "csrf_token": token, "password": password, "confirm": password if confirm is None else confirm})


def can_log_in(app, password) -> bool:
    return AuthActions(client_from(app, "198.51.100.9")).login(password=password).status_code == 302


def stored(app, column: str):
    return rows(app, f"SELECT {column} FROM users WHERE email = 'ada@example.com'")[0][column]  # noqa: S608


def page_text(response) -> str:
    return CSRF_VALUES.sub(r"\1CSRF", response.get_data(as_text=True))


# -- asking for a link ---------------------------------------------------------------------------------------------

def test_the_login_page_links_to_the_forgot_password_page(app):
    page = app.test_client().get("/login").get_data(as_text=True)
    assert 'href="/forgot-password">Forgot your password?</a>' in page
    form = app.test_client().get("/forgot-password")
    assert form.status_code == 200 and 'name="email"' in form.get_data(as_text=True)


def test_without_mail_the_page_says_so_instead_of_promising_a_mail(apps):
    app = apps(KEYFOB_ENV="production")  # no MAIL_URL: production sends no mail
    client = app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"  # the session cookie is Secure in production
    page = client.get("/forgot-password")
    assert page.status_code == 200 and "This Keyfob sends no mail" in page.get_data(as_text=True)
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    answer = client.post("/forgot-password", data={"csrf_token": token, "email": "ada@example.com"})
    assert "This Keyfob sends no mail" in answer.get_data(as_text=True)
    assert "Check your inbox" not in answer.get_data(as_text=True)


def test_the_answer_is_the_same_for_a_known_an_unknown_and_an_inactive_address(mailing, smtp):
    with mailing.app_context():
        grace = service.create_user("grace@example.com", PASSWORD)
        service.set_active(grace, False, actor=Actor.cli())
    counting = count_hashing(mailing)
    answers = {email: ask(mailing, email) for email in ("ada@example.com", "nobody@example.com",
                                                         "grace@example.com")}
    assert {response.status_code for response in answers.values()} == {200}
    assert {tuple((r.status_code, r.headers["Location"]) for r in response.history)
            for response in answers.values()} == {((302, "/forgot-password"),)}
    pages = {page_text(response).replace(email, "ADDRESS") for email, response in answers.items()}
    assert len(pages) == 1
    [page] = pages
    assert "Check your inbox" in page and "If <strong>ADDRESS</strong> belongs to a Keyfob account" in page
    assert counting.calls == 0  # no password is hashed for any of them
    [message] = delivered(mailing, smtp)
    assert message["To"] == "ada@example.com"
    assert [row["detail"] for row in audit_rows(mailing, "user.password_reset_requested")] == [
        f"user:{stored(mailing, 'id')} ada@example.com"]


def test_the_mail_says_why_it_came_and_holds_no_secret_but_the_link(mailing, smtp):
    assert ask(mailing, "  ADA@Example.com ").status_code == 200  # found as the account stores its address
    [message] = delivered(mailing, smtp)
    text = text_of(message)
    assert message["Subject"] == "Reset your Keyfob password"
    assert "Someone, probably you, asked to reset the password of the Keyfob account ada@example.com" in text
    assert "from the IP address 203.0.113.7" in text and "within 30 minutes" in text
    assert "If it was not you, ignore this mail" in text
    assert "You get this mail because someone asked for a password reset for this address." in text
    assert "No setting turns mails like this one off." in text and "To stop mails" not in text
    assert len(LINK.findall(text)) == 1
    raw = smtp.recorder.received[0][2].decode()
    assert PASSWORD not in raw and stored(mailing, "password_hash") not in raw
    assert stored(mailing, "session_nonce") not in raw


@pytest.mark.parametrize("email", ["ada@example.com\r\nBcc: eve@example.com", "ada@example.com\nX-Evil: 1",
                                   "Ada <ada@example.com>", "ada@example.com, eve@example.com", "", "@", "a" * 300])
def test_a_bad_address_is_refused_inline_and_reaches_no_header(mailing, smtp, email):
    response = ask(mailing, email)
    assert response.status_code == 422
    assert 'class="error" id="email-error"' in response.get_data(as_text=True)
    assert count(mailing, "outbox_messages") == 0 and delivered(mailing, smtp) == []


def test_each_address_gets_its_share_of_mail_and_then_the_same_answer_and_nothing(apps, smtp):
    app = _mailing_app(apps, smtp, PASSWORD_RESET_THROTTLE_PER_ADDRESS="2 per hour")
    first = ask(app, ip="198.51.100.1")
    answers = [first] + [ask(app, ip=f"198.51.100.{n}") for n in (2, 3)]
    assert {page_text(response) for response in answers} == {page_text(first)}
    assert {response.status_code for response in answers} == {200}
    assert len(delivered(app, smtp)) == 2
    # An unknown address past its share answers the same as well.
    unknown = [ask(app, "nobody@example.com", ip=f"198.51.100.{n}") for n in (4, 5, 6)]
    assert {page_text(r).replace("nobody@example.com", "ada@example.com") for r in unknown} == {page_text(first)}
    assert len(delivered(app, smtp)) == 2


def test_each_ip_is_throttled_with_a_wait_time(apps, smtp):
    app = _mailing_app(apps, smtp, PASSWORD_RESET_THROTTLE_PER_IP="3 per hour")
    for n in range(3):
        assert ask(app, f"someone{n}@example.com").status_code == 200
    response = ask(app)
    assert response.status_code == 429
    seconds = int(response.headers["Retry-After"])
    assert 0 < seconds <= 3600
    page = response.get_data(as_text=True)
    assert "Too many reset links asked for from your address. Try again in" in page
    assert 'name="email"' in page  # the form again, with the message inline
    assert delivered(app, smtp) == []
    # Another IP may still ask.
    assert ask(app, ip="198.51.100.1").status_code == 200
    assert len(delivered(app, smtp)) == 1


def _unreachable_redis() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0?socket_connect_timeout=0.5&socket_timeout=0.5"


def test_with_the_counter_store_down_asking_and_resetting_answer_503_and_change_nothing(apps, smtp):
    working = _mailing_app(apps, smtp)
    link = mailed_link(working, smtp)
    down = _mailing_app(apps, smtp, RATELIMIT_STORAGE_URI=_unreachable_redis())
    response = ask(down)
    assert response.status_code == 503 and int(response.headers["Retry-After"]) > 0
    assert "rate-limit store" in response.get_data(as_text=True)
    assert count(down, "outbox_messages") == 1  # the working app's mail alone

    client = client_from(down)
    assert client.get(link).status_code == 303  # checking the link needs no counter
    hash_before, nonce_before = stored(down, "password_hash"), stored(down, "reset_nonce")
    response = set_password(client)
    assert response.status_code == 503 and response.headers["Cache-Control"] == "no-store"
    assert (stored(down, "password_hash"), stored(down, "reset_nonce")) == (hash_before, nonce_before)
    assert set_password(_opened(working, link)).status_code == 302


def _opened(app, link):
    client = client_from(app)
    assert client.get(link).status_code == 303
    return client


# -- using the link ------------------------------------------------------------------------------------------------

def test_the_link_sets_a_new_password_signs_in_and_works_once(mailing, smtp):
    link = mailed_link(mailing, smtp)
    client = client_from(mailing)
    opened = client.get(link)
    assert opened.status_code == 303
    assert opened.headers["Location"] == password_reset.RESET_PATH  # the token leaves the URL at once
    form = client.get(password_reset.RESET_PATH)
    assert form.status_code == 200
    assert "Choose a new password" in form.get_data(as_text=True)
    assert "ada@example.com" in form.get_data(as_text=True)
    assert link.partition("token=")[2] not in form.get_data(as_text=True)

    response = set_password(client)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    landing = client.get("/", follow_redirects=True)
    assert "Your password is changed and you are signed in" in landing.get_data(as_text=True)
    account = client.get("/account")
    assert account.status_code == 200 and "ada@example.com" in account.get_data(as_text=True)
    assert can_log_in(mailing, NEW_PASSWORD) and not can_log_in(mailing, PASSWORD)
    assert stored(mailing, "reset_nonce") is None
    [event] = audit_rows(mailing, "user.password_reset")
    assert event["ip"] == "203.0.113.7" and event["actor_user_id"] == stored(mailing, "id")

    # The same link again, in another browser or the same one: refused with a clear page.
    for again in (client_from(mailing), client):
        response = again.get(link)
        assert response.status_code == 410
        page = response.get_data(as_text=True)
        assert REFUSED in page and 'href="/forgot-password"' in page
    assert can_log_in(mailing, NEW_PASSWORD)


def test_the_page_without_a_link_says_where_to_get_one_and_takes_no_password(mailing):
    client = client_from(mailing)
    page = client.get(password_reset.RESET_PATH)
    assert page.status_code == 200
    assert NO_LINK in page.get_data(as_text=True) and 'name="password"' not in page.get_data(as_text=True)
    response = set_password(client)
    assert response.status_code == 302 and response.headers["Location"] == password_reset.RESET_PATH
    page = client.get(password_reset.RESET_PATH).get_data(as_text=True)
    assert "The link has expired or was already used. Ask for a new one." in page and NO_LINK in page
    assert can_log_in(mailing, PASSWORD)


def test_a_link_opened_twice_then_used_in_one_tab_is_refused_in_the_other(mailing, smtp):
    link = mailed_link(mailing, smtp)
    first, second = _opened(mailing, link), _opened(mailing, link)
    assert set_password(first).status_code == 302
    response = set_password(second, "a third sturdy passphrase")
    assert response.status_code == 410 and REFUSED in response.get_data(as_text=True)
    assert can_log_in(mailing, NEW_PASSWORD)


def test_a_newer_link_makes_the_older_one_stop_working(mailing, smtp):
    older = mailed_link(mailing, smtp)
    opened_older = _opened(mailing, older)  # opened before the newer was asked for: refused all the same
    newer = mailed_link(mailing, smtp)
    assert older != newer
    assert client_from(mailing).get(older).status_code == 410
    response = set_password(opened_older)
    assert response.status_code == 410 and REFUSED in response.get_data(as_text=True)
    assert set_password(_opened(mailing, newer)).status_code == 302


def test_the_link_works_for_30_minutes(mailing, smtp, monkeypatch):
    link = mailed_link(mailing, smtp)
    opened = _opened(mailing, link)
    csrf = csrf_token_from(opened.get(password_reset.RESET_PATH).get_data(as_text=True))
    now = int(time.time())
    # itsdangerous reads the clock through the signer: move it forward instead of waiting.
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: now + 29 * 60)
    assert client_from(mailing).get(link).status_code == 303
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: now + 31 * 60)
    response = client_from(mailing).get(link)
    assert response.status_code == 410 and REFUSED in response.get_data(as_text=True)
    # A link opened in time but posted too late is refused too, changes nothing, and leaves the session.
    response = opened.post(password_reset.RESET_PATH, data={"csrf_token": csrf, "password": NEW_PASSWORD,
                                                             "confirm": NEW_PASSWORD})
    assert response.status_code == 410 and REFUSED in response.get_data(as_text=True)
    assert NO_LINK in opened.get(password_reset.RESET_PATH).get_data(as_text=True)
    assert can_log_in(mailing, PASSWORD)


def test_a_link_stops_working_when_its_account_is_deactivated(mailing, smtp):
    link = mailed_link(mailing, smtp)
    with mailing.app_context():
        service.set_active(service.find_user("ada@example.com"), False, actor=Actor.cli())
    assert client_from(mailing).get(link).status_code == 410


def test_a_new_password_ends_every_session_and_clears_the_login_throttle(apps, smtp):
    app = _mailing_app(apps, smtp, LOGIN_THROTTLE_PER_ACCOUNT="2 per 5 minutes")
    old = client_from(app, "192.0.2.10")
    assert AuthActions(old).login().status_code == 302
    assert old.get("/account").status_code == 200
    for ip in ("192.0.2.11", "192.0.2.12"):
        AuthActions(client_from(app, ip)).login(password="a wrong password")
    assert AuthActions(client_from(app, "192.0.2.13")).login().status_code == 429

    assert set_password(_opened(app, mailed_link(app, smtp))).status_code == 302
    response = old.get("/account")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert AuthActions(client_from(app, "192.0.2.13")).login(password=NEW_PASSWORD).status_code == 302


@pytest.mark.parametrize("password,confirm,message", [
    ("short", None, "Use at least 8 characters"),
    ("password123", None, "one of the most common passwords"),
    ("ada@example.com", None, "Do not use your email address as your password."),
    ("ADA@EXAMPLE.COM", None, "Do not use your email address as your password."),
    (NEW_PASSWORD, "a different passphrase", "The passwords do not match."),
    ("", "", "Choose a password."),
    ("x" * 257, None, "Use at most 256 characters."),
])
def test_the_password_rules_of_sign_up_apply_inline(mailing, smtp, password, confirm, message):
    client = _opened(mailing, mailed_link(mailing, smtp))
    response = set_password(client, password, confirm)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert message in page and 'class="error"' in page
    assert can_log_in(mailing, PASSWORD)
    assert set_password(client).status_code == 302  # the link still works after a refused password


def test_every_answer_of_the_reset_page_is_private(mailing, smtp):
    link = mailed_link(mailing, smtp)
    client = client_from(mailing)
    answers = {"link": client.get(link), "form": client.get(password_reset.RESET_PATH),
               "refused password": set_password(client, "short"),
               "no CSRF token": client.post(password_reset.RESET_PATH, data={"password": NEW_PASSWORD}),
               "malformed link": client_from(mailing).get(password_reset.RESET_PATH + "?token=nonsense"),
               "no link": client_from(mailing).get(password_reset.RESET_PATH)}
    assert {name: response.status_code for name, response in answers.items()} == {
        "link": 303, "form": 200, "refused password": 422, "no CSRF token": 400,
        "malformed link": 400, "no link": 200}
    answers["done"] = set_password(client)
    answers["used link"] = client_from(mailing).get(link)
    for name, response in answers.items():
        assert response.headers["Referrer-Policy"] == "no-referrer", name
        assert response.headers["Cache-Control"] == "no-store", name
    assert ask(mailing).headers["Referrer-Policy"] == "same-origin"  # other pages keep the site's policy


def _signed(app, purpose, payload) -> str:
    with app.test_request_context():
        return signed_links.sign(purpose, payload)


@pytest.mark.parametrize("token", [
    "garbage", "", "A" * 5000, "%C3%A9t%C3%A9", "%00", "..", "a.b.c", "%F0%9F%94%91" * 300,
])
def test_a_malformed_link_gets_a_clear_400_page(mailing, token):
    response = client_from(mailing).get(f"{password_reset.RESET_PATH}?token={token}")
    assert response.status_code == 400
    if token != "%00":  # refused earlier, by the check every request passes
        page = response.get_data(as_text=True)
        assert MALFORMED in page and 'href="/forgot-password"' in page


def test_tokens_signed_for_another_purpose_or_shape_or_user_are_refused(mailing, smtp):
    link = mailed_link(mailing, smtp)
    with mailing.app_context():
        user = db.session.scalar(select(User))
        user_id, nonce = user.id, user.reset_nonce
    cases = {
        _signed(mailing, "email-confirmation", [user_id, nonce]): 400,
        _signed(mailing, "password-reset", "just text"): 400,
        _signed(mailing, "password-reset", [str(user_id), nonce]): 400,
        _signed(mailing, "password-reset", [True, nonce]): 400,
        _signed(mailing, "password-reset", [user_id, nonce, "extra"]): 400,
        _signed(mailing, "password-reset", [user_id + 1000, nonce]): 410,
        _signed(mailing, "password-reset", [user_id, "another nonce"]): 410,
        link.partition("token=")[2][:-2] + "xx": 400,  # a real link, its signature changed
    }
    for token, status in cases.items():
        response = client_from(mailing).get(f"{password_reset.RESET_PATH}?token={token}")
        assert response.status_code == status, token
    assert _opened(mailing, link)  # the real link still works


def test_a_reset_link_stands_in_for_the_password_only_not_the_second_factor(mailing, smtp):
    secret, _ = enrol(mailing, stored(mailing, "id"))
    client = _opened(mailing, mailed_link(mailing, smtp))

    response = set_password(client)

    assert response.status_code == 302 and response.headers["Location"] == "/login/two-factor"
    assert client.get("/account").status_code == 302  # not signed in yet
    step = client.get("/login/two-factor")
    assert "enter a code from your authenticator app" in step.get_data(as_text=True)
    assert second_step(client, code_for(secret)).status_code == 302
    assert client.get("/account").status_code == 200
    assert can_log_in(mailing, NEW_PASSWORD)
