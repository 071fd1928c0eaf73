"""Passkeys through the real pages, answered by a software authenticator (tests/passkey_support.py): registering,
listing and removing one, signing in with one, and every refusal the second step owes: a replayed assertion, another
origin, another user's passkey, a signature counter that went back, malformed answers; and an admin whose only
factor is a passkey passes the admin requirement."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from app.accounts import service
from app.accounts.models import Passkey
from app.extensions import db
from tests.passkey_support import ORIGIN, SoftAuthenticator, options, post_assertion, register, sign_in, sign_in_options
from tests.support import PASSWORD, AuthActions, csrf_token_from
from tests.two_factor_support import audit_events, code_for, enrol, second_step


@pytest.fixture
def app(apps):
    return apps(PUBLIC_BASE_URL=ORIGIN, TWO_FACTOR_FOR_ADMINS="true")


def text(response) -> str:
    return response.get_data(as_text=True)


def signed_in(client) -> bool:
    return client.get("/account").status_code == 200


def passkeys(app, user_id: int) -> list[Passkey]:
    with app.app_context():
        found = list(db.session.scalars(select(Passkey).where(Passkey.user_id == user_id)))
        for passkey in found:
            db.session.expunge(passkey)
        db.session.remove()
    return found


@pytest.fixture
def registered(client, auth, user):
    """Ada with one passkey, signed out: her software authenticator."""
    authenticator = SoftAuthenticator()
    auth.login()
    assert register(client, authenticator).status_code == 302
    auth.logout()
    return authenticator


def test_a_passkey_is_registered_listed_and_signs_in_as_the_second_step(app, client, auth, user):
    auth.login()
    assert "Register a passkey" in text(client.get("/account"))
    authenticator = SoftAuthenticator()
    added = register(client, authenticator, name="Work laptop")
    assert added.status_code == 302 and added.headers["Location"] == "/account"
    account = text(client.get("/account"))
    assert "Work laptop" in account and "Never" in account and "one of your passkeys" in account
    [stored] = passkeys(app, user)
    assert stored.credential_id == authenticator.id and stored.transports == "internal" and stored.sign_count == 0
    [event] = audit_events(app, "user.passkey_added")
    assert event.actor == f"user:{user}" and "Work laptop" in event.detail

    auth.logout()
    first = auth.login()
    assert first.status_code == 302 and first.headers["Location"] == "/login/two-factor"
    assert not signed_in(client)
    step = text(client.get("/login/two-factor"))
    assert "Use a passkey" in step and 'name="code"' not in step  # no authenticator app: no code form
    assert "needs JavaScript" in step
    done = sign_in(client, authenticator)
    assert done.status_code == 302 and done.headers["Location"] == "/"
    assert signed_in(client)
    [stored] = passkeys(app, user)
    assert stored.last_used_at is not None and stored.sign_count == 1


@pytest.mark.parametrize("counter_step", [1, 0], ids=["with-a-counter", "without-a-counter"])
def test_a_replayed_assertion_is_refused_even_with_the_old_session_cookie(app, client, auth, user, counter_step):
    authenticator = SoftAuthenticator(counter_step=counter_step)
    auth.login()
    register(client, authenticator)
    auth.logout()
    auth.login()
    token, found = sign_in_options(client)
    before = client.get_cookie("keyfob_session").value  # the session that holds the challenge
    answer = authenticator.get(found)
    assert post_assertion(client, token, answer).status_code == 302
    # The same answer again, in the session as it was when the challenge was issued (a copied cookie, or a second
    # request racing with the first): refused, and no second session begins.
    client.set_cookie("keyfob_session", before)
    again = post_assertion(client, token, answer)
    assert again.status_code == 422 and "used already" in text(again)
    assert authenticator.id not in text(again)  # the answer is not sent back in the page
    assert not signed_in(client)
    # And once more in that session's successor: the challenge was taken out of the session at the first try.
    again = post_assertion(client, csrf_token_from(text(client.get("/login/two-factor"))), answer)
    assert again.status_code == 422 and "expired" in text(again)
    assert len(audit_events(app, "user.two_factor_failed")) == 2


def test_an_assertion_made_for_another_origin_is_refused(app, client, auth, user, registered):
    auth.login()
    registered.origin = "https://keyfob.example.net"
    refused = sign_in(client, registered)
    assert refused.status_code == 422 and "origin" in text(refused)
    assert not signed_in(client)
    [event] = audit_events(app, "user.two_factor_failed")
    assert "passkey" in event.detail and "origin" in event.detail


def test_an_assertion_for_another_relying_party_is_refused(client, auth, user, registered):
    auth.login()
    token, found = sign_in_options(client)
    refused = post_assertion(client, token, registered.get(found, rp_id="keyfob.example.net"))
    assert refused.status_code == 422 and "RP ID" in text(refused)
    assert not signed_in(client)


def test_another_users_passkey_is_refused(app, client, auth, user, registered):
    with app.app_context():
        service.create_user("bob@example.com", PASSWORD)
    bobs = SoftAuthenticator()
    other = app.test_client()
    other.post("/login", data={"csrf_token": csrf_token_from(text(other.get("/login"))), "email": "bob@example.com",
                               "password": PASSWORD})
    assert register(other, bobs).status_code == 302

    auth.login()  # Ada's pending sign-in, answered with Bob's passkey
    token, found = sign_in_options(client)
    assert [c["id"] for c in found["allowCredentials"]] == [registered.id]  # only hers are offered
    refused = post_assertion(client, token, bobs.get(found))
    assert refused.status_code == 422 and "not one of this account" in text(refused)
    assert not signed_in(client)


def test_a_signature_counter_that_goes_back_is_refused_and_audited_as_a_possible_clone(app, client, auth, user,
                                                                                       registered):
    auth.login()
    assert sign_in(client, registered).status_code == 302
    auth.logout()
    auth.login()
    registered.counter = 0  # a copy of the key, whose counter starts where the original's did
    refused = sign_in(client, registered)
    assert refused.status_code == 422 and "may have been copied" in text(refused)
    assert not signed_in(client)
    [event] = audit_events(app, "user.passkey_clone_suspected")
    assert f"user:{user}" in event.detail
    assert passkeys(app, user)[0].sign_count == 1


def test_an_authenticator_without_a_counter_signs_in_again_and_again(client, auth, user):
    authenticator = SoftAuthenticator(counter_step=0)
    auth.login()
    register(client, authenticator)
    for _ in range(2):
        auth.logout()
        auth.login()
        assert sign_in(client, authenticator).status_code == 302


def test_removing_a_passkey_needs_the_password(app, client, auth, user, registered):
    auth.login()
    assert sign_in(client, registered).status_code == 302
    [stored] = passkeys(app, user)
    page = client.get(f"/account/passkeys/{stored.id}/remove")
    assert page.status_code == 200 and "your only second factor" in text(page)
    token = csrf_token_from(text(page))
    wrong = client.post(f"/account/passkeys/{stored.id}/remove", data={"csrf_token": token, "proof": "not it at all"})
    assert wrong.status_code == 422 and len(passkeys(app, user)) == 1
    done = client.post(f"/account/passkeys/{stored.id}/remove", data={"csrf_token": token, "proof": PASSWORD})
    assert done.status_code == 302 and passkeys(app, user) == []
    [event] = audit_events(app, "user.passkey_removed")
    assert event.actor == f"user:{user}"
    auth.logout()
    assert auth.login().headers["Location"] == "/"  # the password alone signs in again


def test_an_admin_whose_only_factor_is_a_passkey_passes_the_admin_requirement(app, client, auth):
    with app.app_context():
        service.create_user("ada@example.com", PASSWORD, is_admin=True)
    auth.login()
    sent = client.get("/admin/")
    assert sent.status_code == 302 and sent.headers["Location"].startswith("/account/two-factor/enrol")
    assert "register a passkey" in text(client.get("/account/two-factor/enrol"))
    authenticator = SoftAuthenticator()
    assert register(client, authenticator).status_code == 302
    assert client.get("/admin/").status_code == 200
    auth.logout()
    assert auth.login().headers["Location"] == "/login/two-factor"
    assert sign_in(client, authenticator).status_code == 302
    assert client.get("/admin/").status_code == 200


@pytest.mark.parametrize("credential, message", [
    ("", "needs JavaScript"),
    ("not json", "malformed"),
    ("[1, 2]", "malformed"),
    ('{"id": 5}', "malformed"),
    ('{"id": "!!!", "rawId": "!!!", "type": "public-key", "response": {"clientDataJSON": "%%%", '
     '"authenticatorData": "***", "signature": "==="}}', "not one of this account"),
    ("x" * 70_000, "far too long"),
])
def test_malformed_answers_get_a_clear_refusal(app, client, auth, user, registered, credential, message):
    auth.login()
    token, _ = sign_in_options(client)
    refused = post_assertion(client, token, credential)
    assert refused.status_code == 422 and message in text(refused)
    assert not signed_in(client)


def test_garbage_inside_an_answer_of_the_right_shape_is_refused(client, auth, user, registered):
    auth.login()
    token, found = sign_in_options(client)
    answer = json.loads(registered.get(found))
    answer["response"]["authenticatorData"] = "@@not-base64@@"
    refused = post_assertion(client, token, json.dumps(answer))
    assert refused.status_code == 422 and "could not be verified" in text(refused)
    answer["response"]["authenticatorData"], answer["response"]["signature"] = "AAAA", "AAAA"
    token, _ = sign_in_options(client)
    refused = post_assertion(client, token, json.dumps(answer))
    assert refused.status_code == 422


def test_a_registration_for_another_origin_or_a_bad_name_is_refused(app, client, auth, user):
    auth.login()
    refused = register(client, SoftAuthenticator(origin="https://keyfob.example.net"))
    assert refused.status_code == 422 and "origin" in text(refused)
    assert register(client, SoftAuthenticator(), name="a\x01b").status_code in (400, 422)
    too_long = register(client, SoftAuthenticator(), name="n" * 65)
    assert too_long.status_code == 422 and "64 characters" in text(too_long)
    no_answer = client.post("/account/passkeys/new", data={
        "csrf_token": csrf_token_from(text(client.get("/account/passkeys/new"))), "name": "Laptop", "credential": ""})
    assert no_answer.status_code == 422 and "needs JavaScript" in text(no_answer)
    assert passkeys(app, user) == []


def test_the_options_endpoints_answer_json_refusals(apps, app, client, auth, user):
    assert options(client, "/login/two-factor/passkey/options", "x").status_code == 400  # no CSRF token
    token = csrf_token_from(text(client.get("/login")))
    none = options(client, "/login/two-factor/passkey/options", token)
    assert none.status_code == 409 and none.get_json()["error"]["code"] == "no_sign_in"
    cross = client.post("/account/passkeys/options", headers={"X-CSRFToken": token, "Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403

    off = apps("no-base-url")
    with off.app_context():
        service.create_user("ada@example.com", PASSWORD)
    other = off.test_client()
    other.post("/login", data={"csrf_token": csrf_token_from(text(other.get("/login"))), "email": "ada@example.com",
                               "password": PASSWORD})
    token = csrf_token_from(text(other.get("/account/passkeys/new")))
    refused = options(other, "/account/passkeys/options", token)
    assert refused.status_code == 409 and "PUBLIC_BASE_URL" in refused.get_json()["error"]["message"]
    assert "Passkeys are off on this Keyfob: PUBLIC_BASE_URL is not set" in text(other.get("/account"))


def test_failed_passkey_steps_and_wrong_codes_share_one_throttle(apps):
    app = apps(PUBLIC_BASE_URL=ORIGIN, LOGIN_THROTTLE_PER_ACCOUNT="3 per 5 minutes")
    with app.app_context():
        user_id = service.create_user("ada@example.com", PASSWORD).id
    secret, _ = enrol(app, user_id)
    client = app.test_client()
    auth = AuthActions(client)
    authenticator = SoftAuthenticator()
    auth.login()
    assert second_step(client, code_for(secret)).status_code == 302
    assert register(client, authenticator).status_code == 302
    auth.logout()

    auth.login()
    step = text(client.get("/login/two-factor"))
    assert 'name="code"' in step and "Use a passkey" in step  # both are offered
    authenticator.origin = "https://keyfob.example.net"
    assert sign_in(client, authenticator).status_code == 422
    assert sign_in(client, authenticator).status_code == 422
    assert second_step(client, "000000" if code_for(secret) != "000000" else "111111").status_code == 422
    authenticator.origin = ORIGIN
    throttled = sign_in(client, authenticator)  # even the right passkey now waits
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) > 0
    assert not signed_in(client)
    assert len(audit_events(app, "user.two_factor_failed")) == 3


def test_a_reset_by_the_cli_removes_the_passkeys_too(app, user, registered):
    result = app.test_cli_runner().invoke(args=["users", "reset-2fa", "ada@example.com"])
    assert result.exit_code == 0, result.output
    assert passkeys(app, user) == []
    [event] = audit_events(app, "user.two_factor_reset")
    assert event.actor == "cli"


def test_switching_the_authenticator_off_leaves_the_passkeys_as_the_second_step(app, client, auth, user, registered):
    secret, _ = enrol(app, user)
    auth.login()
    assert sign_in(client, registered).status_code == 302
    page = client.get("/account/two-factor/disable")
    assert "your passkeys still pass the second step" in text(page)
    off = client.post("/account/two-factor/disable", data={"csrf_token": csrf_token_from(text(page)),
                                                           "password": PASSWORD, "code": code_for(secret)})
    assert off.status_code == 302
    assert "your passkeys still pass the second step" in text(client.get("/account"))
    auth.logout()
    assert auth.login().headers["Location"] == "/login/two-factor"
