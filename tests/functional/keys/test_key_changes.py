"""The lookup cache against every change that can refuse a key: each bumps the host's generation when it commits,
before its caller answers, so the next verification reads afresh, however long VERIFY_CACHE_SECONDS is. Changes that
cannot refuse a key leave the cache alone. On PostgreSQL, another host hears the change through NOTIFY.

The real-server proof (4 gunicorn workers, two servers on one PostgreSQL) is in tests/functional/verification/."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from app.accounts import service as accounts
from app.accounts.models import User
from app.audit.service import Actor
from app.database import utcnow
from app.extensions import db
from app.keys import service, verification, verifiers
from app.keys.core import KeyCore
from app.keys.lookup_cache import Generation
from app.keys.models import ApiKey, Verifier
from app.keys.verification import Outcome
from tests.functional.keyhelpers import act_on_key, add_user, flush, new_key
from tests.support import PASSWORD, on_postgres

FOREVER = {"VERIFY_CACHE_SECONDS": "3600"}  # only an invalidation can make a refusal show


def cache_on(**settings):
    """An app whose caching is settled: on PostgreSQL its listener is connected (connecting bumps the generation, as
    whatever changed before it listened was not heard), so that from here only a change bumps it."""

    def build(apps, name: str = "main", **more):
        app = apps(name, **{**FOREVER, **settings, **more})
        core = KeyCore.of(app)
        core.listen_for_changes()
        assert core.listener is None or core.listener.connected.wait(10)
        return app

    return build


settled = cache_on()


def generation(app) -> int:
    return Generation.of(app).read()


def check(app, token: str) -> Outcome:
    with app.app_context():
        return verification.verify(token, ("read:data",), "127.0.0.1").outcome


def cached_keys(app) -> int:
    return len(KeyCore.of(app).key_cache)


def _set_columns(app, key_id: int, **values) -> None:
    with app.app_context():
        db.session.execute(sa.update(ApiKey).where(ApiKey.id == key_id).values(**values))
        db.session.commit()


def _on_owner(app, user_id: int, change) -> None:
    with app.app_context():
        change(db.session.get(User, user_id))
        db.session.commit()


# Each change, and what the next two verifications answer after it.
CHANGES = {
    "revoke": (lambda app, key, user: act_on_key(app, key, service.revoke), [Outcome.REVOKED] * 2),
    "disable": (lambda app, key, user: act_on_key(app, key, service.disable), [Outcome.DISABLED] * 2),
    "rotate without grace": (lambda app, key, user: act_on_key(app, key, service.rotate, "none"),
                             [Outcome.NOT_FOUND] * 2),
    "scope removed": (lambda app, key, user: act_on_key(app, key, service.update, scopes=["write:data"]),
                      [Outcome.INSUFFICIENT_SCOPE] * 2),
    "allowlist": (lambda app, key, user: act_on_key(app, key, service.update, allowed_ips="10.0.0.0/8"),
                  [Outcome.IP_NOT_ALLOWED] * 2),
    "rate limit": (lambda app, key, user: act_on_key(app, key, service.update, rate_limit=1),
                   [Outcome.VALID, Outcome.RATE_LIMITED]),
    "quota": (lambda app, key, user: act_on_key(app, key, service.update, remaining_uses=1),
              [Outcome.VALID, Outcome.USAGE_EXCEEDED]),
    "expiry moved": (lambda app, key, user: _set_columns(app, key, expires_at=utcnow() - timedelta(seconds=1)),
                     [Outcome.EXPIRED] * 2),
    "suspended": (lambda app, key, user: _set_columns(app, key, suspended_until=utcnow() + timedelta(hours=1)),
                  [Outcome.SUSPENDED] * 2),
    "owner deactivated": (lambda app, key, user: _on_owner(app, user, lambda owner: accounts.set_active(
        owner, False, actor=Actor.cli())), [Outcome.DISABLED] * 2),
    "owner deleted": (lambda app, key, user: _on_owner(app, user, db.session.delete), [Outcome.NOT_FOUND] * 2),
    "written as SQL": (lambda app, key, user: _sql(app, "UPDATE api_keys SET disabled = true WHERE id = :id", key),
                       [Outcome.DISABLED] * 2),
}


def _sql(app, statement: str, key_id: int) -> None:
    with app.app_context():
        db.session.execute(sa.text(statement), {"id": key_id})
        db.session.commit()


@pytest.mark.parametrize("change", CHANGES)
def test_a_change_that_can_refuse_a_key_reaches_the_next_verification(apps, change):
    app = settled(apps)
    user = add_user(app)
    key_id, token = new_key(app, user)
    assert [check(app, token), check(app, token)] == [Outcome.VALID] * 2
    assert cached_keys(app) == 1
    before = generation(app)
    make_change, then = CHANGES[change]
    make_change(app, key_id, user)
    assert generation(app) > before
    assert [check(app, token), check(app, token)] == then


def test_a_second_process_on_the_host_sees_the_change_through_the_shared_generation(apps):
    serving, other = settled(apps, "shared"), settled(apps, "shared")  # one instance folder: one host
    user = add_user(serving)
    key_id, token = new_key(serving, user)
    assert [check(serving, token), check(serving, token)] == [Outcome.VALID] * 2
    act_on_key(other, key_id, service.revoke)
    assert check(serving, token) is Outcome.REVOKED


def test_what_cannot_refuse_a_key_leaves_the_cache_alone(apps):
    app = settled(apps)
    user = add_user(app)
    key_id, token = new_key(app, user)
    assert check(app, token) is Outcome.VALID
    before = generation(app)
    assert flush(app) == 1  # the usage buffer writes last_used_at and the counts outside the session
    act_on_key(app, key_id, service.update, description="what it is for")
    with app.app_context():
        assert accounts.authenticate("ada@example.com", PASSWORD) is not None  # last login
        new_key(app, user, name="another")
    assert generation(app) == before
    assert check(app, token) is Outcome.VALID and cached_keys(app) == 1


def test_a_change_rolled_back_does_not_bump(apps):
    app = settled(apps)
    user = add_user(app)
    key_id, token = new_key(app, user)
    before = generation(app)
    with app.app_context():
        db.session.get(ApiKey, key_id).revoked_at = utcnow()
        db.session.flush()
        db.session.rollback()
    assert generation(app) == before
    assert check(app, token) is Outcome.VALID


def test_a_key_made_a_moment_ago_works_at_once_and_an_unknown_one_is_not_kept(apps):
    app = settled(apps)
    user = add_user(app)
    _, first = new_key(app, user)
    assert check(app, first) is Outcome.VALID
    _, second = new_key(app, user, name="second")
    assert check(app, second) is Outcome.VALID
    assert check(app, second[:-2] + "zz") in (Outcome.MALFORMED, Outcome.NOT_FOUND)
    assert cached_keys(app) == 2


def test_the_cache_is_bounded_in_size(apps):
    app = cache_on(VERIFY_CACHE_SIZE="2")(apps)
    user = add_user(app)
    made = [new_key(app, user, name=f"key {n}")[1] for n in range(3)]
    assert [check(app, token) for token in made] == [Outcome.VALID] * 3
    assert cached_keys(app) == 2


def test_expiry_is_compared_with_the_clock_at_every_request(apps):
    app = settled(apps)
    user = add_user(app)
    _, token = new_key(app, user, days=1)
    with app.app_context():
        assert verification.verify(token).ok and len(KeyCore.of(app).key_cache) == 1
        assert verification.verify(token, now=utcnow() + timedelta(days=2)).outcome is Outcome.EXPIRED


def test_a_quota_is_taken_from_the_database_every_time(apps):
    app = settled(apps)
    user = add_user(app)
    _, token = new_key(app, user, remaining_uses=3)
    with app.app_context():
        seen = [verification.verify(token).key.remaining_uses for _ in range(3)]
        assert verification.verify(token).outcome is Outcome.USAGE_EXCEEDED
    assert seen == [3, 2, 1]


def test_no_cache_when_switched_off(apps):
    app = apps(VERIFY_CACHE_SECONDS="0")
    user = add_user(app)
    _, token = new_key(app, user)
    assert check(app, token) is Outcome.VALID and cached_keys(app) == 0


def test_a_revoked_verifier_credential_is_refused_at_once(apps):
    app = settled(apps)
    with app.app_context():
        verifier, credential = verifiers.create("billing", actor=Actor.cli())
        assert verifiers.authenticate(credential).id == verifier.id
        assert verifiers.authenticate(credential).name == "billing"
        verifiers.revoke(db.session.get(Verifier, verifier.id), actor=Actor.cli())
        assert verifiers.authenticate(credential) is None


@pytest.mark.skipif(not on_postgres(), reason="notifications between hosts are PostgreSQL's LISTEN/NOTIFY")
def test_another_host_hears_the_change_through_postgresql(apps, tmp_path):
    here = settled(apps, "shared")
    there = settled(apps, "shared", KEYFOB_INSTANCE_PATH=str(tmp_path / "another-host"))
    user = add_user(here)
    key_id, token = new_key(here, user)
    assert [check(there, token), check(there, token)] == [Outcome.VALID] * 2
    before = generation(there)
    act_on_key(here, key_id, service.revoke)
    deadline = time.monotonic() + 10
    while generation(there) == before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert generation(there) > before, "the other host heard nothing within 10 s"
    assert check(there, token) is Outcome.REVOKED
