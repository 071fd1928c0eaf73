"""Writing the audit log. Lifecycle events join the caller's transaction, so a change and its record commit together."""

from __future__ import annotations

from dataclasses import dataclass

from app.audit.models import Alert, AuditEvent
from app.database import utcnow
from app.extensions import db

USER_AGENT_LENGTH = 300


@dataclass(frozen=True)
class Actor:
    """Who is acting and from where. The faces build one; the core writes it into every audit event."""

    label: str
    user_id: int | None = None
    ip: str | None = None
    user_agent: str | None = None

    @classmethod
    def user(cls, user, ip: str | None = None, user_agent: str | None = None) -> Actor:
        return cls(f"user:{user.id}", user.id, ip, user_agent)

    @classmethod
    def key(cls, key, ip: str | None = None, user_agent: str | None = None) -> Actor:
        """A key acting through the API acts for its owner."""
        return cls(f"key:{key.display_start}", key.user_id, ip, user_agent)

    @classmethod
    def cli(cls) -> Actor:
        return cls("cli")


SYSTEM = Actor("system")


def _storable(text: str | None, length: int) -> str | None:
    """Text as the column can hold it: cut to its length, NUL (which PostgreSQL refuses) shown as U+FFFD. What a
    client sends, such as its user agent, must never make the write fail: refused keys are audited through the
    usage buffer, where one row the database refuses would hold back every later flush."""
    return text[:length].replace("\x00", "\ufffd") if text else None


def event_row(event: str, actor: Actor, key=None, detail: str | None = None, *, key_display: str | None = None,
              verifier_id: int | None = None, created_at=None) -> dict:
    """The column values of one audit event; `verifier_id` names the service that asked, for a check made through a
    verifier credential."""
    row = {
        "event": event,
        "actor": actor.label,
        "actor_user_id": actor.user_id,
        "key_id": key.id if key is not None else None,
        "key_display": key.display_start if key is not None else key_display,
        "detail": _storable(detail, 500),
        "ip": _storable(actor.ip, 45),
        "user_agent": _storable(actor.user_agent, USER_AGENT_LENGTH),
        "verifier_id": verifier_id,
    }
    if created_at is not None:
        row["created_at"] = created_at
    return row


def record(event: str, actor: Actor, key=None, detail: str | None = None) -> AuditEvent:
    """Add an audit event to the current transaction (the caller commits)."""
    entry = AuditEvent(**event_row(event, actor, key, detail))
    db.session.add(entry)
    return entry


def acknowledge_alert(alert: Alert, actor: Actor) -> None:
    """Mark an alert as seen by this admin, and audit that. Commits."""
    if alert.acknowledged_at is not None:
        return
    alert.acknowledged_at = utcnow()
    alert.acknowledged_by_id = actor.user_id
    record("alert.acknowledged", actor, detail=f"alert {alert.id}: {alert.kind}")
    db.session.commit()
