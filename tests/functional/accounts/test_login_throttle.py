"""Failed logins are throttled per account and per IP, with a clear wait time and no permanent lockout."""

from __future__ import annotations

import re
import time

import pytest

from tests.support import PASSWORD, AuthActions, count_hashing


@pytest.fixture
def throttled_app(apps):
    app = apps(LOGIN_THROTTLE_PER_ACCOUNT="3 per 5 minutes", LOGIN_THROTTLE_PER_IP="5 per 5 minutes")
    from app.accounts import service

    with app.app_context():
        service.create_user("ada@example.com", PASSWORD)
    return app


def login(app, email="ada@example.com", password=PASSWORD, ip="203.0.113.7"):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = ip
    return AuthActions(client).login(email=email, password=password)


def test_account_is_throttled_after_repeated_failures(throttled_app):
    for _ in range(3):
        assert login(throttled_app, password="wrong password").status_code == 422
    # Even the right password waits: otherwise the throttle would only slow down wrong guesses.
    response = login(throttled_app)
    assert response.status_code == 429
    seconds = int(response.headers["Retry-After"])
    assert 0 < seconds <= 300
    assert re.search(rf"Try again in {seconds} s\.", response.get_data(as_text=True))
    # Another IP is throttled for this account too, and the email's case does not matter.
    assert login(throttled_app, email="ADA@example.com", ip="198.51.100.1").status_code == 429


def test_throttled_attempt_does_not_run_the_hasher(throttled_app):
    for _ in range(3):
        login(throttled_app, password="wrong password")
    counting = count_hashing(throttled_app)
    assert login(throttled_app).status_code == 429
    assert counting.calls == 0


def test_ip_is_throttled_across_accounts(throttled_app):
    for n in range(5):
        assert login(throttled_app, email=f"guess{n}@example.com").status_code == 422
    assert login(throttled_app, email="someone@example.com").status_code == 429
    # The same accounts from another IP are still allowed to try.
    assert login(throttled_app, ip="198.51.100.1").status_code == 302


def test_success_clears_the_account_failures(throttled_app):
    for _ in range(2):
        login(throttled_app, password="wrong password")
    assert login(throttled_app).status_code == 302
    for _ in range(2):
        assert login(throttled_app, password="wrong password").status_code == 422
    assert login(throttled_app).status_code == 302


def test_lockout_is_never_permanent(apps):
    app = apps(LOGIN_THROTTLE_PER_ACCOUNT="2 per 1 second")
    from app.accounts import service

    with app.app_context():
        service.create_user("ada@example.com", PASSWORD)
    for _ in range(2):
        login(app, password="wrong password")
    assert login(app).status_code == 429
    time.sleep(1.1)
    assert login(app).status_code == 302
