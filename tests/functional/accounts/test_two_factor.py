"""Two-factor sign-in through the real pages: setting an authenticator up, the two steps of signing in (a code, a
wrong one, a replayed one, a recovery code, the step expiring, throttling, malformed input), switching it off, new
recovery codes, and the reset by an admin and by the CLI, each with its audit row."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.accounts import two_factor
from app.accounts.models import RecoveryCode, User
from app.database import utcnow
from app.extensions import db
from tests.support import PASSWORD, AuthActions, csrf_token_from
from tests.two_factor_support import (
    STEP,
    audit_events,
    code_for,
    enrol,
    load_user,
    recovery_codes_on_page,
    second_step,
    secret_on_page,
)


def text(response) -> str:
    return response.get_data(as_text=True)


def signed_in(client) -> bool:
    return client.get("/account").status_code == 200


@pytest.fixture
def enrolled(app, user):
    """Ada, with an authenticator: (her user id, its secret, her ten recovery codes)."""
    secret, codes = enrol(app, user)
    return user, secret, codes


# -- setting it up ---------------------------------------------------------------------------------------------------

def test_setting_up_needs_one_right_code_and_shows_ten_recovery_codes_once(app, client, auth, user):
    auth.login()
    page = client.get("/account")
    assert "Set up an authenticator app" in text(page)
    page = client.get("/account/two-factor/enrol")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    html = text(page)
    assert '<img src="data:image/svg+xml;charset=utf-8,%3Csvg' in html  # the QR code, drawn on the server: no script
    secret = secret_on_page(html)
    assert len(secret) == 32
    assert secret_on_page(text(client.get("/account/two-factor/enrol"))) == secret  # a reload keeps the secret
    token = csrf_token_from(html)

    wrong = client.post("/account/two-factor/enrol", data={"csrf_token": token, "code": "000000"
                                                           if code_for(secret) != "000000" else "111111"})
    assert wrong.status_code == 422 and "does not match" in text(wrong)
    assert load_user(app, user).totp_enabled_at is None

    right = client.post("/account/two-factor/enrol", data={"csrf_token": token, "code": code_for(secret)})
    assert right.status_code == 200 and right.headers["Cache-Control"] == "no-store"
    codes = recovery_codes_on_page(text(right))
    assert len(set(codes)) == 10
    stored = load_user(app, user)
    assert stored.totp_enabled_at is not None and secret not in stored.totp_secret
    with app.app_context():
        hashes = db.session.scalars(select(RecoveryCode.code_hash).where(RecoveryCode.user_id == user)).all()
        assert len(hashes) == 10 and not {code.replace("-", "") for code in codes} & set(hashes)
    [event] = audit_events(app, "user.two_factor_enabled")
    assert event.actor == f"user:{user}"

    # Never shown again: the set-up page sends you back, the account page says it is on, with ten codes.
    again = client.get("/account/two-factor/enrol")
    assert again.status_code == 302 and again.headers["Location"] == "/account"
    account = text(client.get("/account"))
    assert "On since" in account and "<strong>10</strong> unused recovery codes" in account
    assert secret not in account and secret not in text(client.get("/account/two-factor/enrol", follow_redirects=True))


def test_the_code_that_switched_it_on_does_not_also_sign_in(app, client, auth, user):
    auth.login()
    secret = secret_on_page(text(client.get("/account/two-factor/enrol")))
    token = csrf_token_from(text(client.get("/account/two-factor/enrol")))
    code = code_for(secret)
    assert client.post("/account/two-factor/enrol", data={"csrf_token": token, "code": code}).status_code == 200
    auth.logout()
    assert auth.login().headers["Location"] == "/login/two-factor"
    response = second_step(client, code)
    assert response.status_code == 422 and not signed_in(client)


# -- signing in ------------------------------------------------------------------------------------------------------

def test_signing_in_takes_the_password_then_a_code_and_keeps_next(app, client, auth, enrolled):
    user, secret, _ = enrolled
    response = auth.login(next="/keys/new")
    assert response.status_code == 302 and response.headers["Location"] == "/login/two-factor"
    assert not signed_in(client)  # the password alone is not a session
    assert load_user(app, user).last_login_at is None
    page = client.get("/login/two-factor")
    assert page.status_code == 200 and 'autocomplete="one-time-code"' in text(page)
    response = second_step(client, code_for(secret))
    assert response.status_code == 302 and response.headers["Location"] == "/keys/new"
    assert signed_in(client)
    assert load_user(app, user).last_login_at is not None
    assert client.get("/login/two-factor").status_code == 302  # signed in: nothing left to do there


def test_a_wrong_code_is_refused_inline_and_audited(app, client, auth, enrolled):
    user, secret, _ = enrolled
    auth.login()
    wrong = "000000" if code_for(secret) != "000000" else "111111"
    response = second_step(client, wrong)
    assert response.status_code == 422
    assert "That code is not right" in text(response) and 'aria-invalid="true"' in text(response)
    assert not signed_in(client)
    [event] = audit_events(app, "user.two_factor_failed")
    assert event.detail.startswith(f"user:{user} ada@example.com") and event.ip == "127.0.0.1"


def test_a_code_is_accepted_once_only(app, client, auth, enrolled):
    _, secret, _ = enrolled
    now = utcnow()
    code = code_for(secret, now)
    auth.login()
    assert second_step(client, code).status_code == 302
    auth.logout()
    auth.login()
    replayed = second_step(client, code)  # the same code, within its 30 seconds
    assert replayed.status_code == 422 and "used already" in text(replayed)
    older = second_step(client, code_for(secret, now - STEP))  # a code older than the one accepted
    assert older.status_code == 422
    assert not signed_in(client)


def test_of_two_requests_racing_with_one_code_only_one_passes(app, enrolled):
    """The accepted step is recorded by a conditional UPDATE, not read first and written after: a request that
    loaded the user before another accepted the code still cannot accept it again."""
    user_id, secret, _ = enrolled
    code, now = code_for(secret), utcnow()
    with app.app_context():
        stale = db.session.get(User, user_id)  # loaded before the other request's update
        assert stale.totp_last_step is not None

        def other_request():
            with app.app_context():
                assert two_factor.verify_code(db.session.get(User, user_id), code, now)
                db.session.commit()

        thread = threading.Thread(target=other_request)
        thread.start()
        thread.join()
        db.session.commit()  # end this transaction's snapshot, as a separate request would see the row
        assert not two_factor.verify_code(stale, code, now)


def test_a_recovery_code_signs_in_once(app, client, auth, enrolled):
    user, _, codes = enrolled
    auth.login()
    response = second_step(client, codes[3].upper().replace("-", " "))  # typed in any case, with spaces
    assert response.status_code == 302
    account = client.get("/account")
    assert account.status_code == 200 and "You used a recovery code: 9 left" in text(account)
    [event] = audit_events(app, "user.recovery_code_used")
    assert event.detail == f"user:{user} ada@example.com (9 left)"
    auth.logout()
    auth.login()
    again = second_step(client, codes[3])
    assert again.status_code == 422 and "used already" in text(again)
    assert not signed_in(client)
    assert second_step(client, codes[4]).status_code == 302


def test_the_second_step_expires_after_five_minutes(app, client, auth, enrolled, monkeypatch):
    _, secret, _ = enrolled
    auth.login()
    token = csrf_token_from(text(client.get("/login/two-factor")))
    started = utcnow()
    monkeypatch.setattr("app.auth.second_factor.utcnow", lambda: started + timedelta(minutes=5, seconds=1))
    response = client.post("/login/two-factor", data={"csrf_token": token, "code": code_for(secret)})
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert "more than five minutes" in text(client.get("/login"))
    monkeypatch.undo()
    assert not signed_in(client)
    assert client.get("/login/two-factor").status_code == 302  # the pending sign-in is gone


def test_a_pending_sign_in_ends_when_the_user_is_signed_out_everywhere(app, client, auth, enrolled):
    user_id, secret, _ = enrolled
    auth.login()
    with app.app_context():
        from app.accounts import service

        service.end_sessions(db.session.get(User, user_id))
    response = second_step_without_page(client, code_for(secret))
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert not signed_in(client)


def second_step_without_page(client, code):
    token = csrf_token_from(text(client.get("/login")))
    return client.post("/login/two-factor", data={"csrf_token": token, "code": code})


def test_wrong_codes_are_throttled_apart_from_passwords(apps, enrolled_elsewhere):
    app, user_id, secret = enrolled_elsewhere
    client = app.test_client()
    auth = AuthActions(client)
    auth.login()
    wrong = "000000" if code_for(secret) != "000000" else "111111"
    for _ in range(3):
        assert second_step(client, wrong).status_code == 422
    throttled = second_step(client, code_for(secret))  # even the right code now waits
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) > 0
    assert "Too many wrong codes" in text(throttled)
    # A right password again (in another browser) does not clear the count of wrong codes.
    client = app.test_client()
    auth = AuthActions(client)
    assert auth.login().headers["Location"] == "/login/two-factor"
    assert second_step(client, code_for(secret)).status_code == 429
    assert not signed_in(client)
    assert len(audit_events(app, "user.two_factor_failed")) == 3


@pytest.fixture
def enrolled_elsewhere(apps):
    app = apps(LOGIN_THROTTLE_PER_ACCOUNT="3 per 5 minutes")
    from app.accounts import service

    with app.app_context():
        user_id = service.create_user("ada@example.com", PASSWORD).id
    secret, _ = enrol(app, user_id)
    return app, user_id, secret


@pytest.mark.parametrize("typed", ["abcdef", "1234567", "12345", "9" * 400, "x" * 5000, "١٢٣٤٥٦", "１２３４５６",
                                   "", "   ", "\u202e123456", "<script>", "abcd-efgh-ijk1"])
def test_a_malformed_code_is_a_clear_4xx(app, client, auth, enrolled, typed):
    auth.login()
    response = second_step(client, typed)
    assert response.status_code == 422, text(response)[:500]
    assert '<p class="error" id="code-error">' in text(response)
    assert not signed_in(client)


def test_a_code_with_a_nul_is_refused_before_the_form(app, client, auth, enrolled):
    auth.login()
    assert second_step(client, "123\x00456").status_code == 400
    assert not signed_in(client)


def test_the_second_step_without_a_password_step_sends_you_to_log_in(client):
    response = client.get("/login/two-factor")
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert second_step_without_page(client, "123456").headers["Location"] == "/login"


# -- switching it off, new recovery codes ----------------------------------------------------------------------------

def _signed_in_with_recovery_code(client, auth, code):
    """Signed in, with no authenticator code used since the one that switched it on: the current one is free."""
    auth.login()
    assert second_step(client, code).status_code == 302


def test_switching_off_needs_the_password_and_a_current_code(app, client, auth, enrolled):
    user, secret, codes = enrolled
    _signed_in_with_recovery_code(client, auth, codes[9])
    page = client.get("/account/two-factor/disable")
    assert page.status_code == 200
    token = csrf_token_from(text(page))

    def post(password, code):
        return client.post("/account/two-factor/disable", data={"csrf_token": token, "password": password,
                                                                "code": code})

    wrong_password = post("not the password at all", code_for(secret))
    assert wrong_password.status_code == 422 and "password is not right" in text(wrong_password)
    wrong = "000000" if code_for(secret) != "000000" else "111111"
    assert post(PASSWORD, wrong).status_code == 422
    assert post(PASSWORD, "").status_code == 422
    assert load_user(app, user).totp_enabled_at is not None
    response = post(PASSWORD, code_for(secret))
    assert response.status_code == 302 and response.headers["Location"] == "/account"
    stored = load_user(app, user)
    assert stored.totp_enabled_at is None and stored.totp_secret is None
    with app.app_context():
        assert db.session.scalars(select(RecoveryCode).where(RecoveryCode.user_id == user)).all() == []
    assert len(audit_events(app, "user.two_factor_disabled")) == 1
    auth.logout()
    assert auth.login().headers["Location"] == "/"  # one step again


def test_a_recovery_code_also_switches_it_off_for_someone_who_lost_the_app(app, client, auth, enrolled):
    user, _, codes = enrolled
    auth.login()
    assert second_step(client, codes[0]).status_code == 302
    token = csrf_token_from(text(client.get("/account/two-factor/disable")))
    response = client.post("/account/two-factor/disable", data={"csrf_token": token, "password": PASSWORD,
                                                                "code": codes[1]})
    assert response.status_code == 302 and load_user(app, user).totp_enabled_at is None


def test_a_new_set_of_recovery_codes_needs_the_password_or_a_code_and_ends_the_old_set(app, client, auth, enrolled):
    user, secret, codes = enrolled
    _signed_in_with_recovery_code(client, auth, codes[9])
    page = client.get("/account/two-factor/recovery-codes")
    assert page.status_code == 200 and "You have 9 unused recovery codes" in text(page)
    token = csrf_token_from(text(page))
    refused = client.post("/account/two-factor/recovery-codes", data={"csrf_token": token, "proof": "a guess"})
    assert refused.status_code == 422 and "neither your password nor a current code" in text(refused)
    made = client.post("/account/two-factor/recovery-codes", data={"csrf_token": token, "proof": PASSWORD})
    assert made.status_code == 200 and made.headers["Cache-Control"] == "no-store"
    fresh = recovery_codes_on_page(text(made))
    assert len(fresh) == 10 and not set(fresh) & set(codes)
    by_code = client.post("/account/two-factor/recovery-codes", data={"csrf_token": token, "proof": code_for(secret)})
    assert by_code.status_code == 200
    newest = recovery_codes_on_page(text(by_code))
    assert len(audit_events(app, "user.recovery_codes_renewed")) == 2
    auth.logout()
    auth.login()
    assert second_step(client, codes[0]).status_code == 422  # the first set no longer works
    assert second_step(client, fresh[0]).status_code == 422  # nor the second
    assert second_step(client, newest[0]).status_code == 302


# -- reset by an admin or the CLI ------------------------------------------------------------------------------------

def test_the_cli_resets_a_users_second_factor(app, enrolled):
    user, _, _ = enrolled
    runner = app.test_cli_runner()
    result = runner.invoke(args=["users", "reset-2fa", "ADA@example.com"])
    assert result.exit_code == 0, result.output
    assert "reset the second factor of ada@example.com" in result.output
    assert load_user(app, user).totp_enabled_at is None
    [event] = audit_events(app, "user.two_factor_reset")
    assert event.actor == "cli"
    again = runner.invoke(args=["users", "reset-2fa", "ada@example.com"])
    assert again.exit_code == 1 and "has no second factor" in again.output
    assert runner.invoke(args=["users", "reset-2fa", "nobody@example.com"]).exit_code == 1


def test_an_admin_resets_another_users_second_factor_but_never_their_own(app, client, auth, enrolled):
    user, _, _ = enrolled
    from app.accounts import service

    with app.app_context():
        admin = service.create_user("root@example.com", PASSWORD, is_admin=True).id
    admin_secret, _ = enrol(app, admin)
    auth.login(email="root@example.com")
    assert second_step(client, code_for(admin_secret)).status_code == 302
    users_page = text(client.get("/admin/users"))
    assert f"/admin/users/{user}/reset-two-factor" in users_page
    assert f"/admin/users/{admin}/reset-two-factor" not in users_page  # no button for yourself
    token = csrf_token_from(users_page)

    own = client.post(f"/admin/users/{admin}/reset-two-factor", data={"csrf_token": token})
    assert own.status_code == 302
    assert "cannot reset your own second factor" in text(client.get("/admin/users"))
    assert load_user(app, admin).totp_enabled_at is not None

    response = client.post(f"/admin/users/{user}/reset-two-factor", data={"csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"] == "/admin/users"
    assert load_user(app, user).totp_enabled_at is None
    [event] = audit_events(app, "user.two_factor_reset")
    assert event.actor == f"user:{admin}" and event.detail == f"user:{user} ada@example.com"
    assert client.post("/admin/users/999999/reset-two-factor", data={"csrf_token": token}).status_code == 404
    # Ada signs in with her password alone now.
    other = AuthActions(app.test_client())
    assert other.login().headers["Location"] == "/"
