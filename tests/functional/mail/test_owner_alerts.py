"""Alerts to a key's owner through a real SMTP server: a suspension for the rate limit, the first use from a new IP
network (at most once an hour per key, once when processes race), a revoke or disable by an admin. Each once, with
what the owner needs and no secret, and none when the owner switched it off or did it themselves."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from app.accounts import service as accounts
from app.accounts.models import User
from app.audit.service import Actor
from app.database import utcnow
from app.extensions import db
from app.keys import owner_alerts, service, verification, verifiers
from app.keys.core import KeyCore
from app.keys.models import ApiKey
from tests.functional.keyhelpers import WHOAMI, add_user, bearer, count, flush, load_key, new_key, rows
from tests.functional.mail.conftest import mail_settings
from tests.functional.mail.mail_helpers import all_at_once, delivered, text_of
from tests.support import PASSWORD, AuthActions, csrf_token_from, on_postgres

SETTINGS = "https://keys.example.com/account#notifications"


def switch_off(app, user_id: int, switch: str) -> None:
    with app.app_context():
        setattr(db.session.get(User, user_id), switch, False)
        db.session.commit()


def assert_no_secret(message, token: str) -> None:
    raw = message.as_string()
    assert token not in raw and token[len(token) // 2:] not in raw


@pytest.fixture
def mailing(apps, smtp):
    """An app sending to the SMTP server; Ada owns "billing sync"."""
    app = apps(**mail_settings(smtp), KEY_SUSPEND_AFTER="2 per 1 minute", KEY_SUSPENSION_SECONDS="600")
    user_id = add_user(app)
    key_id, token = new_key(app, user_id, name="billing sync")
    return app, user_id, key_id, token


# -- suspended for the rate limit ------------------------------------------------------------------------------------

def hammer(app, key_id: int, token: str, times: int = 6) -> list[int]:
    """Requests with the key, limited to 1 a minute, from one address: the third refusal suspends it."""
    with app.app_context():
        service.update(db.session.get(ApiKey, key_id), rate_limit=1, actor=Actor.cli())
    client = app.test_client()
    return [client.get(WHOAMI, headers=bearer(token), environ_base={"REMOTE_ADDR": "192.0.2.8"}).status_code
            for _ in range(times)]


def test_a_suspension_mails_the_owner_once(mailing, smtp):
    app, _, key_id, token = mailing
    assert hammer(app, key_id, token) == [200, 429, 429, 429, 401, 401]
    key = load_key(app, key_id)
    [message] = delivered(app, smtp)
    until = f"{key.suspended_until:%Y-%m-%d %H:%M} UTC"
    assert message["To"] == "ada@example.com"
    assert message["Subject"] == f"Your API key billing sync is suspended until {until}"
    text = text_of(message)
    assert f"Key:        {key.display_start}..." in text and "rate limit of 1 requests a minute" in text
    assert f"until {until}" in text and "an admin can lift the suspension" in text
    assert f"https://keys.example.com/keys/{key_id}" in text and SETTINGS in text
    assert_no_secret(message, token)


def test_no_suspension_mail_when_switched_off(mailing, smtp):
    app, user_id, key_id, token = mailing
    switch_off(app, user_id, "notify_suspension")
    assert hammer(app, key_id, token)[-1] == 401
    assert load_key(app, key_id).suspended_until is not None  # suspended all the same
    assert delivered(app, smtp) == []


# -- revoked or disabled by an admin ---------------------------------------------------------------------------------

@pytest.fixture
def admin(mailing):
    app = mailing[0]
    with app.app_context():
        return Actor.user(db.session.get(User, add_user(app, "root@example.com")), "198.51.100.7")


def test_a_revoke_by_an_admin_mails_the_owner(mailing, admin, smtp):
    app, _, key_id, token = mailing
    with app.app_context():
        service.revoke(db.session.get(ApiKey, key_id), "found in a public repository", actor=admin)
    [message] = delivered(app, smtp)
    assert message["Subject"] == "Your API key billing sync was revoked by an administrator"
    text = text_of(message)
    assert "was revoked by root@example.com" in text and "Reason:     found in a public repository" in text
    assert f"When:       {load_key(app, key_id).revoked_at:%Y-%m-%d %H:%M} UTC" in text
    assert f"Key:        {token[:9]}..." in text and f"https://keys.example.com/keys/{key_id}" in text
    assert SETTINGS in text
    assert_no_secret(message, token)


def test_a_disable_from_the_admin_page_mails_the_owner_and_an_enable_does_not(mailing, smtp):
    app, _, key_id, token = mailing
    with app.app_context():
        accounts.create_user("root@example.com", PASSWORD, is_admin=True)
    client = app.test_client()
    AuthActions(client).login("root@example.com")
    csrf = csrf_token_from(client.get(f"/admin/keys/{key_id}").get_data(as_text=True))
    assert client.post(f"/admin/keys/{key_id}/disable", data={"csrf_token": csrf}).status_code == 302
    assert client.post(f"/admin/keys/{key_id}/enable", data={"csrf_token": csrf}).status_code == 302
    [message] = delivered(app, smtp)
    assert message["Subject"] == "Your API key billing sync was disabled by an administrator"
    text = text_of(message)
    assert "was disabled by root@example.com" in text and "Reason:     (none given)" in text
    assert "refused until it is enabled again" in text
    assert_no_secret(message, token)


def test_a_revoke_on_the_command_line_mails_the_owner(mailing, smtp):
    app, _, key_id, _ = mailing
    result = app.test_cli_runner().invoke(args=["keys", "revoke", str(key_id), "--reason", "offboarding"])
    assert result.exit_code == 0, result.output
    [message] = delivered(app, smtp)
    assert "was revoked by an administrator, on the command line" in text_of(message)
    assert "Reason:     offboarding" in text_of(message)


@pytest.mark.parametrize("how", ["signed in", "through the API with one of their keys"])
def test_no_mail_when_the_owner_revokes_or_disables_their_own_key(mailing, smtp, how):
    app, user_id, key_id, _ = mailing
    with app.app_context():
        owner = db.session.get(User, user_id)
        other, _ = service.create(owner, "automation", ["keys:write"], utcnow() + timedelta(days=9),
                                  actor=Actor.user(owner))
        actor = Actor.user(owner) if how == "signed in" else Actor.key(other)
        service.disable(db.session.get(ApiKey, key_id), actor=actor)
        service.revoke(db.session.get(ApiKey, key_id), "done", actor=actor)
    assert load_key(app, key_id).revoked_at is not None
    assert delivered(app, smtp) == []


def test_no_admin_action_mail_when_switched_off(mailing, admin, smtp):
    app, user_id, key_id, _ = mailing
    switch_off(app, user_id, "notify_admin_action")
    with app.app_context():
        service.disable(db.session.get(ApiKey, key_id), actor=admin)
        service.revoke(db.session.get(ApiKey, key_id), actor=admin)
    assert delivered(app, smtp) == []


# -- used from a new network -----------------------------------------------------------------------------------------

def use(app, token: str, *ips: str, verifier_id: int | None = None, now=None) -> None:
    """Valid checks of the key from each address, then the usage buffer's flush (as its thread would)."""
    with app.app_context():
        for ip in ips:
            assert verification.verify(token, client_ip=ip, verifier_id=verifier_id, now=now).ok
    flush(app)


def networks(app, key_id: int) -> dict[str, bool]:
    """The key's recorded networks, each with whether an alert went out for it."""
    return {row["network"]: row["alerted_at"] is not None
            for row in rows(app, "SELECT network, alerted_at FROM key_networks WHERE key_id = :k", k=key_id)}


def backdate_alerts(app, key_id: int, by: timedelta) -> None:
    with app.app_context():
        db.session.execute(sa.text("UPDATE key_networks SET alerted_at = :at WHERE key_id = :k AND alerted_at "
                                   "IS NOT NULL"), {"at": utcnow() - by, "k": key_id})
        db.session.commit()


def test_a_new_network_mails_the_owner_at_most_once_an_hour(mailing, smtp):
    app, _, key_id, token = mailing
    use(app, token, "203.0.113.7", "203.0.113.200")  # the first network: where the key lives, not news
    assert delivered(app, smtp) == []
    assert networks(app, key_id) == {"203.0.113.0/24": False}

    use(app, token, "198.51.100.23")
    [message] = delivered(app, smtp)
    assert message["Subject"] == "Your API key billing sync was used from a new network"
    text = text_of(message)
    assert "- 198.51.100.0/24: from 198.51.100.23 at " in text and "checked by" not in text
    assert f"Key:        {token[:9]}..." in text and f"https://keys.example.com/keys/{key_id}" in text
    assert "If it was not, revoke the key, or rotate it" in text and SETTINGS in text
    assert_no_secret(message, token)

    use(app, token, "192.0.2.1")  # a third network within the hour: recorded, no mail
    use(app, token, "198.51.100.99")  # a known network: nothing
    assert len(delivered(app, smtp)) == 1
    assert networks(app, key_id) == {"203.0.113.0/24": False, "198.51.100.0/24": True, "192.0.2.0/24": False}

    backdate_alerts(app, key_id, timedelta(minutes=61))
    use(app, token, "192.0.2.77")  # known by now: still no news
    use(app, token, "100.64.0.1")
    messages = delivered(app, smtp)
    assert len(messages) == 2 and "- 100.64.0.0/24: from 100.64.0.1" in text_of(messages[1])


def test_the_mail_names_the_service_that_checked_the_key(mailing, smtp):
    app, _, _, token = mailing
    with app.app_context():
        verifier, _ = verifiers.create("billing-gateway", actor=Actor.cli())
        verifier_id = verifier.id
    use(app, token, "203.0.113.7")
    use(app, token, "198.51.100.23", verifier_id=verifier_id)
    [message] = delivered(app, smtp)
    assert "- 198.51.100.0/24: from 198.51.100.23 at " in text_of(message)
    assert "checked by the service billing-gateway" in text_of(message)


def test_ipv6_addresses_are_grouped_by_their_64_and_mapped_ipv4_as_ipv4(mailing, smtp):
    app, _, key_id, token = mailing
    use(app, token, "2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:fffe", "2001:0DB8:0001:0002::9",
        "::ffff:203.0.113.9")
    assert networks(app, key_id) == {"2001:db8:1:2::/64": False, "203.0.113.0/24": True}
    [message] = delivered(app, smtp)  # the first network was IPv6; the mapped IPv4 one is new
    assert "- 203.0.113.0/24: from ::ffff:203.0.113.9" in text_of(message)
    backdate_alerts(app, key_id, timedelta(hours=2))
    use(app, token, "203.0.113.1", "2001:db8:1:2:abcd::1")
    assert len(delivered(app, smtp)) == 1
    use(app, token, "2001:db8:1:3::1")
    assert "- 2001:db8:1:3::/64: from 2001:db8:1:3::1" in text_of(delivered(app, smtp)[1])


def test_no_new_network_mail_when_switched_off_and_none_for_old_networks_after(mailing, smtp):
    app, user_id, key_id, token = mailing
    switch_off(app, user_id, "notify_new_network")
    use(app, token, "203.0.113.7", "198.51.100.23")
    assert len(networks(app, key_id)) == 2  # recorded all the same: switched on later, they are not news
    with app.app_context():
        db.session.get(User, user_id).notify_new_network = True
        db.session.commit()
    use(app, token, "198.51.100.1", "203.0.113.8")
    assert delivered(app, smtp) == []


def test_with_mail_off_networks_are_recorded_and_no_alert_is_queued(apps):
    app = apps(KEYFOB_ENV="production", SESSION_COOKIE_SECURE=False, KEY_SUSPEND_AFTER="2 per 1 minute")
    owner = add_user(app)
    key_id, token = new_key(app, owner)
    use(app, token, "203.0.113.7", "198.51.100.1")
    assert networks(app, key_id) == {"203.0.113.0/24": False, "198.51.100.0/24": False}
    assert hammer(app, key_id, token)[-1] == 401  # suspended
    with app.app_context():
        service.revoke(db.session.get(ApiKey, key_id), "gone", actor=Actor.cli())
    assert count(app, "outbox_messages") == 0


def test_a_failing_alert_loses_and_doubles_no_count(mailing, smtp, monkeypatch):
    app, _, key_id, token = mailing
    use(app, token, "203.0.113.7")

    def broken(sightings, now):
        raise RuntimeError("a bug in the alert")

    monkeypatch.setattr(owner_alerts, "record_networks", broken)
    use(app, token, "198.51.100.23", "198.51.100.24")
    monkeypatch.undo()
    assert load_key(app, key_id).usage_count == 3
    assert flush(app) == 0  # nothing was put back to be written twice
    assert load_key(app, key_id).usage_count == 3
    assert delivered(app, smtp) == []


def test_networks_wait_out_a_database_outage_and_alert_after(mailing, smtp, monkeypatch):
    app, _, key_id, token = mailing
    use(app, token, "203.0.113.7")
    record = owner_alerts.record_networks

    def locked(sightings, now):
        raise OperationalError("INSERT INTO key_networks", {}, Exception("database is locked"))

    monkeypatch.setattr(owner_alerts, "record_networks", locked)
    use(app, token, "198.51.100.23")
    assert load_key(app, key_id).usage_count == 2
    monkeypatch.setattr(owner_alerts, "record_networks", record)
    assert flush(app) == 0  # only the networks were kept back
    assert load_key(app, key_id).usage_count == 2
    assert len(delivered(app, smtp)) == 1


def test_processes_racing_with_new_networks_send_one_mail(apps, smtp):
    instances = [apps("shared", **mail_settings(smtp)) for _ in range(4)]  # processes on one database
    key_id, token = new_key(instances[0], add_user(instances[0]), name="billing sync")
    use(instances[0], token, "203.0.113.7")
    for number, app in enumerate(instances):  # each process sees its own new network, and one they share
        with app.app_context():
            for ip in (f"198.51.{100 + number}.1", "192.0.2.1"):
                assert verification.verify(token, client_ip=ip).ok
    all_at_once(lambda app: KeyCore.of(app).usage.flush(), instances)

    recorded = networks(instances[0], key_id)
    assert len(recorded) == 6 and sum(recorded.values()) >= 1
    assert len(delivered(instances[0], smtp)) == 1
    assert load_key(instances[0], key_id).usage_count == 9


def lock_waits(app) -> int:
    """PostgreSQL backends of this database waiting for a lock now."""
    with app.app_context(), db.engine.connect() as connection:
        return connection.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                          "AND wait_event_type = 'Lock'")).scalar()


def test_a_claim_racing_an_uncommitted_one_waits_for_it_and_then_refuses(apps):
    first, second = apps("shared"), apps("shared")  # two processes on one database
    key_id, token = new_key(first, add_user(first))
    use(first, token, "203.0.113.7", "198.51.100.1", "192.0.2.1")
    with first.app_context():
        db.session.execute(sa.text("UPDATE key_networks SET alerted_at = NULL"))
        db.session.commit()
    now, result, started = utcnow(), [], threading.Event()

    def claim_in_second():
        with second.app_context():
            started.set()
            result.append(owner_alerts._claim_alert(key_id, ["192.0.2.0/24"], now))
            db.session.commit()

    with first.app_context():
        assert owner_alerts._claim_alert(key_id, ["198.51.100.0/24"], now) is True  # not committed yet
        racing = threading.Thread(target=claim_in_second)
        racing.start()
        started.wait(10)
        if on_postgres():  # hold the first claim open until the second is seen waiting for it (or done: a bug)
            for _ in range(2000):
                if not racing.is_alive() or lock_waits(first):
                    break
                racing.join(0.005)
        db.session.commit()
    racing.join(30)
    assert result == [False]
    assert networks(first, key_id) == {"203.0.113.0/24": False, "198.51.100.0/24": True, "192.0.2.0/24": False}


def test_the_claim_refuses_a_second_alert_within_the_hour(mailing):
    app, _, key_id, token = mailing
    use(app, token, "203.0.113.7", "198.51.100.1")
    now = utcnow()
    with app.app_context():
        # Another process alerted for the key a minute ago, about another network.
        db.session.execute(sa.text("UPDATE key_networks SET alerted_at = :at WHERE network = '203.0.113.0/24'"),
                           {"at": now - timedelta(minutes=1)})
        assert owner_alerts._claim_alert(key_id, ["198.51.100.0/24"], now) is False
        assert owner_alerts._claim_alert(key_id, ["198.51.100.0/24"], now + timedelta(minutes=60)) is True
        db.session.rollback()


def test_verifying_from_a_new_address_costs_no_query_with_the_cache_warm(apps, smtp):
    app = apps(**mail_settings(smtp), VERIFY_CACHE_SECONDS="60")
    _, token = new_key(app, add_user(app))
    # On PostgreSQL the change listener's connecting empties the cache (what changed before it listened was not
    # heard): settle it first, so that only a query the network check made could show below.
    core = KeyCore.of(app)
    core.listen_for_changes()
    assert core.listener is None or core.listener.connected.wait(10)
    statements = []

    def note(connection, cursor, statement, *args):
        statements.append(statement)

    with app.app_context():
        assert verification.verify(token, client_ip="203.0.113.7").ok  # reads the key into the cache
        sa.event.listen(db.engine, "before_cursor_execute", note)
        try:
            for ip in ("198.51.100.23", "2001:db8::1", "::ffff:192.0.2.1", "not an address"):
                assert verification.verify(token, client_ip=ip).ok
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", note)
    assert statements == []
    assert KeyCore.of(app).usage.pending_uses() == 5
