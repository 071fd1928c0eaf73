"""Reading keys for the faces: one owner's keys searched, filtered by status and paged; usage per day; key events.

Status is computed in SQL with the same rules as ApiKey.status(), so filters and pages never load a user's whole
key list. Pages are small and every query is bounded by the (user_id, created_at) index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import ColumnElement, and_, case, func, not_, or_, select

from app.accounts.models import User
from app.audit.models import AuditEvent
from app.database import utcnow
from app.extensions import db
from app.keys.core import settings
from app.keys.models import (
    MAX_KEY_ID,
    RECENT_REQUESTS_KEPT,
    ApiKey,
    DailyKeyUsage,
    KeyRecentRequest,
    KeyVerifierUsage,
    Verifier,
)

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


# -- across every user (the admin pages) ----------------------------------------------------------------------------

ADMIN_SORTS = {
    "newest": (ApiKey.created_at.desc(), ApiKey.id.desc()),
    "oldest": (ApiKey.created_at.asc(), ApiKey.id.asc()),
    "expires": (ApiKey.expires_at.is_(None), ApiKey.expires_at.asc(), ApiKey.id.asc()),
    "last_used": (ApiKey.last_used_at.is_(None), ApiKey.last_used_at.desc(), ApiKey.id.desc()),
    "most_used": (ApiKey.usage_count.desc(), ApiKey.id.desc()),
    "name": (ApiKey.name.asc(), ApiKey.id.asc()),
}


@dataclass(frozen=True)
class KeyFilters:
    """What the admin key list can be narrowed by; every field is optional."""

    search: str = ""               # name, owner email or display start
    status: str = "all"
    owner: str = ""                # exact email
    scope: str = ""
    expiring_within_days: int | None = None
    idle_days: int | None = None   # not used for this many days (or never, and made that long ago)
    never_expiring: bool = False


def _idle_since(cutoff: datetime) -> ColumnElement[bool]:
    return or_(ApiKey.last_used_at < cutoff, and_(ApiKey.last_used_at.is_(None), ApiKey.created_at < cutoff))


def _admin_filters(filters: KeyFilters, now: datetime, warning_days: int) -> list:
    where: list = []
    if filters.status != "all":
        where.append(status_condition(filters.status, now, warning_days))
    if filters.search.strip():
        pattern = f"%{_escape_like(filters.search.strip())}%"
        where.append(or_(ApiKey.name.ilike(pattern, escape="\\"), ApiKey.display_start.ilike(pattern, escape="\\"),
                         ApiKey.user_id.in_(select(User.id).where(User.email.ilike(pattern, escape="\\")))))
    if filters.owner.strip():
        where.append(ApiKey.user_id.in_(select(User.id).where(User.email == filters.owner.strip().lower())))
    if filters.scope.strip():
        # Scopes are stored space-separated: pad both sides so "read" never matches "read:data".
        where.append((" " + ApiKey.scope_text + " ").like(f"% {_escape_like(filters.scope.strip())} %", escape="\\"))
    if filters.expiring_within_days is not None:
        where += [ApiKey.expires_at.is_not(None), ApiKey.expires_at > now,
                  ApiKey.expires_at <= now + timedelta(days=filters.expiring_within_days)]
    if filters.idle_days is not None:
        where.append(_idle_since(now - timedelta(days=filters.idle_days)))
    if filters.never_expiring:
        where.append(ApiKey.expires_at.is_(None))
    return where


def admin_key_page(filters: KeyFilters, *, now: datetime, warning_days: int, sort: str = "newest", page: int = 1,
                   per_page: int = PAGE_SIZE) -> KeyPage:
    """One page of every user's keys, filtered and sorted; owners loaded with them (one query, not one per row)."""
    where = _admin_filters(filters, now, warning_days)
    total = db.session.scalar(select(func.count()).select_from(ApiKey).where(*where)) or 0
    pages = max(1, -(-total // per_page))
    page = min(max(1, page), pages)
    keys = db.session.scalars(select(ApiKey).where(*where).order_by(*ADMIN_SORTS.get(sort, ADMIN_SORTS["newest"]))
                              .limit(per_page).offset((page - 1) * per_page)).all()
    return KeyPage(list(keys), page, pages, total)


@dataclass(frozen=True)
class Totals:
    users: int
    active_keys: int
    expiring_soon: int
    requests_today: int
    requests_7_days: int
    failed_today: int
    failed_7_days: int


def totals(now: datetime, warning_days: int) -> Totals:
    today = now.date()

    def usage(column, since: date) -> int:
        return int(db.session.scalar(select(func.coalesce(func.sum(column), 0)).where(DailyKeyUsage.day >= since)))

    def failed_since(moment: datetime) -> int:
        # Refusals of unknown and malformed keys have no key row to count them under: count their audit events.
        return db.session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.event == "key.verify_failed", AuditEvent.created_at >= moment)) or 0

    midnight = datetime.combine(today, datetime.min.time(), now.tzinfo)
    return Totals(
        users=db.session.scalar(select(func.count()).select_from(User)) or 0,
        active_keys=db.session.scalar(select(func.count()).select_from(ApiKey).where(
            status_condition("active", now, warning_days))) or 0,
        expiring_soon=db.session.scalar(select(func.count()).select_from(ApiKey).where(
            status_condition("expiring", now, warning_days))) or 0,
        requests_today=usage(DailyKeyUsage.requests, today),
        requests_7_days=usage(DailyKeyUsage.requests, today - timedelta(days=6)),
        failed_today=failed_since(midnight),
        failed_7_days=failed_since(midnight - timedelta(days=6)),
    )


def accepted_key_count(now: datetime) -> int:
    """How many keys verify() would accept now (given the scopes and the address): live, enabled, not suspended,
    with uses left, and of an active owner. The "active" status alone counts spent and orphaned keys too."""
    return db.session.scalar(
        select(func.count()).select_from(ApiKey).join(User, User.id == ApiKey.user_id).where(
            status_condition("active", now, warning_days=0),
            or_(ApiKey.remaining_uses.is_(None), ApiKey.remaining_uses > 0),
            User.is_active.is_(True))) or 0


def top_keys(days: int, today: date, limit: int = 10) -> list[tuple[ApiKey, int]]:
    """The keys with the most valid requests in the last `days` days, with that count."""
    used = func.sum(DailyKeyUsage.requests).label("used")
    rows = db.session.execute(
        select(ApiKey, used).join(DailyKeyUsage, DailyKeyUsage.key_id == ApiKey.id)
        .where(DailyKeyUsage.day > today - timedelta(days=days)).group_by(ApiKey.id)
        .order_by(used.desc(), ApiKey.id).limit(limit))
    return [(key, int(count)) for key, count in rows if count]


def health_lists(now: datetime, catalogue: dict[str, str], limit: int = 50) -> dict[str, list[ApiKey]]:
    """Live keys that deserve a second look, by reason."""
    live = status_condition("live", now, 0)
    every_scope = and_(*[(" " + ApiKey.scope_text + " ").like(f"% {_escape_like(name)} %", escape="\\")
                         for name in catalogue])
    reasons = {
        "never_expiring": ApiKey.expires_at.is_(None),
        "idle": _idle_since(now - timedelta(days=30)),
        "every_scope": every_scope,
        "owner_deactivated": ApiKey.user_id.in_(select(User.id).where(User.is_active.is_(False))),
    }
    return {reason: list(db.session.scalars(select(ApiKey).where(live, condition)
                                            .order_by(ApiKey.created_at, ApiKey.id).limit(limit)))
            for reason, condition in reasons.items()}


def key_counts_by_owner(now: datetime) -> dict[int, tuple[int, int]]:
    """{user id: (live keys, all keys)} in one grouped query."""
    live = func.sum(case((status_condition("live", now, 0), 1), else_=0))
    rows = db.session.execute(select(ApiKey.user_id, live, func.count()).group_by(ApiKey.user_id))
    return {user_id: (int(live_count or 0), int(total)) for user_id, live_count, total in rows}


# -- one owner's keys, and one key ----------------------------------------------------------------------------------

def _expiring(owner: User, within_days: int, expired_within_days: int, now: datetime):
    return (ApiKey.user_id == owner.id, ApiKey.revoked_at.is_(None), ApiKey.expires_at.is_not(None),
            ApiKey.expires_at <= now + timedelta(days=within_days),
            ApiKey.expires_at > now - timedelta(days=expired_within_days))


def expiring(owner: User, within_days: int, *, expired_within_days: int = 0, now: datetime | None = None,
             limit: int | None = None) -> list[ApiKey]:
    """The owner's unrevoked keys expiring in the next `within_days` days (and, optionally, those that expired in
    the last `expired_within_days`), soonest first, at most `limit`: the renewal-warning list."""
    now = now or utcnow()
    return list(db.session.scalars(
        select(ApiKey).where(*_expiring(owner, within_days, expired_within_days, now))
        .order_by(ApiKey.expires_at, ApiKey.id)
        .limit(limit)
    ))


def renewal_list(owner: User, now: datetime, *, within_days: int | None = None,
                 limit: int | None = None) -> list[ApiKey]:
    """The renewal-warning list, the same on every face: keys expiring within `within_days` (by default
    RENEWAL_WARNING_DAYS) and those expired in the last KeySettings.expired_listed_days, soonest first."""
    s = settings()
    return expiring(owner, within_days or s.warning_days, expired_within_days=s.expired_listed_days, now=now,
                    limit=limit)


def renewal_list_size(owner: User, now: datetime) -> int:
    """How many keys renewal_list() would give without a limit."""
    s = settings()
    return count_expiring(owner, s.warning_days, expired_within_days=s.expired_listed_days, now=now)


def count_expiring(owner: User, within_days: int, *, expired_within_days: int = 0,
                   now: datetime | None = None) -> int:
    """How many keys expiring() would list without a limit."""
    now = now or utcnow()
    return db.session.scalar(select(func.count()).select_from(ApiKey).where(
        *_expiring(owner, within_days, expired_within_days, now))) or 0


class KeyNotFound(LookupError):
    """No key with this id, or none that belongs to the owner asked about: the two look the same on purpose."""

    def __init__(self, key_id: int, owner: User | None) -> None:
        super().__init__(f"{'You have' if owner is not None else 'There is'} no key with id {key_id}.")
        self.key_id = key_id


def get_key(key_id: int, owner: User | None = None) -> ApiKey:
    """The key with this id (only if it belongs to `owner`, when given), or KeyNotFound: every face answers it with
    404, so another user's key looks exactly like one that does not exist."""
    key = db.session.get(ApiKey, key_id) if 0 < key_id <= MAX_KEY_ID else None  # past it the driver would overflow
    if key is None or (owner is not None and key.user_id != owner.id):
        raise KeyNotFound(key_id, owner)
    return key


def keys_of(owner: User | None = None) -> list[ApiKey]:
    statement = select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
    if owner is not None:
        statement = statement.where(ApiKey.user_id == owner.id)
    return list(db.session.scalars(statement))


@dataclass(frozen=True)
class ServiceChecks:
    name: str
    requests: int
    failures: int
    last_used_at: datetime | None


@dataclass(frozen=True)
class CheckedRequest:
    service: str
    at: datetime
    method: str
    path: str
    outcome: str


def key_services(key_id: int) -> dict[str, list]:
    """Which services checked the key (per verifier: accepted, refused, last check, busiest first) and the method and
    path of their latest checks, newest first: the template values of keys/_services.html."""
    services = [ServiceChecks(*row) for row in db.session.execute(
        select(Verifier.name, KeyVerifierUsage.requests, KeyVerifierUsage.failures, KeyVerifierUsage.last_used_at)
        .join(Verifier, Verifier.id == KeyVerifierUsage.verifier_id).where(KeyVerifierUsage.key_id == key_id)
        .order_by((KeyVerifierUsage.requests + KeyVerifierUsage.failures).desc(), Verifier.name))]
    recent = [CheckedRequest(*row) for row in db.session.execute(
        select(Verifier.name, KeyRecentRequest.at, KeyRecentRequest.method, KeyRecentRequest.path,
               KeyRecentRequest.outcome)
        .join(Verifier, Verifier.id == KeyRecentRequest.verifier_id).where(KeyRecentRequest.key_id == key_id)
        .order_by(KeyRecentRequest.at.desc(), KeyRecentRequest.id.desc()).limit(RECENT_REQUESTS_KEPT))]
    return {"services": services, "recent_requests": recent}
