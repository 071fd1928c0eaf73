"""The key lifecycle: create, verify, update, rotate, renew, revoke, disable, enable, and the renewal list.

Plain Python over the database session: callers pass who acts and from where (an audit Actor); nothing here reads a
request. Every change is audited in the same transaction that makes it; the plaintext key leaves this module only as
the return value of create() and rotate().
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy import func, or_, select
from sqlalchemy.exc import SQLAlchemyError

from app.accounts.models import User
from app.audit import service as audit
from app.audit.models import Alert
from app.audit.service import Actor
from app.database import is_outage, roll_back, utcnow
from app.extensions import db
from app.keys import policy, tokens
from app.keys.models import MAX_KEY_ID, ApiKey
from app.keys.policy import KeyInputError
from app.keys.ratelimit import KeyRateLimiter, RateLimitState
from app.keys.scopes import UnknownScopeError, from_text, normalise_scopes, to_text
from app.keys.usage import UsageBuffer

GRACE_PERIODS = {"none": timedelta(0), "1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
LOOKUP_ATTEMPTS = 3
LOOKUP_BACKOFF_SECONDS = 0.05
UNSET: Any = object()


class Outcome(StrEnum):
    VALID = "valid"
    MALFORMED = "malformed"
    NOT_FOUND = "not_found"
    EXPIRED = "expired"
    REVOKED = "revoked"
    DISABLED = "disabled"
    SUSPENDED = "suspended"
    IP_NOT_ALLOWED = "ip_not_allowed"
    INSUFFICIENT_SCOPE = "insufficient_scope"
    RATE_LIMITED = "rate_limited"
    USAGE_EXCEEDED = "usage_exceeded"


class KeyStateError(ValueError):
    """The key's state forbids the change (a revoked key stays revoked)."""


@dataclass(frozen=True)
class ServiceKey:
    """The optional static SERVICE_API_KEY: it has scopes but no record and no owner."""

    scopes: tuple[str, ...]
    id: None = None
    user_id: None = None
    owner: None = None
    display_start: str = "service"


@dataclass(frozen=True)
class Verification:
    outcome: Outcome
    key: VerifiedKey | ServiceKey | None = None
    missing_scopes: tuple[str, ...] = ()
    rate_limit: RateLimitState | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.VALID


@dataclass(frozen=True)
class KeySettings:
    prefix: str
    pepper: bytes
    max_lifetime_days: int
    allow_non_expiring: bool
    catalogue: dict[str, str]
    service_key: str | None
    service_scopes: tuple[str, ...]
    suspension: timedelta

    @classmethod
    def from_config(cls, config) -> KeySettings:
        return cls(
            prefix=config["KEY_PREFIX"],
            pepper=config["KEY_PEPPER"].encode(),
            max_lifetime_days=config["MAX_KEY_LIFETIME_DAYS"],
            allow_non_expiring=config["ALLOW_NON_EXPIRING_KEYS"],
            catalogue=config["API_SCOPES"],
            service_key=config["SERVICE_API_KEY"],
            service_scopes=config["SERVICE_API_KEY_SCOPES"],
            suspension=timedelta(seconds=config["KEY_SUSPENSION_SECONDS"]),
        )


def settings() -> KeySettings:
    return current_app.extensions["keyfob.keys"]


def _limiter() -> KeyRateLimiter:
    return current_app.extensions["keyfob.key_limiter"]


def usage_buffer() -> UsageBuffer:
    return current_app.extensions["keyfob.usage"]


def _commit() -> None:
    try:
        db.session.commit()
    except Exception:
        roll_back(db.session)  # the commit's own error is the one to answer, even when the rollback fails too
        raise


def _clean_scopes(scopes: Iterable[str]) -> str:
    try:
        return to_text(normalise_scopes(scopes, settings().catalogue))
    except UnknownScopeError as error:
        raise KeyInputError("scopes", str(error)) from None


def _check_expiry(expires_at: datetime | None, now: datetime) -> datetime | None:
    s = settings()
    return policy.check_expiry(expires_at, now, s.max_lifetime_days, s.allow_non_expiring)


def _require_not_revoked(key: ApiKey) -> None:
    if key.revoked_at is not None:
        raise KeyStateError("This key is revoked; a revoked key stays revoked. Create a new one instead.")


def _new_secret(key: ApiKey) -> str:
    token = tokens.generate(settings().prefix)
    key.secret_hash = tokens.digest(settings().pepper, token)
    key.display_start = tokens.parse(token, settings().prefix).display_start
    return token


# -- lifecycle -----------------------------------------------------------------------------------------------------

def create(owner: User, name: str, scopes: Iterable[str], expires_at: datetime | None, *, actor: Actor,
           description: str = "", allowed_ips: Iterable[str] | str = (), rate_limit: int | None = None,
           remaining_uses: int | None = None, now: datetime | None = None) -> tuple[ApiKey, str]:
    """A new key for `owner`, and its plaintext, which is never available again. Raises KeyInputError."""
    now = now or utcnow()
    key = ApiKey(
        owner=owner,
        name=policy.clean_name(name),
        description=policy.clean_description(description),
        scope_text=_clean_scopes(scopes),
        expires_at=_check_expiry(expires_at, now),
        allowed_ip_text="\n".join(policy.clean_networks(allowed_ips)),
        rate_limit=policy.clean_limit(rate_limit, "rate_limit", policy.MAX_RATE_LIMIT),
        remaining_uses=policy.clean_limit(remaining_uses, "remaining_uses", policy.MAX_REMAINING_USES),
        created_at=now,
    )
    token = _new_secret(key)
    db.session.add(key)
    db.session.flush()
    audit.record("key.created", actor, key, f"scopes: {key.scope_text or '(none)'}; expires: "
                                            f"{key.expires_at.isoformat() if key.expires_at else 'never'}")
    _commit()
    return key, token


def update(key: ApiKey, *, actor: Actor, name: str = UNSET, description: str = UNSET, scopes: Iterable[str] = UNSET,
           allowed_ips: Iterable[str] | str = UNSET, rate_limit: int | None = UNSET,
           remaining_uses: int | None = UNSET, disabled: bool = UNSET) -> list[str]:
    """Change a key's editable settings; returns the names of the fields that changed. All or nothing."""
    _require_not_revoked(key)
    cleaners = {
        "name": ("name", policy.clean_name),
        "description": ("description", policy.clean_description),
        "scopes": ("scope_text", _clean_scopes),
        "allowed_ips": ("allowed_ip_text", lambda value: "\n".join(policy.clean_networks(value))),
        "rate_limit": ("rate_limit", lambda value: policy.clean_limit(value, "rate_limit", policy.MAX_RATE_LIMIT)),
        "remaining_uses": ("remaining_uses",
                           lambda value: policy.clean_limit(value, "remaining_uses", policy.MAX_REMAINING_USES)),
        "disabled": ("disabled", bool),
    }
    given = {"name": name, "description": description, "scopes": scopes, "allowed_ips": allowed_ips,
             "rate_limit": rate_limit, "remaining_uses": remaining_uses, "disabled": disabled}
    cleaned = {field: cleaners[field][1](value) for field, value in given.items() if value is not UNSET}
    changed = [field for field, value in cleaned.items() if getattr(key, cleaners[field][0]) != value]
    if not changed:
        return []
    if "rate_limit" in changed:
        _limiter().forget(key.id, key.rate_limit)
    for field in changed:
        setattr(key, cleaners[field][0], cleaned[field])
    if "disabled" in changed:
        audit.record("key.disabled" if key.disabled else "key.enabled", actor, key)
    others = [field for field in changed if field != "disabled"]
    if others:
        audit.record("key.updated", actor, key, "changed: " + ", ".join(others))
    _commit()
    return changed


def disable(key: ApiKey, *, actor: Actor) -> None:
    update(key, actor=actor, disabled=True)


def enable(key: ApiKey, *, actor: Actor) -> None:
    update(key, actor=actor, disabled=False)


def rotate(key: ApiKey, grace: str = "none", *, actor: Actor, expires_at: datetime | None = UNSET,
           now: datetime | None = None) -> str:
    """A new secret for the same record (name, scopes and settings kept), like Stripe's "roll".

    The old secret keeps working for `grace` ("none", "1h", "24h" or "7d"), so clients can be switched over. An
    expired key can be rotated: it gets a new expiry of its original lifetime (within policy) unless one is given.
    Returns the new plaintext key.
    """
    _require_not_revoked(key)
    if grace not in GRACE_PERIODS:
        raise KeyInputError("grace", f"Choose one of: {', '.join(GRACE_PERIODS)}.")
    now = now or utcnow()
    expired = key.expires_at is not None and key.expires_at <= now
    if expires_at is UNSET:
        expires_at = key.expires_at
        max_lifetime = timedelta(days=settings().max_lifetime_days)
        if expired:
            expires_at = now + min(key.expires_at - key.created_at, max_lifetime)
        elif expires_at is None and not settings().allow_non_expiring:
            expires_at = now + max_lifetime
        elif expires_at is not None and expires_at > now + max_lifetime:
            # MAX_KEY_LIFETIME_DAYS was lowered since the key was made: rotation brings it within the policy.
            expires_at = now + max_lifetime
    key.expires_at = _check_expiry(expires_at, now)
    if GRACE_PERIODS[grace] and not expired:
        key.previous_secret_hash = key.secret_hash
        key.previous_secret_expires_at = now + GRACE_PERIODS[grace]
    else:
        key.previous_secret_hash = key.previous_secret_expires_at = None
    old_start = key.display_start
    token = _new_secret(key)
    audit.record("key.rotated", actor, key, f"replaces {old_start}; old secret valid for {grace}")
    _commit()
    return token


def renew(key: ApiKey, expires_at: datetime | None, *, actor: Actor, now: datetime | None = None) -> None:
    """Move the expiry (within the lifetime policy); an expired key becomes usable again."""
    _require_not_revoked(key)
    key.expires_at = _check_expiry(expires_at, now or utcnow())
    audit.record("key.renewed", actor, key, f"expires: {key.expires_at.isoformat() if key.expires_at else 'never'}")
    _commit()


def revoke(key: ApiKey, reason: str = "", *, actor: Actor, now: datetime | None = None) -> None:
    """Stop the key for good, old rotated secret included."""
    _require_not_revoked(key)
    reason = policy.clean_reason(reason)  # before any change, so a refused reason leaves the key untouched
    key.revoked_at = now or utcnow()
    key.revoked_reason = reason or None
    key.previous_secret_hash = key.previous_secret_expires_at = None
    audit.record("key.revoked", actor, key, key.revoked_reason)
    _commit()


def lift_suspension(key: ApiKey, *, actor: Actor) -> None:
    key.suspended_until = None
    _limiter().forget(key.id, key.rate_limit)
    audit.record("key.unsuspended", actor, key)
    _commit()


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


def count_expiring(owner: User, within_days: int, *, expired_within_days: int = 0,
                   now: datetime | None = None) -> int:
    """How many keys expiring() would list without a limit."""
    now = now or utcnow()
    return db.session.scalar(select(func.count()).select_from(ApiKey).where(
        *_expiring(owner, within_days, expired_within_days, now))) or 0


def find_key(key_id: int, owner: User | None = None) -> ApiKey | None:
    """The key with this id (only if it belongs to `owner`, when given)."""
    if not 0 < key_id <= MAX_KEY_ID:  # no such row, and the driver would overflow looking for it
        return None
    key = db.session.get(ApiKey, key_id)
    if key is None or (owner is not None and key.user_id != owner.id):
        return None
    return key


def keys_of(owner: User | None = None) -> list[ApiKey]:
    statement = select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
    if owner is not None:
        statement = statement.where(ApiKey.user_id == owner.id)
    return list(db.session.scalars(statement))


# -- verification --------------------------------------------------------------------------------------------------
#
# verify() runs on every API request, so it stays off the ORM: one Core statement built once at import, run on a
# pooled connection of its own, reads the key's row and its owner's is_active. Building a select() per request,
# computing its cache key and loading an ApiKey with its User through the Session cost about 190 µs of Python per
# request, this about 35 µs (docs/performance.md). Nothing read here is kept beyond the request.

_KEYS, _USERS = ApiKey.__table__, User.__table__
_DIGEST = sa.bindparam("digest")
# verify() unpacks the row in this order (a tuple unpacking costs 0.1 µs, fifteen Row attribute reads 3 µs).
_LOOKUP = (
    select(_KEYS.c.id, _KEYS.c.user_id, _KEYS.c.name, _KEYS.c.display_start, _KEYS.c.scopes, _KEYS.c.allowed_ips,
           _KEYS.c.expires_at, _KEYS.c.rate_limit, _KEYS.c.remaining_uses, _KEYS.c.secret_hash,
           _KEYS.c.previous_secret_expires_at, _KEYS.c.revoked_at, _KEYS.c.disabled, _KEYS.c.suspended_until,
           _USERS.c.is_active)
    .join_from(_KEYS, _USERS, _KEYS.c.user_id == _USERS.c.id)
    .where(or_(_KEYS.c.secret_hash == _DIGEST, _KEYS.c.previous_secret_hash == _DIGEST))
)
_USE_ONE = (
    sa.update(_KEYS).where(_KEYS.c.id == sa.bindparam("key_id"), _KEYS.c.remaining_uses > 0)
    .values(remaining_uses=_KEYS.c.remaining_uses - 1)
)


@dataclass(frozen=True, slots=True)
class VerifiedKey:
    """A stored key as verify() read it for this request: what a guarded view needs to know, without the ORM.

    Read afresh for every request and never cached. `remaining_uses` is the quota before this request took its use.
    The owner is not loaded with it: `owner` loads the User when asked for.
    """

    id: int
    user_id: int
    name: str
    display_start: str
    scopes: tuple[str, ...]
    allowed_ips: tuple[str, ...]
    expires_at: datetime | None
    rate_limit: int | None
    remaining_uses: int | None

    @property
    def owner(self) -> User | None:
        """The key's owner, from the request's database session (a query the first time, the identity map after)."""
        return db.session.get(User, self.user_id)


def verify(token: str, required_scopes: Iterable[str] = (), client_ip: str | None = None,
           user_agent: str | None = None, now: datetime | None = None) -> Verification:
    """Check a presented key for a request needing all of `required_scopes`, from `client_ip`.

    A malformed key (bad checksum, wrong prefix, garbage) is refused without any database query. Nothing is cached:
    a revoke, disable or expiry applies to the very next request in every process. A valid use is counted in the
    usage buffer; a failure is audited through it.
    """
    s = settings()
    now = now or utcnow()
    required = tuple(required_scopes)

    if s.service_key is not None and hmac.compare_digest(token.encode(), s.service_key.encode()):
        missing = tuple(scope for scope in required if scope not in s.service_scopes)
        if missing:
            _failed(Outcome.INSUFFICIENT_SCOPE, now, client_ip, user_agent, detail="needs " + " ".join(missing),
                    key_display=ServiceKey.display_start)
            return Verification(Outcome.INSUFFICIENT_SCOPE, ServiceKey(s.service_scopes), missing)
        return Verification(Outcome.VALID, ServiceKey(s.service_scopes))

    parsed = tokens.parse(token, s.prefix)
    if parsed is None:
        return _failed(Outcome.MALFORMED, now, client_ip, user_agent)
    secret_digest = tokens.digest(s.pepper, token)
    row = _lookup(secret_digest)
    if row is None:
        return _failed(Outcome.NOT_FOUND, now, client_ip, user_agent, key_display=parsed.display_start)

    (key_id, user_id, name, display_start, scope_text, ip_text, expires_at, rate_limit, remaining_uses, secret_hash,
     previous_secret_expires_at, revoked_at, disabled, suspended_until, owner_active) = row
    key = VerifiedKey(key_id, user_id, name, display_start, from_text(scope_text),
                      tuple(ip_text.split()) if ip_text else (), expires_at, rate_limit, remaining_uses)
    # The previous secret of a rotated key is usable only during the grace period.
    in_grace = previous_secret_expires_at is not None and previous_secret_expires_at > now
    if not hmac.compare_digest(secret_hash, secret_digest) and not in_grace:
        return _failed(Outcome.REVOKED, now, client_ip, user_agent, key, "a secret replaced by rotation")
    if revoked_at is not None:
        return _failed(Outcome.REVOKED, now, client_ip, user_agent, key)
    if disabled or not owner_active:
        return _failed(Outcome.DISABLED, now, client_ip, user_agent, key, None if disabled else "owner deactivated")
    if expires_at is not None and expires_at <= now:
        return _failed(Outcome.EXPIRED, now, client_ip, user_agent, key)
    if suspended_until is not None and suspended_until > now:
        return _failed(Outcome.SUSPENDED, now, client_ip, user_agent, key)
    if key.allowed_ips and not policy.ip_allowed(client_ip, key.allowed_ips):
        return _failed(Outcome.IP_NOT_ALLOWED, now, client_ip, user_agent, key, f"from {client_ip}")
    missing = tuple(scope for scope in required if scope not in key.scopes) if required else ()
    if missing:
        return _failed(Outcome.INSUFFICIENT_SCOPE, now, client_ip, user_agent, key, "needs " + " ".join(missing),
                       missing=missing)

    state = None
    if rate_limit:
        state = _limiter().hit(key_id, rate_limit)
        if not state.allowed:
            if _limiter().rejection_should_suspend(key_id):
                _suspend(key, Actor.key(key, client_ip, user_agent), now)
            return _failed(Outcome.RATE_LIMITED, now, client_ip, user_agent, key, rate_limit=state)
    if remaining_uses is not None and not _use_one(key_id):
        return _failed(Outcome.USAGE_EXCEEDED, now, client_ip, user_agent, key, rate_limit=state)

    usage_buffer().record_use(key_id, now, client_ip)
    return Verification(Outcome.VALID, key, rate_limit=state)


def _lookup(secret_digest: str) -> sa.Row | None:
    """The key row whose current or previous secret has this digest, with its owner's is_active: one indexed query on
    a pooled connection. A database blip is retried briefly with exponential backoff, then raised."""
    for attempt in range(LOOKUP_ATTEMPTS):
        try:
            with db.engine.connect() as connection:
                if connection.dialect.name == "postgresql":
                    # One read needs no transaction, and reads the latest committed row all the same. Without one,
                    # psycopg sends no BEGIN and the pool's reset no ROLLBACK (which would also drop the statement
                    # psycopg has prepared): 2 round trips instead of 4. The pool restores the isolation level when
                    # the connection goes back, so whoever takes it next gets a transaction as before.
                    connection.execution_options(isolation_level="AUTOCOMMIT")
                return connection.execute(_LOOKUP, {"digest": secret_digest}).first()
        except SQLAlchemyError as error:
            if not is_outage(error) or attempt == LOOKUP_ATTEMPTS - 1:
                raise
            time.sleep(LOOKUP_BACKOFF_SECONDS * 2 ** attempt)
    raise AssertionError("unreachable")


def _use_one(key_id: int) -> bool:
    """Take one use from the key's quota atomically (one conditional UPDATE, committed); False when none is left."""
    with db.engine.begin() as connection:
        return connection.execute(_USE_ONE, {"key_id": key_id}).rowcount == 1


def _suspend(key: VerifiedKey, actor: Actor, now: datetime) -> None:
    until = now + settings().suspension
    db.session.execute(sa.update(ApiKey).where(ApiKey.id == key.id).values(suspended_until=until)
                       .execution_options(synchronize_session=False))
    message = (f"Key {key.display_start} ({key.name}) kept exceeding its rate limit of {key.rate_limit}/min "
               f"and is suspended until {until:%Y-%m-%d %H:%M} UTC.")
    audit.record("key.suspended", actor, key, message)
    db.session.add(Alert(kind="rate_limit_suspension", key_id=key.id, ip=actor.ip, message=message))
    _commit()


def looks_like_a_key(value: str) -> bool:
    """True for any well-formed key with this deployment's prefix (checksum and all), or the service key: no query."""
    s = settings()
    if s.service_key is not None and hmac.compare_digest(value.encode(), s.service_key.encode()):
        return True
    return tokens.parse(value, s.prefix) is not None


def _failed(outcome: Outcome, now: datetime, client_ip: str | None, user_agent: str | None,
            key: VerifiedKey | None = None, detail: str | None = None, *, key_display: str | None = None,
            missing: tuple[str, ...] = (), rate_limit: RateLimitState | None = None) -> Verification:
    """Audit a refused key (buffered, never the secret) and return the refusal. The actor is the key when one was
    found (it acts for its owner), else anonymous."""
    actor = Actor.key(key, client_ip, user_agent) if key is not None else Actor("anonymous", None, client_ip,
                                                                                 user_agent)
    text = outcome.value + (f": {detail}" if detail else "")
    row = audit.event_row("key.verify_failed", actor, key, text, key_display=key_display)
    usage_buffer().record_failure(row, key.id if key is not None else None, now)
    return Verification(outcome, key, missing, rate_limit)
