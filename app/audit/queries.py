"""Reading the audit log and the alerts, for the admin pages and the CSV export."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import false, func, select

from app.audit.models import Alert, AuditEvent
from app.database import MAX_ID
from app.extensions import db

PAGE_SIZE = 50


@dataclass(frozen=True)
class AuditFilters:
    actor_ids: tuple[int, ...] | None = None  # only events by these users (none at all when empty); None: anyone
    key: str = ""                  # a key id, or its display start
    event: str = ""                # exact event name, such as key.revoked
    since: datetime | None = None
    until: datetime | None = None


def _where(filters: AuditFilters) -> list:
    where: list = []
    if filters.actor_ids is not None:
        where.append(AuditEvent.actor_user_id.in_(filters.actor_ids) if filters.actor_ids else false())
    key = filters.key.strip()
    if key:
        if key.isascii() and key.isdigit():  # an id past the column's range names no key (and would overflow)
            where.append(AuditEvent.key_id == int(key) if int(key) <= MAX_ID else false())
        else:
            where.append(AuditEvent.key_display == key.rstrip("…"))
    if filters.event.strip():
        where.append(AuditEvent.event == filters.event.strip())
    if filters.since is not None:
        where.append(AuditEvent.created_at >= filters.since)
    if filters.until is not None:
        where.append(AuditEvent.created_at < filters.until)
    return where


def audit_page(filters: AuditFilters, page: int = 1, per_page: int = PAGE_SIZE) -> tuple[list[AuditEvent], bool]:
    """A page of matching events, newest first, and whether an older page follows."""
    rows = list(db.session.scalars(
        select(AuditEvent).where(*_where(filters)).order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
        .limit(per_page + 1).offset((min(max(page, 1), MAX_ID) - 1) * per_page)))  # a page past any row is empty
    return rows[:per_page], len(rows) > per_page


def audit_rows(filters: AuditFilters, batch: int = 1000) -> Iterator[AuditEvent]:
    """Every matching event, newest first, read in batches so an export of millions holds few in memory."""
    statement = (select(AuditEvent).where(*_where(filters))
                 .order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
                 .execution_options(yield_per=batch))
    # Closed when the reader stops early too (a download cut short), with the server-side cursor behind it.
    with db.session.scalars(statement) as rows:
        yield from rows


def event_names() -> list[str]:
    return list(db.session.scalars(select(AuditEvent.event).distinct().order_by(AuditEvent.event)))


def alerts(*, open_only: bool, limit: int = 100) -> list[Alert]:
    statement = select(Alert).order_by(Alert.created_at.desc(), Alert.id.desc()).limit(limit)
    if open_only:
        statement = statement.where(Alert.acknowledged_at.is_(None))
    return list(db.session.scalars(statement))


def open_alert_count() -> int:
    return db.session.scalar(select(func.count()).select_from(Alert).where(Alert.acknowledged_at.is_(None))) or 0
