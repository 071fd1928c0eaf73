"""Register, log in, log out through the real forms."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.accounts.models import User
from app.extensions import db
from tests.support import PASSWORD, count_hashing


def users(app) -> list[User]:
    with app.app_context():
        return list(db.session.scalars(select(User)))


def test_register_logs_in_and_stores_normalised_email_and_argon2id_hash(app, client, auth):
    response = auth.register(email="  Ada.Lovelace@Example.COM ")
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    [user] = users(app)
    assert user.email == "ada.lovelace@example.com"
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash
    page = client.get("/account", follow_redirects=True).get_data(as_text=True)
    assert "ada.lovelace@example.com" in page
    assert "Welcome to Keyfob" in page


def test_pages_have_real_labels(client):
    for path, fields in {"/login": ("email", "password"), "/register": ("email", "password", "confirm")}.items():
        html = client.get(path).get_data(as_text=True)
        for name in fields:
            assert f'<label for="{name}">' in html
            assert f'id="{name}"' in html


@pytest.mark.parametrize(("form", "field", "message"), [
    ({"email": ""}, "email", "Enter your email address."),
    ({"email": "not-an-email"}, "email", "must have an @-sign"),
    ({"email": "a@" + "b" * 260 + ".com"}, "email", "longer than 254"),
    ({"password": "", "confirm": ""}, "password", "Choose a password."),
    ({"password": "short1", "confirm": "short1"}, "password", "at least 8 characters"),
    ({"password": "x" * 257, "confirm": "x" * 257}, "password", "at most 256 characters"),
    ({"password": "password123", "confirm": "password123"}, "password", "most common passwords"),
    ({"password": "ada@example.com", "confirm": "ada@example.com"}, "password", "email address as your password"),
    ({"confirm": "something else"}, "confirm", "The passwords do not match."),
    ({"confirm": ""}, "confirm", "Repeat the password."),
])
def test_register_bad_input_shows_error_next_to_the_field(app, client, auth, form, field, message):
    data = {"email": "ada@example.com", "password": PASSWORD, **form}
    response = auth.register(**data)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    error_at = html.find(f'id="{field}-error"')
    assert error_at > html.find(f'id="{field}"') > 0, "error must follow its own field"
    assert message in html[error_at:error_at + 400]
    assert 'aria-invalid="true"' in html
    assert users(app) == []


@pytest.mark.parametrize(("form", "field", "message"), [
    ({"email": ""}, "email", "Enter your email address."),
    ({"email": "a@" + "b" * 260 + ".com"}, "email", "longer than 254"),
    ({"password": ""}, "password", "Enter your password."),
    ({"password": "x" * 257}, "password", "longer than 256"),
])
def test_login_bad_input_shows_error_next_to_the_field_and_signs_no_one_in(app, client, auth, user, form, field,
                                                                            message):
    hashing = count_hashing(app)
    response = auth.login(**form)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    error_at = html.find(f'id="{field}-error"')
    assert error_at > html.find(f'id="{field}"') > 0
    assert message in html[error_at:error_at + 400]
    assert hashing.calls == 0  # refused before any password work
    assert client.get("/account").status_code == 302


def test_long_passwords_up_to_the_limit_are_accepted(app, auth):
    long_password = "correct horse battery staple " * 8 + "x" * 24  # 256 characters
    assert len(long_password) == 256
    assert auth.register(password=long_password).status_code == 302
    assert auth.logout().status_code == 302
    assert auth.login(password=long_password).status_code == 302


def test_register_duplicate_email_any_case(app, auth, user):
    response = auth.register(email="ADA@example.com")
    assert response.status_code == 422
    assert "already exists" in response.get_data(as_text=True)
    assert len(users(app)) == 1


def test_login_and_logout(app, client, auth, user):
    response = auth.login(email="Ada@Example.com")
    assert response.status_code == 302
    assert client.get("/account").status_code == 200
    with app.app_context():
        assert db.session.get(User, user).last_login_at is not None
    response = auth.logout()
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    assert client.get("/account").status_code == 302


def test_logout_requires_post(client, auth, user):
    auth.login()
    assert client.get("/logout").status_code == 405
    assert client.get("/account").status_code == 200


def test_account_requires_login_and_remembers_next(client):
    response = client.get("/account")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=%2Faccount")


def test_wrong_password_and_unknown_email_look_the_same(client, auth, user):
    wrong = auth.login(password="not the password")
    unknown = auth.login(email="nobody@example.com")
    assert wrong.status_code == unknown.status_code == 422
    for response in (wrong, unknown):
        assert "The email or password is incorrect." in response.get_data(as_text=True)
    assert client.get("/account").status_code == 302


@pytest.mark.parametrize("email,password", [
    ("nobody@example.com", PASSWORD),          # unknown email
    ("ada@example.com", "not the password"),   # wrong password
    ("not an email", PASSWORD),                # cannot even be an account
])
def test_failed_login_runs_the_hasher_exactly_once(app, auth, user, email, password):
    counting = count_hashing(app)
    response = auth.login(email=email, password=password)
    assert response.status_code == 422
    assert counting.calls == 1


def test_a_deactivated_accounts_right_password_runs_the_hasher_exactly_once_too(app, auth, user):
    """Otherwise the time a refusal takes would tell a deactivated account from a wrong password."""
    with app.app_context():
        db.session.get(User, user).is_active = False
        db.session.commit()
    counting = count_hashing(app)
    response = auth.login()
    assert response.status_code == 422
    assert counting.calls == 1


def test_deactivated_user_cannot_log_in_and_loses_session(app, client, auth, user):
    auth.login()
    with app.app_context():
        db.session.get(User, user).is_active = False
        db.session.commit()
    assert client.get("/account").status_code == 302
    response = auth.login()
    assert response.status_code == 422
    assert "incorrect" in response.get_data(as_text=True)


def test_session_is_renewed_at_login(app, client, auth, user):
    with client.session_transaction() as session:
        session["planted"] = "by an attacker"
    before = auth.token()
    auth.login()
    with client.session_transaction() as session:
        assert "planted" not in session
        assert session.get("csrf_token") != before


def test_old_session_cookie_is_dead_after_logout(app, client, auth, user):
    auth.login()
    stolen = client.get_cookie("keyfob_session").value
    auth.logout()
    thief = app.test_client()
    thief.set_cookie("keyfob_session", stolen)
    assert thief.get("/account").status_code == 302


@pytest.mark.parametrize("target,expected", [
    ("/account", "/account"),
    ("/account?tab=1", "/account?tab=1"),
    ("https://evil.example/", "/"),
    ("//evil.example/", "/"),
    ("/\\evil.example", "/"),
    ("\\\\evil.example", "/"),
    ("javascript:alert(1)", "/"),
    ("/%0d%0aLocation:x", "/%0d%0aLocation:x"),
    ("/\nevil", "/"),
    ("account", "/"),
])
def test_next_redirects_only_to_local_paths(auth, user, target, expected):
    response = auth.login(next=target)
    assert response.status_code == 302
    assert response.headers["Location"] == expected


def test_next_survives_the_login_form(client):
    html = client.get("/login?next=/account").get_data(as_text=True)
    assert 'name="next" type="hidden" value="/account"' in html


def test_signed_in_user_visiting_login_goes_home(client, auth, user):
    auth.login()
    assert client.get("/login").headers["Location"] == "/"
    assert client.get("/register").headers["Location"] == "/"


def test_index_sends_visitors_to_login_and_members_to_their_account(client, auth, user):
    assert client.get("/").headers["Location"] == "/login"
    auth.login()
    assert client.get("/").headers["Location"] == "/keys/"


@pytest.mark.parametrize("path,data", [
    ("/login", {"email": "ada@example.com", "password": PASSWORD}),
    ("/register", {"email": "new@example.com", "password": PASSWORD, "confirm": PASSWORD}),
    ("/logout", {}),
])
@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_csrf_missing_or_wrong_is_refused(app, client, user, path, data, token):
    if token is not None:
        data = {**data, "csrf_token": token}
    response = client.post(path, data=data)
    assert response.status_code == 400
    assert "did not come from Keyfob" in response.get_data(as_text=True)
    assert len(users(app)) == 1
    assert client.get("/account").status_code == 302


def test_password_is_rehashed_when_parameters_change(apps, user, app):
    with app.app_context():
        old_hash = db.session.get(User, user).password_hash
    assert "m=19456,t=2,p=1" in old_hash
    stronger = apps(PASSWORD_HASH_MEMORY_KIB=20480, PASSWORD_HASH_TIME_COST=3)  # app's database, restarted
    client = stronger.test_client()
    from tests.support import AuthActions

    assert AuthActions(client).login().status_code == 302
    with stronger.app_context():
        new_hash = db.session.get(User, user).password_hash
    assert "m=20480,t=3,p=1" in new_hash
    assert AuthActions(client).logout().status_code == 302
    assert AuthActions(client).login().status_code == 302
