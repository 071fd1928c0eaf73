"""Reading keys for the faces: one owner's keys searched, filtered by status and paged; usage per day; key events.

Status is computed in SQL with the same rules as ApiKey.status(), so filters and pages never load a user's whole
key list. Pages are small and every query is bounded by the (user_id, created_at) index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, not_, or_, select

from app.audit.models import AuditEvent
from app.extensions import db
from app.keys.models import ApiKey, DailyKeyUsage

STATUSES = ("active", "expiring", "disabled", "suspended", "expired", "revoked")
# Groups for filters: "live" is neither revoked nor expired, "ended" is either.
GROUPS = ("live", "ended")
LIVE_STATUSES = ("active", "expiring", "disabled", "suspended")
PAGE_SIZE = 25


def status_condition(status: str, now: datetime, warning_days: int) -> ColumnElement[bool]:
    """SQL for "the key has this status" (the order of ApiKey.status(): revoked, expired, disabled, suspended)."""
    revoked = ApiKey.revoked_at.is_not(None)
    expired = and_(not_(revoked), ApiKey.expires_at.is_not(None), ApiKey.expires_at <= now)
    alive = and_(ApiKey.revoked_at.is_(None), or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now))
    suspended = and_(ApiKey.suspended_until.is_not(None), ApiKey.suspended_until > now)
    usable = and_(alive, ApiKey.disabled.is_(False), not_(suspended))
    conditions = {
        "revoked": revoked,
        "expired": expired,
        "disabled": and_(alive, ApiKey.disabled.is_(True)),
        "suspended": and_(alive, ApiKey.disabled.is_(False), suspended),
        "active": usable,
        "expiring": and_(usable, ApiKey.expires_at <= now + timedelta(days=warning_days)),
        "live": alive,
        "ended": or_(revoked, expired),
    }
    return conditions[status]


@dataclass(frozen=True)
class KeyPage:
    keys: list[ApiKey]
    page: int
    pages: int
    total: int

    @property
    def has_previous(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _filters(owner_id: int, now: datetime, warning_days: int, status: str, search: str) -> list:
    """The owner's keys with this status ("all" for any) whose name contains `search` (literally)."""
    where = [ApiKey.user_id == owner_id]
    if status != "all":
        where.append(status_condition(status, now, warning_days))
    if search.strip():
        where.append(ApiKey.name.ilike(f"%{_escape_like(search.strip())}%", escape="\\"))
    return where


def key_page(owner_id: int, *, now: datetime, warning_days: int, status: str = "live", search: str = "",
             page: int = 1, per_page: int = PAGE_SIZE) -> KeyPage:
    """One page of the owner's keys, newest first. `status` is one of STATUSES, "live" or "ended"."""
    where = _filters(owner_id, now, warning_days, status, search)
    total = db.session.scalar(select(func.count()).select_from(ApiKey).where(*where)) or 0
    pages = max(1, -(-total // per_page))
    page = min(max(1, page), pages)
    keys = db.session.scalars(
        select(ApiKey).where(*where).order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
        .limit(per_page).offset((page - 1) * per_page)
    ).all()
    return KeyPage(list(keys), page, pages, total)


def key_slice(owner_id: int, *, now: datetime, warning_days: int, status: str = "live", search: str = "",
              expiring_within_days: int | None = None, after: tuple[datetime, int] | None = None,
              limit: int = PAGE_SIZE) -> tuple[list[ApiKey], bool]:
    """Keyset paging for the API: up to `limit` keys after the (created_at, id) of the last one seen, newest first,
    and whether more follow. Unlike page numbers, a cursor stays put while keys are added."""
    where = _filters(owner_id, now, warning_days, status, search)
    if expiring_within_days is not None:
        where += [ApiKey.expires_at.is_not(None), ApiKey.expires_at <= now + timedelta(days=expiring_within_days)]
    if after is not None:
        created_at, key_id = after
        where.append(or_(ApiKey.created_at < created_at, and_(ApiKey.created_at == created_at, ApiKey.id < key_id)))
    keys = list(db.session.scalars(
        select(ApiKey).where(*where).order_by(ApiKey.created_at.desc(), ApiKey.id.desc()).limit(limit + 1)))
    return keys[:limit], len(keys) > limit


@dataclass(frozen=True)
class DayUsage:
    day: date
    requests: int
    failures: int


def daily_usage(key_ids: Sequence[int] | None, days: int, today: date) -> list[DayUsage]:
    """Requests and failures per UTC day for the last `days` days up to `today`, zero-filled; all keys when None."""
    first = today - timedelta(days=days - 1)
    statement = (select(DailyKeyUsage.day, func.sum(DailyKeyUsage.requests), func.sum(DailyKeyUsage.failures))
                 .where(DailyKeyUsage.day >= first, DailyKeyUsage.day <= today)
                 .group_by(DailyKeyUsage.day))
    if key_ids is not None:
        statement = statement.where(DailyKeyUsage.key_id.in_(key_ids))
    found = {day: (int(requests or 0), int(failures or 0)) for day, requests, failures in db.session.execute(statement)}
    return [DayUsage(day, *found.get(day, (0, 0))) for day in (first + timedelta(days=n) for n in range(days))]


def key_events(key_id: int, limit: int = 50) -> list[AuditEvent]:
    """The key's latest audit events, newest first."""
    return list(db.session.scalars(
        select(AuditEvent).where(AuditEvent.key_id == key_id)
        .order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc()).limit(limit)
    ))
