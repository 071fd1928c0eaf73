"""Alerts raised from refused requests when the usage buffer writes them, and a batch that survives a deleted key."""

from __future__ import annotations

from app.audit.models import Alert
from app.audit.service import Actor, acknowledge_alert
from app.database import utcnow
from app.extensions import db
from app.keys import service
from app.keys.core import KeyCore
from tests.functional.keyhelpers import act_on_key, add_user, bearer, daily_totals, flush, new_key, rows

WHOAMI = "/api/v1/whoami"


def alerts(app) -> list[dict]:
    return rows(app, "SELECT kind, ip, key_id, message, acknowledged_at FROM alerts ORDER BY id")


def fail(client, times: int, ip: str, token: str = "kf_" + "x" * 33, status: int = 401) -> None:
    """Refused requests: 401 for a key that is not (or no longer) valid, 403 for a live key from the wrong address."""
    for _ in range(times):
        assert client.get(WHOAMI, headers=bearer(token), environ_base={"REMOTE_ADDR": ip}).status_code == status


def test_a_burst_of_failures_from_one_ip_raises_one_alert_per_window(apps):
    app = apps(FAILED_ATTEMPTS_ALERT="10 per 5 minutes")
    client = app.test_client()
    fail(client, 9, "203.0.113.5")
    flush(app)
    assert alerts(app) == []
    fail(client, 1, "203.0.113.5")
    fail(client, 4, "198.51.100.1")  # another address, below the line
    flush(app)
    [burst] = alerts(app)
    assert (burst["kind"], burst["ip"]) == ("failure_burst", "203.0.113.5")
    assert "10 failed key verifications from 203.0.113.5 in the last 5 minutes" in burst["message"]
    fail(client, 10, "203.0.113.5")
    flush(app)
    assert len(alerts(app)) == 1  # the same burst, the same window: no second alert


def test_using_a_revoked_key_raises_one_open_alert_per_key(apps):
    app = apps()
    client = app.test_client()
    key_id, token = new_key(app, add_user(app), name="old deploy key")
    act_on_key(app, key_id, service.revoke, "leaked")
    fail(client, 3, "192.0.2.44", token)
    flush(app)
    [alert] = alerts(app)
    assert (alert["kind"], alert["key_id"], alert["ip"]) == ("revoked_key_used", key_id, "192.0.2.44")
    assert "was presented 3 times, last from 192.0.2.44" in alert["message"]
    fail(client, 1, "192.0.2.44", token)
    flush(app)
    assert len(alerts(app)) == 1
    with app.app_context():
        acknowledge_alert(db.session.get(Alert, 1), Actor.cli())
    fail(client, 1, "192.0.2.45", token)
    flush(app)
    assert [a["ip"] for a in alerts(app)] == ["192.0.2.44", "192.0.2.45"]


def test_failures_of_a_live_key_raise_no_revoked_alert(apps):
    app = apps()
    key_id, token = new_key(app, add_user(app), allowed_ips=["10.0.0.0/8"])
    fail(app.test_client(), 2, "192.0.2.1", token, status=403)  # refused for its address, not revoked
    flush(app)
    assert alerts(app) == []


def test_a_key_deleted_before_the_flush_does_not_block_the_batch(apps):
    app = apps()
    client = app.test_client()
    owner = add_user(app)
    gone, gone_token = new_key(app, owner, name="gone", allowed_ips=["10.0.0.0/8"])
    kept, kept_token = new_key(app, owner, name="kept")
    assert client.get(WHOAMI, headers=bearer(gone_token), environ_base={"REMOTE_ADDR": "10.0.0.1"}).status_code == 200
    fail(client, 1, "192.0.2.1", gone_token[:-1] + ("A" if gone_token[-1] != "A" else "B"))  # no key row
    # The key's own refusal (from outside its allowlist): a daily failure and an event with its id.
    fail(client, 1, "192.0.2.9", gone_token, status=403)
    assert client.get(WHOAMI, headers=bearer(kept_token)).status_code == 200
    with app.app_context():
        db.session.execute(db.text("DELETE FROM api_keys WHERE id = :id"), {"id": gone})
        db.session.commit()
    flush(app)  # raised IntegrityError for ever before: the deleted key's rows poisoned every retry
    assert daily_totals(app, kept) == (1, 0)
    assert rows(app, "SELECT usage_count FROM api_keys WHERE id = :id", id=kept)[0]["usage_count"] == 1
    assert KeyCore.of(app).usage.pending_uses() == 0
    refused = rows(app, "SELECT key_id, key_display FROM audit_events WHERE event = 'key.verify_failed' ORDER BY id")
    assert [row["key_id"] for row in refused] == [None, None]  # kept, without the key that is gone
    assert refused[1]["key_display"] == gone_token[:9]


def test_an_event_the_database_refuses_does_not_block_later_flushes(apps):
    app = apps()
    client = app.test_client()
    key_id, token = new_key(app, add_user(app))
    assert client.get(WHOAMI, headers=bearer(token)).status_code == 200
    buffer = KeyCore.of(app).usage
    # An event row no database would take (here: a column that does not exist), buffered beside a real use.
    buffer.record_failure({"event": "key.verify_failed", "nonsense": 1}, None, utcnow())
    flush(app)
    assert rows(app, "SELECT usage_count FROM api_keys WHERE id = :id", id=key_id)[0]["usage_count"] == 1
    assert rows(app, "SELECT count(*) AS n FROM audit_events WHERE event = 'key.verify_failed'")[0]["n"] == 0
    assert client.get(WHOAMI, headers=bearer(token)).status_code == 200
    flush(app)  # and the next flush goes through as usual
    assert rows(app, "SELECT usage_count FROM api_keys WHERE id = :id", id=key_id)[0]["usage_count"] == 2
    assert buffer.pending_uses() == 0
