"""Alerts raised from refused requests, when the usage buffer writes them: never on the request's own path.

- A burst of failed verifications from one IP (FAILED_ATTEMPTS_ALERT, e.g. "20 per 5 minutes"): someone guessing
  or a client with a broken key. One alert per IP per window.
- Any use of a revoked key (or of a secret replaced by rotation, after its grace): a leaked key being tried.
  One open alert per key.
Rate-limit suspensions raise their own alert when they happen (app.keys.service).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import Connection, func, insert, select

from app.audit.models import Alert, AuditEvent

FAILURE_BURST = "failure_burst"
REVOKED_KEY_USED = "revoked_key_used"


def raise_alerts(connection: Connection, events: Sequence[dict], now: datetime, burst_count: int,
                 burst_window: timedelta) -> int:
    """Add the alerts these just-written failure events call for; returns how many were added."""
    alerts = _bursts(connection, events, now, burst_count, burst_window) + _revoked_uses(connection, events)
    if alerts:
        connection.execute(insert(Alert), alerts)
    return len(alerts)


def _bursts(connection: Connection, events: Sequence[dict], now: datetime, count: int,
            window: timedelta) -> list[dict]:
    ips = {event["ip"] for event in events if event.get("ip") and event["event"] == "key.verify_failed"}
    if not ips:
        return []
    since = now - window
    failures = dict(connection.execute(
        select(AuditEvent.ip, func.count()).where(AuditEvent.event == "key.verify_failed",
                                                  AuditEvent.ip.in_(ips), AuditEvent.created_at >= since)
        .group_by(AuditEvent.ip)).all())
    noisy = {ip for ip, seen in failures.items() if seen >= count}
    if not noisy:
        return []
    already = set(connection.scalars(select(Alert.ip).where(Alert.kind == FAILURE_BURST, Alert.ip.in_(noisy),
                                                            Alert.created_at >= since)))
    minutes = int(window.total_seconds() // 60)
    return [{"kind": FAILURE_BURST, "ip": ip, "key_id": None, "created_at": now,
             "message": f"{failures[ip]} failed key verifications from {ip} in the last {minutes} minutes."}
            for ip in sorted(noisy - already)]


def _revoked_uses(connection: Connection, events: Sequence[dict]) -> list[dict]:
    tries = Counter(event["key_id"] for event in events
                    if event["event"] == "key.verify_failed" and event.get("key_id") is not None
                    and (event.get("detail") or "").startswith("revoked"))
    if not tries:
        return []
    already = set(connection.scalars(select(Alert.key_id).where(
        Alert.kind == REVOKED_KEY_USED, Alert.key_id.in_(tries), Alert.acknowledged_at.is_(None))))
    last = {event["key_id"]: event for event in events if event.get("key_id") in tries}
    return [_revoked_alert(last[key_id], tries[key_id]) for key_id in sorted(set(tries) - already)]


def _revoked_alert(event: dict, times: int) -> dict:
    where = event.get("ip") or "an unknown address"
    return {"kind": REVOKED_KEY_USED, "key_id": event["key_id"], "ip": event.get("ip"),
            "created_at": event["created_at"],
            "message": f"Revoked key {event.get('key_display')} was presented {times} "
                       f"time{'s' if times > 1 else ''}, last from {where}."}
