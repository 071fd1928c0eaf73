"""The key lifecycle through app.keys.service: create, update, rotate, renew, revoke, disable/enable, expiring."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from app.accounts.models import User
from app.audit.service import Actor
from app.database import utcnow
from app.extensions import db
from app.keys import queries, service, tokens, verification
from app.keys.policy import KeyInputError
from app.keys.service import KeyStateError
from app.keys.verification import Outcome
from tests.functional.keyhelpers import (
    add_user,
    all_stored_values,
    audit_rows,
    count,
    expected_digest,
    flush,
)

DAY = timedelta(days=1)


def _owner_in(app, email="ada@example.com"):
    return db.session.get(User, add_user(app, email))


@pytest.fixture
def core(app):
    """An app with its context pushed, and an owner: (app, owner)."""
    with app.app_context():
        yield app, _owner_in(app)


def make(owner, *, now=None, days=30, scopes=("read:data",), name="deploy bot", **options):
    now = now or utcnow()
    options.setdefault("expires_at", now + days * DAY)
    return service.create(owner, name, scopes, actor=Actor.user(owner), now=now, **options)


# -- create ----------------------------------------------------------------------------------------------------------

def test_create_returns_the_record_and_a_plaintext_that_is_stored_nowhere(core):
    app, owner = core
    now = utcnow()
    key, token = service.create(owner, "CI deploy", ["write:data", "read:data"], now + 30 * DAY,
                                actor=Actor.user(owner, ip="192.0.2.5", user_agent="pytest"),
                                description="deploys main", allowed_ips="10.0.0.0/8", rate_limit=50,
                                remaining_uses=1000, now=now)
    assert re.fullmatch(tokens.scanner_regex("kf"), token)
    assert key.id is not None and key.user_id == owner.id
    assert (key.name, key.description, key.scopes) == ("CI deploy", "deploys main", ("read:data", "write:data"))
    assert (key.allowed_ips, key.rate_limit, key.remaining_uses) == (("10.0.0.0/8",), 50, 1000)
    assert key.expires_at == now + 30 * DAY and key.created_at == now
    assert key.secret_hash == expected_digest(token)
    assert key.display_start == token[:9] and token.startswith(key.display_start) and len(token) == 36

    # Use it, successfully and not, so usage and failure audit rows exist too, then look everywhere.
    assert verification.verify(token, ["read:data"], client_ip="10.1.1.1").ok
    assert verification.verify(token, ["keys:write"], client_ip="10.1.1.1").outcome is Outcome.INSUFFICIENT_SCOPE
    flush(app)
    secret_part = token[len(key.display_start):]
    stored = all_stored_values(app)
    assert any(key.display_start in value for value in stored)  # the search does see the rows
    assert not [value for value in stored if token in value or secret_part in value]

    [created] = audit_rows(app, "key.created")
    assert created["actor"] == f"user:{owner.id}" and created["actor_user_id"] == owner.id
    assert created["key_id"] == key.id and created["key_display"] == key.display_start
    assert (created["ip"], created["user_agent"]) == ("192.0.2.5", "pytest")
    assert "read:data write:data" in created["detail"]


BAD_INPUTS = [
    ({"name": ""}, "name", "name"),
    ({"name": "   "}, "name", "name"),
    ({"name": "x" * 101}, "name", "100"),
    ({"scopes": ["read:data", "bogus:scope"]}, "scopes", "bogus:scope"),
    ({"days": 366}, "expires_at", "365 days"),
    ({"expires_at": None}, "expires_at", "expiry"),
    ({"days": -1}, "expires_at", "future"),
    ({"allowed_ips": "10.0.0.0/33"}, "allowed_ips", "10.0.0.0/33"),
    ({"allowed_ips": ["192.0.2.1", "not-an-ip"]}, "allowed_ips", "not-an-ip"),
    ({"rate_limit": 0}, "rate_limit", "between"),
    ({"remaining_uses": "lots"}, "remaining_uses", "whole number"),
]


@pytest.mark.parametrize(("options", "field", "words"), BAD_INPUTS)
def test_create_refuses_bad_input_naming_the_field_and_writes_nothing(core, options, field, words):
    app, owner = core
    with pytest.raises(KeyInputError) as caught:
        make(owner, **options)
    assert caught.value.field == field
    assert words in caught.value.message
    db.session.commit()  # nothing may be pending in the session either
    assert count(app, "api_keys") == 0
    assert count(app, "audit_events") == 0


def test_expiry_is_limited_by_max_key_lifetime_days(apps):
    app = apps(MAX_KEY_LIFETIME_DAYS="30")
    with app.app_context():
        owner = _owner_in(app)
        now = utcnow()
        key, _ = make(owner, now=now, days=30)
        assert key.expires_at == now + 30 * DAY
        with pytest.raises(KeyInputError) as caught:
            make(owner, now=now, days=31)
        assert caught.value.field == "expires_at" and "30 days" in caught.value.message
        assert count(app, "api_keys") == 1


def test_non_expiring_keys_only_when_allowed(core, apps):
    _, owner = core
    with pytest.raises(KeyInputError) as caught:
        make(owner, expires_at=None)
    assert caught.value.field == "expires_at"

    app = apps("allowing", ALLOW_NON_EXPIRING_KEYS="true")
    with app.app_context():
        key, token = make(_owner_in(app), expires_at=None)
        assert key.expires_at is None
        assert verification.verify(token, now=utcnow() + 3650 * DAY).ok


# -- update ----------------------------------------------------------------------------------------------------------

def test_update_changes_fields_returns_their_names_and_audits(core):
    app, owner = core
    key, token = make(owner, rate_limit=10)
    assert verification.verify(token, ["write:data"]).outcome is Outcome.INSUFFICIENT_SCOPE

    changed = service.update(key, actor=Actor.user(owner), name="renamed", scopes=["read:data", "write:data"],
                             rate_limit=10, description="")  # unchanged rate limit and description
    assert sorted(changed) == ["name", "scopes"]
    db.session.expire_all()
    assert (key.name, key.scopes, key.rate_limit) == ("renamed", ("read:data", "write:data"), 10)
    assert verification.verify(token, ["write:data"]).ok
    [updated] = audit_rows(app, "key.updated")
    assert updated["detail"] == "changed: name, scopes" and updated["actor"] == f"user:{owner.id}"

    assert service.update(key, actor=Actor.cli(), name="renamed") == []
    assert len(audit_rows(app, "key.updated")) == 1


def test_update_is_all_or_nothing(core):
    app, owner = core
    key, _ = make(owner)
    with pytest.raises(KeyInputError) as caught:
        service.update(key, actor=Actor.cli(), name="new name", allowed_ips="300.1.2.3")
    assert caught.value.field == "allowed_ips"
    db.session.commit()
    db.session.expire_all()
    assert key.name == "deploy bot" and key.allowed_ips == ()
    assert audit_rows(app, "key.updated") == []


def test_update_of_a_revoked_key_is_refused(core):
    _, owner = core
    key, _ = make(owner)
    service.revoke(key, actor=Actor.cli())
    with pytest.raises(KeyStateError):
        service.update(key, actor=Actor.cli(), name="resurrected")
    db.session.expire_all()
    assert key.name == "deploy bot"


# -- rotate ----------------------------------------------------------------------------------------------------------

def test_rotate_with_a_grace_period_keeps_the_old_secret_working_until_it_ends(core):
    app, owner = core
    now = utcnow()
    key, old = make(owner, now=now, description="d", allowed_ips=["10.0.0.0/8"], rate_limit=100,
                    remaining_uses=50, scopes=("read:data", "write:data"))
    before = {name: getattr(key, name) for name in ("id", "name", "description", "scope_text", "allowed_ip_text",
                                                      "rate_limit", "remaining_uses", "expires_at", "created_at")}

    new = service.rotate(key, "1h", actor=Actor.cli(), now=now)
    assert new != old and re.fullmatch(tokens.scanner_regex("kf"), new)
    db.session.expire_all()
    assert {name: getattr(key, name) for name in before} == before
    assert key.secret_hash == expected_digest(new) and key.display_start == new[:9]

    ip = "10.2.3.4"
    assert verification.verify(old, client_ip=ip, now=now + timedelta(minutes=59)).ok
    assert verification.verify(new, client_ip=ip, now=now + timedelta(minutes=59)).ok
    assert verification.verify(old, client_ip=ip, now=now + timedelta(minutes=61)).outcome is Outcome.REVOKED
    assert verification.verify(new, client_ip=ip, now=now + timedelta(minutes=61)).ok

    [rotated] = audit_rows(app, "key.rotated")
    assert rotated["detail"] == f"replaces {old[:9]}; old secret valid for 1h"
    assert not [value for value in all_stored_values(app) if old in value or new in value]


def test_rotate_without_grace_refuses_the_old_secret_at_once(core):
    _, owner = core
    key, old = make(owner)
    new = service.rotate(key, "none", actor=Actor.cli())
    assert not verification.verify(old).ok
    assert verification.verify(new).ok


def test_rotate_refuses_an_unknown_grace_period_and_changes_nothing(core):
    _, owner = core
    key, token = make(owner)
    with pytest.raises(KeyInputError) as caught:
        service.rotate(key, "2h", actor=Actor.cli())
    assert caught.value.field == "grace"
    db.session.expire_all()
    assert key.secret_hash == expected_digest(token)
    assert verification.verify(token).ok


def test_rotate_of_a_revoked_key_is_refused(core):
    _, owner = core
    key, token = make(owner)
    service.revoke(key, actor=Actor.cli())
    with pytest.raises(KeyStateError):
        service.rotate(key, "24h", actor=Actor.cli())
    db.session.expire_all()
    assert key.secret_hash == expected_digest(token)


def test_rotate_of_an_expired_key_gives_a_new_expiry_and_drops_the_old_secret(core):
    _, owner = core
    now = utcnow()
    key, old = make(owner, now=now - 20 * DAY, days=10)  # lived 10 days, expired 10 days ago
    assert verification.verify(old, now=now).outcome is Outcome.EXPIRED

    new = service.rotate(key, "24h", actor=Actor.cli(), now=now)
    db.session.expire_all()
    assert key.expires_at == now + 10 * DAY
    assert key.previous_secret_hash is None and key.previous_secret_expires_at is None
    soon = now + timedelta(minutes=1)
    assert verification.verify(new, now=soon).ok
    assert not verification.verify(old, now=soon).ok


# -- renew -----------------------------------------------------------------------------------------------------------

def test_renew_moves_the_expiry_within_policy(core):
    app, owner = core
    now = utcnow()
    key, token = make(owner, now=now, days=10)
    assert verification.verify(token, now=now + 50 * DAY).outcome is Outcome.EXPIRED

    service.renew(key, now + 100 * DAY, actor=Actor.cli(), now=now)
    db.session.expire_all()
    assert key.expires_at == now + 100 * DAY
    assert verification.verify(token, now=now + 50 * DAY).ok
    assert audit_rows(app, "key.renewed")[0]["detail"] == f"expires: {(now + 100 * DAY).isoformat()}"

    with pytest.raises(KeyInputError) as caught:
        service.renew(key, now + 400 * DAY, actor=Actor.cli(), now=now)
    assert caught.value.field == "expires_at"
    db.session.rollback()
    assert key.expires_at == now + 100 * DAY
    assert len(audit_rows(app, "key.renewed")) == 1


def test_renew_makes_an_expired_key_usable_again(core):
    _, owner = core
    now = utcnow()
    key, token = make(owner, now=now - 40 * DAY, days=30)
    assert verification.verify(token, now=now).outcome is Outcome.EXPIRED
    service.renew(key, now + 30 * DAY, actor=Actor.cli(), now=now)
    assert verification.verify(token, now=now).ok


def test_renew_of_a_revoked_key_is_refused(core):
    _, owner = core
    key, _ = make(owner)
    service.revoke(key, actor=Actor.cli())
    with pytest.raises(KeyStateError):
        service.renew(key, utcnow() + 60 * DAY, actor=Actor.cli())


# -- revoke, disable, enable ---------------------------------------------------------------------------------------

def test_revoke_stops_the_key_for_good(core):
    app, owner = core
    now = utcnow()
    key, token = make(owner, now=now)
    assert verification.verify(token).ok
    service.revoke(key, "  leaked in a CI log  ", actor=Actor.user(owner), now=now)
    assert verification.verify(token).outcome is Outcome.REVOKED
    db.session.expire_all()
    assert key.revoked_at == now and key.revoked_reason == "leaked in a CI log"
    assert key.status(utcnow()) == "revoked"
    [revoked] = audit_rows(app, "key.revoked")
    assert revoked["detail"] == "leaked in a CI log" and revoked["actor"] == f"user:{owner.id}"

    with pytest.raises(KeyStateError):
        service.revoke(key, "again", actor=Actor.cli())
    db.session.expire_all()
    assert key.revoked_reason == "leaked in a CI log"


def test_a_revoke_refused_for_a_too_long_reason_changes_nothing(core):
    app, owner = core
    key, token = make(owner)
    other, _ = make(owner, name="other")
    with pytest.raises(KeyInputError) as caught:
        service.revoke(key, "x" * 501, actor=Actor.cli())
    assert caught.value.field == "reason"
    service.update(other, actor=Actor.cli(), name="renamed")  # any later commit in the same session
    assert verification.verify(token).ok
    assert audit_rows(app, "key.revoked") == []


def test_revoke_also_ends_a_rotated_keys_grace_secret(core):
    _, owner = core
    key, old = make(owner)
    new = service.rotate(key, "24h", actor=Actor.cli())
    assert verification.verify(old).ok
    service.revoke(key, actor=Actor.cli())
    assert not verification.verify(old).ok
    assert verification.verify(new).outcome is Outcome.REVOKED


def test_disable_and_enable(core):
    app, owner = core
    key, token = make(owner)
    service.disable(key, actor=Actor.cli())
    assert verification.verify(token).outcome is Outcome.DISABLED
    assert [row["actor"] for row in audit_rows(app, "key.disabled")] == ["cli"]
    service.enable(key, actor=Actor.cli())
    assert verification.verify(token).ok
    assert len(audit_rows(app, "key.enabled")) == 1
    assert audit_rows(app, "key.updated") == []


# -- the renewal list ----------------------------------------------------------------------------------------------

def test_expiring_lists_the_owners_unrevoked_keys_soonest_first(core):
    app, owner = core
    other = _owner_in(app, "grace@example.com")
    now = utcnow()

    def key_expiring_in(days, who=owner, name="k"):
        created = now - 60 * DAY if days < 0 else now
        return make(who, now=created, expires_at=now + days * DAY, name=name)[0].id

    in_10 = key_expiring_in(10, name="in 10")
    in_3 = key_expiring_in(3, name="in 3")
    key_expiring_in(20, name="in 20")
    in_14 = key_expiring_in(13.99, name="in 14")
    revoked = make(owner, now=now, expires_at=now + 5 * DAY, name="revoked")[0]
    service.revoke(revoked, actor=Actor.cli())
    key_expiring_in(2, who=other, name="someone else's")
    lapsed_10 = key_expiring_in(-10, name="expired 10 days ago")
    key_expiring_in(-40, name="expired 40 days ago")

    assert [key.id for key in queries.expiring(owner, 14, now=now)] == [in_3, in_10, in_14]
    assert [key.id for key in queries.expiring(owner, 14, expired_within_days=30, now=now)] == [
        lapsed_10, in_3, in_10, in_14]
    assert [key.name for key in queries.expiring(other, 14, now=now)] == ["someone else's"]
