"""Registration can be closed, and is throttled per client IP: registering tells whether an email already has an
account (there is no email step to hide that behind), so the throttle bounds how fast addresses can be probed."""

from __future__ import annotations

from tests.functional.keyhelpers import count
from tests.support import AuthActions


def test_closed_registration_refuses_sign_ups_and_hides_the_links(apps):
    app = apps(ALLOW_REGISTRATION="false")
    client = app.test_client()
    page = client.get("/register")
    assert page.status_code == 403
    assert "Ask an administrator" in page.get_data(as_text=True)
    token = AuthActions(client).token("/login")
    posted = client.post("/register", data={"csrf_token": token, "email": "eve@example.com", "password": "x" * 20,
                                            "confirm": "x" * 20})
    assert posted.status_code == 403
    assert count(app, "users") == 0
    login = client.get("/login").get_data(as_text=True)
    assert 'href="/register' not in login and "Ask an administrator to make you an account" in login
    # Accounts are still made from the command line, and those people log in as usual.
    assert app.test_cli_runner().invoke(args=["users", "create", "ada@example.com"],
                                        env={"KEYFOB_PASSWORD": "a sturdy passphrase"}).exit_code == 0
    assert AuthActions(client).login().status_code == 302


def test_open_registration_links_to_the_form(apps):
    client = apps().test_client()
    assert 'href="/register' in client.get("/login").get_data(as_text=True)
    assert client.get("/register").status_code == 200


def test_sign_ups_from_one_address_are_throttled_whether_or_not_the_email_is_taken(apps):
    app = apps(REGISTRATION_THROTTLE_PER_IP="3 per hour")
    first, second = AuthActions(app.test_client()), AuthActions(app.test_client())
    assert first.register(email="ada@example.com").status_code == 302
    assert second.register(email="ada@example.com").status_code == 422  # taken: says so, and counts
    assert second.register(email="bob@example.com").status_code == 302
    refused = AuthActions(app.test_client()).register(email="carol@example.com")
    assert refused.status_code == 429
    assert 3000 < int(refused.headers["Retry-After"]) <= 3600
    html = refused.get_data(as_text=True)
    assert "Too many accounts tried from your address. Try again in " in html and "minutes" in html
    assert "carol@example.com" in html  # the form keeps what was typed
    assert count(app, "users") == 2
    # Form mistakes cost nothing: the throttle counts only attempts that could make an account.
    assert AuthActions(app.test_client()).register(email="not-an-email").status_code == 422


def test_the_throttle_is_per_address(apps):
    app = apps(REGISTRATION_THROTTLE_PER_IP="1 per hour")
    assert AuthActions(app.test_client()).register(email="ada@example.com").status_code == 302
    assert AuthActions(app.test_client()).register(email="bob@example.com").status_code == 429
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "192.0.2.7"
    assert AuthActions(other).register(email="bob@example.com").status_code == 302
    assert count(app, "users") == 2
