"""The owner's mails about their second factor, through a real SMTP server: set up, recovery code used, switched
off, reset by an admin. None carries a secret or a code, and none can be switched off."""

from __future__ import annotations

from app.accounts import service
from app.mail.core import MailCore
from tests.functional.mail.conftest import mail_settings
from tests.support import PASSWORD, AuthActions, csrf_token_from
from tests.two_factor_support import code_for, recovery_codes_on_page, second_step, secret_on_page


def delivered(app, smtp) -> list:
    MailCore.of(app).sender.send_due()
    return smtp.recorder.messages()


def text_of(message) -> str:
    return message.get_body(("plain",)).get_content()


def test_the_owner_is_told_of_each_change_to_their_second_factor(apps, smtp):
    app = apps(**mail_settings(smtp))
    with app.app_context():
        service.create_user("ada@example.com", PASSWORD)
        service.create_user("root@example.com", PASSWORD, is_admin=True)
    client = app.test_client()
    auth = AuthActions(client)
    auth.login()
    page = client.get("/account/two-factor/enrol").get_data(as_text=True)
    secret = secret_on_page(page)
    assert "keys.example.com" in page  # the issuer the app shows: the host of PUBLIC_BASE_URL (in the QR's URI)
    done = client.post("/account/two-factor/enrol", data={"csrf_token": csrf_token_from(page),
                                                          "code": code_for(secret)})
    codes = recovery_codes_on_page(done.get_data(as_text=True))
    [enabled] = delivered(app, smtp)
    assert enabled["To"] == "ada@example.com"
    assert enabled["Subject"] == "Two-factor sign-in is on for your Keyfob account"
    body = text_of(enabled)
    assert "No setting turns mails like this one off." in body and "To stop mails" not in body
    assert secret not in body and not any(code in body for code in codes)

    client = app.test_client()
    auth = AuthActions(client)
    auth.login()
    assert second_step(client, codes[0]).status_code == 302
    used = delivered(app, smtp)[-1]
    assert used["Subject"] == "A recovery code of your Keyfob account was used"
    assert "You have 9 left" in text_of(used) and codes[0] not in text_of(used)

    token = csrf_token_from(client.get("/account/two-factor/disable").get_data(as_text=True))
    # The authenticator's current code confirmed the set-up, so it cannot be used again: a recovery code then.
    assert client.post("/account/two-factor/disable", data={"csrf_token": token, "password": PASSWORD,
                                                            "code": codes[1]}).status_code == 302
    spent, disabled = delivered(app, smtp)[-2:]
    assert spent["Subject"] == "A recovery code of your Keyfob account was used"
    assert disabled["Subject"] == "Two-factor sign-in is off for your Keyfob account"

    # On again, then reset by an admin.
    page = client.get("/account/two-factor/enrol").get_data(as_text=True)
    secret = secret_on_page(page)
    client.post("/account/two-factor/enrol", data={"csrf_token": csrf_token_from(page), "code": code_for(secret)})
    admin = app.test_client()
    AuthActions(admin).login(email="root@example.com")
    users_page = admin.get("/admin/users").get_data(as_text=True)
    with app.app_context():
        user_id = service.find_user("ada@example.com").id
    assert admin.post(f"/admin/users/{user_id}/reset-two-factor",
                      data={"csrf_token": csrf_token_from(users_page)}).status_code == 302
    messages = delivered(app, smtp)
    assert [message["Subject"] for message in messages[-2:]] == [
        "Two-factor sign-in is on for your Keyfob account", "Your Keyfob second factor was reset"]
    assert all(message["To"] == "ada@example.com" for message in messages)
    assert len(messages) == 6
