"""Expiry reminders through a real SMTP server: each threshold once as the clock moves, none for keys that are
revoked or disabled or whose owner is inactive, over again after a renewal, once when two runs race."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.accounts.models import User
from app.database import utcnow
from app.extensions import db
from app.keys import service
from app.keys.models import ApiKey
from app.keys.reminders import send_due_reminders
from tests.functional.keyhelpers import act_on_key, add_user, count, load_key, new_key
from tests.functional.mail.conftest import mail_settings
from tests.functional.mail.mail_helpers import all_at_once, delivered, text_of

DAY = timedelta(days=1)


def remind(app, now) -> int:
    with app.app_context():
        return send_due_reminders(now)


@pytest.fixture
def keyed(apps, smtp):
    """An app sending to the SMTP server, with Ada's key "billing sync" expiring 40 days after `start`."""
    app = apps(**mail_settings(smtp))
    start = utcnow()
    user_id = add_user(app)
    key_id, token = new_key(app, user_id, name="billing sync", scopes=("read:data",), days=40, now=start)
    return app, start, user_id, key_id, token


def test_each_threshold_is_sent_once_as_the_clock_moves(keyed, smtp):
    app, start, _, key_id, token = keyed
    expires = start + 40 * DAY
    steps = [(start, 0), (expires - 31 * DAY, 0), (expires - 30 * DAY, 1), (expires - 20 * DAY, 0),
             (expires - 7 * DAY, 1), (expires - 3 * DAY, 0), (expires - DAY + timedelta(minutes=1), 1),
             (expires - timedelta(minutes=1), 0), (expires, 1), (expires + 2 * DAY, 0)]
    for now, queued in steps:
        assert remind(app, now) == queued, now - expires
        assert remind(app, now) == 0  # twice in a row: nothing new

    display_start = load_key(app, key_id).display_start
    messages = delivered(app, smtp)
    assert [m["Subject"] for m in messages] == [
        "Your API key billing sync expires in 30 days", "Your API key billing sync expires in 7 days",
        "Your API key billing sync expires tomorrow", "Your API key billing sync has expired"]
    assert {m["To"] for m in messages} == {"ada@example.com"}
    for message in messages:
        text = text_of(message)
        assert "billing sync" in text and f"https://keys.example.com/keys/{key_id}" in text
        assert "read:data" in text and "Last used:  never" in text and f"Key:        {display_start}..." in text
        assert token not in message.as_string()
        assert "You get this mail because you own the API key billing sync" in text
        assert "https://keys.example.com/account#notifications" in text
    assert count(app, "key_reminders") == 4
    assert len(delivered(app, smtp)) == 4  # nothing more to send


def test_a_key_first_seen_close_to_expiry_gets_only_the_most_urgent_reminder(keyed, smtp):
    app, start, _, _, _ = keyed
    assert remind(app, start + 35 * DAY) == 1  # 5 days left
    assert remind(app, start + 36 * DAY) == 0
    [message] = delivered(app, smtp)
    assert message["Subject"] == "Your API key billing sync expires in 7 days"


def test_a_key_long_expired_when_reminders_begin_gets_none(keyed):
    app, start, _, _, _ = keyed
    assert remind(app, start + 60 * DAY) == 0


@pytest.mark.parametrize("action", ["revoke", "disable", "deactivate owner"])
def test_no_reminder_for_a_revoked_or_disabled_key_or_an_inactive_owner(keyed, smtp, action):
    app, start, user_id, key_id, _ = keyed
    if action == "revoke":
        act_on_key(app, key_id, service.revoke)
    elif action == "disable":
        act_on_key(app, key_id, service.disable)
    else:
        with app.app_context():
            db.session.get(User, user_id).is_active = False
            db.session.commit()
    for days in (10, 35, 39.5, 40, 41):
        assert remind(app, start + days * DAY) == 0
    # The CLI's revoke or disable tells the owner (test_owner_alerts.py); no reminder follows it.
    assert [m["Subject"] for m in delivered(app, smtp) if "expire" in m["Subject"]] == []


def test_renewing_a_key_starts_its_reminders_over(keyed, smtp):
    app, start, _, key_id, _ = keyed
    now = start + 39.5 * DAY
    assert remind(app, now) == 1  # "tomorrow"
    act_on_key(app, key_id, service.renew, now + 40 * DAY, now=now)
    assert remind(app, now) == 0
    assert remind(app, now + 10 * DAY) == 1  # 30 days before the new date
    assert remind(app, now + 39.5 * DAY) == 1
    assert [m["Subject"] for m in delivered(app, smtp)] == [
        "Your API key billing sync expires tomorrow", "Your API key billing sync expires in 30 days",
        "Your API key billing sync expires tomorrow"]


@pytest.mark.parametrize("runs", [2, 4])
def test_runs_at_once_queue_each_reminder_once(apps, smtp, runs):
    instances = [apps("shared", **mail_settings(smtp)) for _ in range(runs)]  # processes on one database
    start = utcnow()
    user_id = add_user(instances[0])
    for number in range(15):
        new_key(instances[0], user_id, name=f"key {number}", days=5, now=start)
    queued = all_at_once(lambda app: remind(app, start), instances)

    assert sum(queued) == 15
    subjects = sorted(m["Subject"] for m in delivered(instances[0], smtp))
    assert subjects == sorted(f"Your API key key {number} expires in 7 days" for number in range(15))


def test_flask_keys_remind_queues_what_is_due(keyed, smtp):
    app, _, _, key_id, _ = keyed
    with app.app_context():
        db.session.get(ApiKey, key_id).expires_at = utcnow() + 6 * DAY
        db.session.commit()
    runner = app.test_cli_runner()

    first = runner.invoke(args=["keys", "remind"])
    second = runner.invoke(args=["keys", "remind"])

    assert first.exit_code == 0, first.output
    assert first.output.strip() == "queued 1 expiry reminders"
    assert second.output.strip() == "queued 0 expiry reminders"
    [message] = delivered(app, smtp)
    assert message["Subject"] == "Your API key billing sync expires in 7 days"


def test_an_owner_who_switched_reminders_off_gets_none_and_the_next_one_after_switching_on(keyed, smtp):
    app, start, user_id, _, _ = keyed
    with app.app_context():
        db.session.get(User, user_id).notify_expiry = False
        db.session.commit()
    assert remind(app, start + 10 * DAY) == 0  # the 30-day reminder is due, and not wanted
    assert count(app, "key_reminders") == 0  # nor recorded as sent
    with app.app_context():
        db.session.get(User, user_id).notify_expiry = True
        db.session.commit()
    assert remind(app, start + 11 * DAY) == 1
    [message] = delivered(app, smtp)
    assert message["Subject"] == "Your API key billing sync expires in 30 days"
