"""The owner's mails about their passkeys, through a real SMTP server: one added, one removed. Neither carries the
credential, and neither can be switched off."""

from __future__ import annotations

from app.accounts import service, two_factor
from app.accounts.models import User
from app.audit.service import Actor
from app.extensions import db
from app.mail.core import MailCore
from tests.functional.mail.conftest import mail_settings
from tests.passkey_support import SoftAuthenticator, register
from tests.support import PASSWORD, AuthActions, csrf_token_from
from tests.two_factor_support import code_for, enrol


def delivered(app, smtp) -> list:
    MailCore.of(app).sender.send_due()
    return smtp.recorder.messages()


def test_the_owner_is_told_when_a_passkey_is_added_or_removed(apps, smtp):
    settings = mail_settings(smtp)
    app = apps(**settings)
    with app.app_context():
        service.create_user("ada@example.com", PASSWORD)
    client = app.test_client()
    AuthActions(client).login()
    authenticator = SoftAuthenticator(origin=settings["PUBLIC_BASE_URL"])
    assert register(client, authenticator, name="Work laptop").status_code == 302
    [added] = delivered(app, smtp)
    assert added["To"] == "ada@example.com" and added["Subject"] == "A passkey was added to your Keyfob account"
    body = added.get_body(("plain",)).get_content()
    assert "'Work laptop'" in body and "No setting turns mails like this one off." in body
    assert authenticator.id not in body

    page = client.get("/account").get_data(as_text=True)
    path = page[page.index("/account/passkeys/"):].split('"')[0]
    token = csrf_token_from(client.get(path).get_data(as_text=True))
    assert client.post(path, data={"csrf_token": token, "proof": PASSWORD}).status_code == 302
    removed = delivered(app, smtp)[-1]
    assert removed["Subject"] == "A passkey was removed from your Keyfob account"
    assert "'Work laptop'" in removed.get_body(("plain",)).get_content()


def test_switching_codes_off_while_passkeys_remain_says_they_still_guard_sign_in(apps, smtp):
    settings = mail_settings(smtp)
    app = apps(**settings)
    with app.app_context():
        user_id = service.create_user("ada@example.com", PASSWORD).id
    client = app.test_client()
    AuthActions(client).login()
    assert register(client, SoftAuthenticator(origin=settings["PUBLIC_BASE_URL"])).status_code == 302
    secret, _ = enrol(app, user_id)
    with app.app_context():
        two_factor.disable(db.session.get(User, user_id), PASSWORD, code_for(secret), actor=Actor.cli())

    off = delivered(app, smtp)[-1]
    assert off["Subject"] == "Authenticator codes are off for your Keyfob account"
    body = off.get_body(("plain",)).get_content()
    assert "your passkeys still guard sign-in" in body and "password alone" not in body
