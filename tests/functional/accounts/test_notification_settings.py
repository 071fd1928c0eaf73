"""The account page's notification settings: four switches saved by a plain POST or by htmx, audited, CSRF-checked,
bad values refused on the form, and a note when this Keyfob sends no mail."""

from __future__ import annotations

import pytest

from app.accounts import service
from app.accounts.models import User
from app.extensions import db
from tests.functional.keyhelpers import audit_rows
from tests.support import PASSWORD, AuthActions, csrf_token_from

SWITCHES = ("notify_expiry", "notify_suspension", "notify_new_network", "notify_admin_action")
HTMX = {"HX-Request": "true"}


def switches_of(app, email: str = "ada@example.com") -> dict[str, bool]:
    with app.app_context():
        user = db.session.scalar(db.select(User).where(User.email == email))
        return {name: getattr(user, name) for name in SWITCHES}


def post(client, data: dict, headers: dict | None = None, token: str | None = None):
    token = token if token is not None else csrf_token_from(client.get("/account").get_data(as_text=True))
    return client.post("/account/notifications", data={"csrf_token": token, **data}, headers=headers or {})


@pytest.fixture
def signed_in(app, client, auth, user):
    auth.login()
    return client


def test_the_account_page_shows_the_switches_on_by_default(app, signed_in):
    page = signed_in.get("/account").get_data(as_text=True)
    assert 'id="notifications"' in page
    for name in SWITCHES:
        assert f'id="{name}" name="{name}" type="checkbox" value="y"' in page.replace("checked ", "")
    assert page.count("checked") == 4
    assert "Mail is not configured" not in page  # the test app writes mail to its mailbox folder


def test_a_plain_post_saves_redirects_to_the_section_and_is_audited(app, signed_in):
    response = post(signed_in, {"notify_expiry": "y", "notify_admin_action": "y"})
    assert response.status_code == 302
    assert response.headers["Location"] == "/account#notifications"
    assert switches_of(app) == {"notify_expiry": True, "notify_suspension": False, "notify_new_network": False,
                                "notify_admin_action": True}
    [event] = audit_rows(app, "user.notifications_changed")
    assert event["detail"].endswith("suspensions off, new networks off")
    page = signed_in.get("/account").get_data(as_text=True)
    assert "Saved your notification settings." in page
    assert page.count("checked") == 2

    post(signed_in, {"notify_expiry": "y", "notify_admin_action": "y"})  # nothing changed: nothing audited
    assert len(audit_rows(app, "user.notifications_changed")) == 1


def test_an_htmx_post_swaps_the_fragment_and_says_saved(app, signed_in):
    response = post(signed_in, {"notify_expiry": "y", "notify_suspension": "on", "notify_new_network": "y"},
                    headers=HTMX)
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert '<section id="notifications"' in body
    assert "<html" not in body and 'role="status">Saved<' in body
    assert response.headers["Vary"].count("HX-Request") == 1
    assert switches_of(app)["notify_admin_action"] is False
    assert switches_of(app)["notify_suspension"] is True


def test_a_post_without_a_valid_csrf_token_changes_nothing(app, signed_in):
    response = post(signed_in, {}, token="forged")
    assert response.status_code == 400
    assert all(switches_of(app).values())
    assert audit_rows(app, "user.notifications_changed") == []


@pytest.mark.parametrize("headers", [{}, HTMX], ids=["plain", "htmx"])
@pytest.mark.parametrize("value", ["maybe", "false", "0", "y\r\nBcc: x@example.com", ["y", "y"]])
def test_a_value_other_than_on_is_an_error_on_the_field_not_a_500(app, signed_in, headers, value):
    response = post(signed_in, {"notify_expiry": "y", "notify_new_network": value}, headers=headers)
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert 'id="notify_new_network-error">Choose on or off.' in body
    assert ("<html" in body) is not bool(headers)  # the whole page without JavaScript, the fragment with htmx
    assert all(switches_of(app).values())  # nothing saved, not even the valid switch
    assert audit_rows(app, "user.notifications_changed") == []


def test_signed_out_posts_go_to_the_login_page(app, client, user):
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    response = client.post("/account/notifications", data={"csrf_token": token})
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert all(switches_of(app).values())


def test_without_mail_the_section_says_so_and_still_saves(apps):
    app = apps(KEYFOB_ENV="production", SESSION_COOKIE_SECURE=False)
    client = app.test_client()
    with app.app_context():
        service.create_user("ada@example.com", PASSWORD)
    AuthActions(client).login()
    page = client.get("/account").get_data(as_text=True)
    assert "Mail is not configured on this Keyfob" in page
    assert post(client, {"notify_expiry": "y"}).status_code == 302
    assert switches_of(app) == {"notify_expiry": True, "notify_suspension": False, "notify_new_network": False,
                                "notify_admin_action": False}
