"""Address confirmation at sign-up (EMAIL_CONFIRMATION), through the real forms and a real SMTP server: one answer
and the same work for a new and a taken address, the link for a new one and a notice for a taken one, key creation
refused on every face until the link is followed, a new link on request (throttled), bad links refused with a 4xx,
and, with the setting off, sign-up exactly as before."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from app.accounts.models import User
from app.accounts.signed_links import sign
from app.audit.service import Actor
from app.config import ConfigError, load_settings
from app.database import utcnow
from app.extensions import db
from app.keys import service as keys
from app.mail.core import MailCore
from tests.functional.dashboard_helpers import create_form, create_key, page_text
from tests.functional.keyhelpers import add_user, bearer, count, new_key
from tests.functional.mail.conftest import mail_settings, smtp  # noqa: F401  (the SMTP server fixture)
from tests.redis_server import running_redis
from tests.support import PASSWORD, AuthActions, count_hashing, csrf_token_from

BASE = "https://keys.example.com"
LINK = re.compile(re.escape(BASE) + r"(/confirm-email/[A-Za-z0-9_.\-]+)")
BANNER = "Confirm your address:"
NOT_CONFIRMED = "is not confirmed yet"
CSRF_HEADER = re.compile(r'(?<="X-CSRFToken": ")[^"]+')


@pytest.fixture
def app(apps, smtp):  # noqa: F811  (the fixture imported above)
    """Confirmation on, mail to the SMTP server; ada@example.com has an account (made before, so confirmed)."""
    app = apps(EMAIL_CONFIRMATION="true", **mail_settings(smtp))
    add_user(app)
    return app


def delivered(app, smtp) -> list:  # noqa: F811
    """Deliver the outbox, then every message the SMTP server received so far."""
    MailCore.of(app).sender.send_due()
    return smtp.recorder.messages()


def text_of(message) -> str:
    return message.get_body(("plain",)).get_content()


def link_in(message) -> str:
    """The path of the confirmation link in a mail."""
    return LINK.search(text_of(message)).group(1)


def user_row(app, email: str) -> User:
    with app.app_context():
        user = db.session.scalar(db.select(User).where(User.email == email))
        db.session.expunge(user)
        return user


def signed_up(app, email: str = "bob@example.com"):
    """A client that signed bob up and then logged in (an unconfirmed account may log in; it may not make keys)."""
    client = app.test_client()
    assert AuthActions(client).register(email=email).status_code == 200
    assert AuthActions(client).login(email=email).status_code == 302
    return client


def confirm(client, path: str):
    """Open the mailed link, then press its button, as a person does."""
    page = client.get(path)
    assert page.status_code == 200, page_text(page)
    return client.post(path, data={"csrf_token": csrf_token_from(page_text(page))})


# -- sign-up -------------------------------------------------------------------------------------------------------

def test_sign_up_answers_the_same_with_the_same_work_for_a_new_and_a_taken_address(app):
    hashing = count_hashing(app)
    answers = []
    for email in ("bob@example.com", "ada@example.com"):
        client = app.test_client()  # each from a new browser; its session's CSRF token is masked with the address
        before = hashing.calls
        response = AuthActions(client).register(email=email)
        html = CSRF_HEADER.sub("TOKEN", page_text(response)).replace(email, "ADDRESS")
        answers.append((response.status_code, sorted(response.headers.keys()), html, hashing.calls - before))
        assert client.get("/account").status_code == 302  # nobody is signed in by it
    assert answers[0] == answers[1]
    status, headers, html, hashes = answers[0]
    assert status == 200 and hashes == 1 and "Location" not in headers
    assert "Check your inbox: we sent a link to <strong>ADDRESS</strong>" in html
    assert count(app, "users") == 2
    assert user_row(app, "bob@example.com").email_confirmed_at is None
    assert user_row(app, "ada@example.com").email_confirmed_at is not None


def test_a_new_address_gets_its_link_and_a_taken_one_a_notice_without_any_password(app, smtp):  # noqa: F811
    AuthActions(app.test_client()).register(email="bob@example.com")
    AuthActions(app.test_client()).register(email="Ada@Example.com ")
    messages = {message["To"]: message for message in delivered(app, smtp)}
    assert set(messages) == {"bob@example.com", "ada@example.com"}
    link_mail, notice = messages["bob@example.com"], messages["ada@example.com"]
    assert link_mail["Subject"] == "Confirm your address for Keyfob"
    assert "within 3 days" in text_of(link_mail) and link_in(link_mail).startswith("/confirm-email/")
    assert notice["Subject"] == "Someone tried to sign up to Keyfob with your address"
    assert f"log in: {BASE}/login" in text_of(notice) and f"Set a new one: {BASE}/forgot-password" in text_of(notice)
    assert LINK.search(text_of(notice)) is None
    for message in messages.values():
        assert PASSWORD not in message.as_string()
        assert "You get this mail because someone" in text_of(message)


def test_the_notice_to_a_taken_address_goes_out_once_an_hour_and_the_answer_does_not_change(app, smtp):  # noqa: F811
    answers = {AuthActions(app.test_client()).register(email="ada@example.com").status_code for _ in range(3)}
    assert answers == {200}
    assert [message["To"] for message in delivered(app, smtp)] == ["ada@example.com"]


# -- confirming, and keys before and after ---------------------------------------------------------------------------

def test_keys_are_refused_until_the_link_is_followed_and_made_after(app, smtp):  # noqa: F811
    client = signed_up(app)
    bob = user_row(app, "bob@example.com")
    assert BANNER in page_text(client.get("/keys/"))

    # The dashboard: an inline refusal, with the banner's "Send a new link" on the same page.
    refused = create_form(client)
    assert refused.status_code == 422
    assert NOT_CONFIRMED in page_text(refused) and "Send a new link" in page_text(refused)
    # The service every face calls, and the CLI over it.
    with app.app_context(), pytest.raises(keys.OwnerUnconfirmed, match=NOT_CONFIRMED):
        keys.create(db.session.get(User, bob.id), "direct", ["read:data"], utcnow() + timedelta(days=5),
                    actor=Actor.cli())
    cli = app.test_cli_runner().invoke(args=["keys", "create", "bob@example.com", "--name", "from a shell"])
    assert cli.exit_code != 0 and NOT_CONFIRMED in cli.output
    assert count(app, "api_keys") == 0

    # The link opens a page; only its button confirms (a mail scanner's GET changes nothing).
    [message] = delivered(app, smtp)
    path = link_in(message)
    page = client.get(path)
    assert page.status_code == 200 and "Confirm my address" in page_text(page)
    assert page.headers["Referrer-Policy"] == "no-referrer" and page.headers["Cache-Control"] == "no-store"
    assert user_row(app, "bob@example.com").email_confirmed_at is None
    confirmed = confirm(client, path)
    assert confirmed.status_code == 302 and confirmed.headers["Location"] == "/keys/"
    assert confirmed.headers["Referrer-Policy"] == "no-referrer"
    when = user_row(app, "bob@example.com").email_confirmed_at
    assert when is not None
    dashboard = page_text(client.get("/keys/"))
    assert "bob@example.com is confirmed" in dashboard and BANNER not in dashboard

    create_key(client)
    assert count(app, "api_keys") == 1
    # Following the link again is harmless: the same answer, the first confirmation time kept.
    assert "is confirmed already" in page_text(client.get(path))
    assert client.post(path, data={"csrf_token": csrf_token_from(page_text(client.get("/keys/")))}).status_code == 302
    assert user_row(app, "bob@example.com").email_confirmed_at == when


def test_the_link_works_without_a_session_and_sends_to_the_login_page(app, smtp):  # noqa: F811
    AuthActions(app.test_client()).register(email="bob@example.com")
    [message] = delivered(app, smtp)
    response = confirm(app.test_client(), link_in(message))  # another browser: the mail opened on a phone
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert user_row(app, "bob@example.com").email_confirmed_at is not None


def test_the_api_answers_an_unconfirmed_owner_with_403_email_unconfirmed(app):
    # An unconfirmed account has no key to call the API with: this one's address is made unconfirmed after the fact.
    user_id = add_user(app, "carol@example.com")
    _, token = new_key(app, user_id, scopes=("keys:read", "keys:write"))
    with app.app_context():
        db.session.get(User, user_id).email_confirmed_at = None
        db.session.commit()
    response = app.test_client().post("/api/v1/api-keys", json={"name": "child"}, headers=bearer(token))
    assert response.status_code == 403
    assert response.get_json()["error"] == "email_unconfirmed"
    assert NOT_CONFIRMED in response.get_json()["message"]
    assert count(app, "api_keys") == 1


def test_accounts_made_by_an_admin_are_confirmed_and_get_keys(app):
    made = app.test_cli_runner().invoke(args=["users", "create", "dave@example.com"],
                                        env={"KEYFOB_PASSWORD": PASSWORD})
    assert made.exit_code == 0, made.output
    assert user_row(app, "dave@example.com").email_confirmed_at is not None
    cli = app.test_cli_runner().invoke(args=["keys", "create", "dave@example.com", "--name", "from a shell"])
    assert cli.exit_code == 0, cli.output
    client = app.test_client()
    AuthActions(client).login(email="dave@example.com")
    assert BANNER not in page_text(client.get("/keys/"))


# -- a new link ------------------------------------------------------------------------------------------------------

def resend(client):
    token = csrf_token_from(page_text(client.get("/account")))
    return client.post("/account/confirm-email", data={"csrf_token": token})


def test_a_new_link_is_sent_on_request_at_most_once_a_minute_and_both_links_work(app, smtp):  # noqa: F811
    client = signed_up(app)
    sent = resend(client)
    assert sent.status_code == 302
    assert "We sent a new link to bob@example.com" in page_text(client.get(sent.headers["Location"]))
    refused = resend(client)
    assert refused.status_code == 429
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert "We sent you a link a short while ago" in page_text(refused)
    messages = delivered(app, smtp)
    assert [message["To"] for message in messages] == ["bob@example.com"] * 2
    assert confirm(client, link_in(messages[1])).status_code == 302
    assert confirm(client, link_in(messages[0])).status_code == 302  # the first still works; nothing changes
    # Confirmed now: nothing to resend, and nothing is.
    assert resend(client).status_code == 302
    assert len(delivered(app, smtp)) == 2


def test_a_new_link_while_the_counter_store_is_down_is_503_and_sends_nothing(apps, smtp, tmp_path):  # noqa: F811
    with running_redis(tmp_path / "redis") as redis:
        app = apps(EMAIL_CONFIRMATION="true", **mail_settings(smtp),
                   RATELIMIT_STORAGE_URI=redis.url + "?socket_connect_timeout=1&socket_timeout=1")
        client = signed_up(app)
        token = csrf_token_from(page_text(client.get("/account")))
        redis.stop()
        response = client.post("/account/confirm-email", data={"csrf_token": token})
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert count(app, "outbox_messages") == 1  # the sign-up's link only


# -- links that do not confirm ---------------------------------------------------------------------------------------

class _MadeEarlier(TimestampSigner):
    def get_timestamp(self) -> int:
        return int(time.time()) - 4 * 86400


def bad_links(app) -> dict[str, tuple[str, int]]:
    """Paths of links that must not confirm bob's address, with the status each gets."""
    bob = user_row(app, "bob@example.com")
    with app.test_request_context():
        good = sign("confirm-email", [bob.id, bob.email])
        expired = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="keyfob.confirm-email",
                                         signer=_MadeEarlier).dumps([bob.id, bob.email])
        links = {
            "garbage": "not-a-token",
            "tampered": good[:-2] + ("AA" if not good.endswith("AA") else "BB"),
            "another purpose": sign("password-reset", [bob.id, bob.email]),
            "another address": sign("confirm-email", [bob.id, "bob@old.example.com"]),
            "no such account": sign("confirm-email", [999_999, bob.email]),
            "past any id": sign("confirm-email", [2**63, bob.email]),
            "not a list": sign("confirm-email", {"id": bob.id}),
            "huge": "A" * 20_000,
            "non-ASCII": "%C3%A9t%C3%A9." + good,
        }
    paths = {name: (f"/confirm-email/{token}", 400) for name, token in links.items()}
    paths["expired"] = (f"/confirm-email/{expired}", 410)
    return paths


def test_bad_links_get_a_clear_4xx_and_confirm_nothing(app):
    client = signed_up(app)
    token = csrf_token_from(page_text(client.get("/account")))
    for name, (path, status) in bad_links(app).items():
        for response in (client.get(path), client.post(path, data={"csrf_token": token})):
            assert response.status_code == status, (name, response.request.method)
            assert response.headers["Referrer-Policy"] == "no-referrer", name
            assert response.headers["Cache-Control"] == "no-store", name
            html = page_text(response)
            assert ("expired" if status == 410 else "ask for a new one") in html, name
    with_address = bad_links(app)["another address"][0]
    assert "an address the account no longer has" in page_text(client.get(with_address))
    assert user_row(app, "bob@example.com").email_confirmed_at is None


# -- settings --------------------------------------------------------------------------------------------------------

def production(tmp_path, **settings) -> dict:
    return {"KEYFOB_ENV": "production", "SECRET_KEY": "s" * 40, "KEY_PEPPER": "p" * 40,
            "KEYFOB_INSTANCE_PATH": str(tmp_path), **settings}


def test_confirmation_without_mail_in_production_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigError, match=r"^EMAIL_CONFIRMATION=true needs mail: set MAIL_URL"):
        load_settings({}, production(tmp_path, EMAIL_CONFIRMATION="true"))
    mail = {"MAIL_URL": "smtp://127.0.0.1:25", "MAIL_FROM": "keyfob@example.com",
            "PUBLIC_BASE_URL": "https://keys.example.com"}
    assert load_settings({}, production(tmp_path, EMAIL_CONFIRMATION="true", **mail))["EMAIL_CONFIRMATION"] is True
    assert load_settings({}, production(tmp_path))["EMAIL_CONFIRMATION"] is False
    with pytest.raises(ConfigError, match="EMAIL_CONFIRMATION='maybe' must be true or false"):
        load_settings({}, production(tmp_path, EMAIL_CONFIRMATION="maybe", **mail))


def test_with_the_setting_off_sign_up_is_as_before_and_sends_nothing(apps, smtp):  # noqa: F811
    app = apps(**mail_settings(smtp))
    add_user(app)
    client = app.test_client()
    assert AuthActions(client).register(email="bob@example.com").status_code == 302  # signed in at once
    assert user_row(app, "bob@example.com").email_confirmed_at is not None
    assert BANNER not in page_text(client.get("/keys/"))
    create_key(client)
    taken = AuthActions(app.test_client()).register(email="ada@example.com")
    assert taken.status_code == 422 and "already exists" in page_text(taken)
    assert count(app, "outbox_messages") == 0


def test_turning_the_setting_off_lets_accounts_still_waiting_make_keys(apps, smtp):  # noqa: F811
    app = apps(EMAIL_CONFIRMATION="true", **mail_settings(smtp))
    signed_up(app)
    later = apps(**mail_settings(smtp))  # the same database, restarted without EMAIL_CONFIRMATION
    bob = user_row(later, "bob@example.com")
    assert bob.email_confirmed_at is None
    new_key(later, bob.id)
    with app.app_context(), pytest.raises(keys.OwnerUnconfirmed):
        keys.create(db.session.get(User, bob.id), "still waiting", [], utcnow() + timedelta(days=5),
                    actor=Actor.cli())
