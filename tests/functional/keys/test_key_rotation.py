"""Rotation over time: each grace period ends when it should, and rotation enforces the lifetime policy."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.audit.service import Actor
from app.database import utcnow
from app.extensions import db
from app.keys import service, verification
from app.keys.models import ApiKey
from tests.functional.keyhelpers import add_user, new_key


@pytest.mark.parametrize(("grace", "length"), [("1h", timedelta(hours=1)), ("24h", timedelta(hours=24)),
                                               ("7d", timedelta(days=7))])
def test_the_old_secret_works_until_the_grace_ends_and_not_a_moment_after(apps, grace, length):
    app = apps()
    key_id, old = new_key(app, add_user(app), days=60)
    start = utcnow()
    with app.app_context():
        new = service.rotate(db.session.get(ApiKey, key_id), grace, actor=Actor.cli(), now=start)
        for moment, old_works in [(start + length - timedelta(seconds=1), True), (start + length, False),
                                  (start + length + timedelta(days=1), False)]:
            assert verification.verify(old, now=moment).ok is old_works, moment - start
            assert verification.verify(new, now=moment).ok


def test_rotation_brings_a_key_within_a_lowered_lifetime_policy(apps):
    before = apps("shared")
    key_id, _ = new_key(before, add_user(before), days=300)
    after = apps("shared", MAX_KEY_LIFETIME_DAYS="30")  # the same database, restarted with a stricter policy
    now = utcnow()
    with after.app_context():
        key = db.session.get(ApiKey, key_id)
        token = service.rotate(key, "none", actor=Actor.cli(), now=now)
        assert key.expires_at == now + timedelta(days=30)
        assert verification.verify(token, now=now).ok


def test_the_cli_rotates_under_a_lowered_policy(apps):
    before = apps("shared")
    key_id, _ = new_key(before, add_user(before), days=300)
    after = apps("shared", MAX_KEY_LIFETIME_DAYS="30")
    result = after.test_cli_runner().invoke(args=["keys", "rotate", str(key_id)])
    assert result.exit_code == 0, result.output
    with after.app_context():
        expires = db.session.get(ApiKey, key_id).expires_at
    assert expires <= utcnow() + timedelta(days=30)


def test_a_revoke_in_one_process_applies_to_the_next_request_in_another(apps):
    """Two apps on one database stand for two worker processes: nothing about a key is cached between requests."""
    first, second = apps("shared"), apps("shared")
    key_id, token = new_key(first, add_user(first))
    whoami = "/api/v1/whoami"
    headers = {"Authorization": f"Bearer {token}"}
    assert second.test_client().get(whoami, headers=headers).status_code == 200
    with first.app_context():
        service.revoke(db.session.get(ApiKey, key_id), actor=Actor.cli())
    assert second.test_client().get(whoami, headers=headers).status_code == 401
    with first.app_context():
        key = db.session.get(ApiKey, key_id)
    assert key.revoked_at is not None
