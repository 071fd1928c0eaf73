"""Checking a presented key: verify() runs on every guarded request, for the decorator and every face that checks a
key, with the same rules, counts, limits and audit.

It stays off the ORM: one Core statement built once at import, run on a pooled connection of its own, reads the
key's row and its owner's is_active. Building a select() per request, computing its cache key and loading an ApiKey
with its User through the Session cost about 190 µs of Python per request, this about 35 µs (docs/performance.md).
The row is kept in the worker's lookup cache (app/keys/lookup_cache.py) until a change that could refuse the key
(which reaches every worker on the host before its own response) or the bounded age VERIFY_CACHE_SECONDS; every
time in it is compared with the clock at each request, and a quota is taken from the database every time.
"""

from __future__ import annotations

import dataclasses
import hmac
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy import or_, select
from sqlalchemy.exc import SQLAlchemyError

from app.accounts.models import User
from app.audit import service as audit
from app.audit.models import Alert
from app.audit.service import Actor
from app.database import commit, is_outage, utcnow
from app.extensions import db
from app.keys import owner_alerts, policy, tokens
from app.keys.core import KeyCore, key_core, settings
from app.keys.lookup_cache import LookupCache
from app.keys.models import ApiKey
from app.keys.ratelimit import RateLimitState
from app.keys.scopes import from_text

LOOKUP_ATTEMPTS = 3
LOOKUP_BACKOFF_SECONDS = 0.05


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


@dataclass(frozen=True)
class ServiceKey:
    """The optional static SERVICE_API_KEY: it has scopes but no record and no owner."""

    scopes: tuple[str, ...]
    id: None = None
    user_id: None = None
    owner: None = None
    display_start: str = "service"


@dataclass(frozen=True, slots=True)
class Verification:
    outcome: Outcome
    key: VerifiedKey | ServiceKey | None = None
    missing_scopes: tuple[str, ...] = ()
    rate_limit: RateLimitState | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.VALID


#

_KEYS, _USERS = ApiKey.__table__, User.__table__
_DIGEST = sa.bindparam("digest")
# verify() unpacks the row in this order (a tuple unpacking costs 0.1 µs, sixteen Row attribute reads 3 µs).
_LOOKUP = (
    select(_KEYS.c.id, _KEYS.c.user_id, _KEYS.c.name, _KEYS.c.display_start, _KEYS.c.scopes, _KEYS.c.allowed_ips,
           _KEYS.c.expires_at, _KEYS.c.rate_limit, _KEYS.c.remaining_uses, _KEYS.c.secret_hash,
           _KEYS.c.previous_secret_expires_at, _KEYS.c.revoked_at, _KEYS.c.disabled, _KEYS.c.suspended_until,
           _USERS.c.is_active, _USERS.c.email)
    .join_from(_KEYS, _USERS, _KEYS.c.user_id == _USERS.c.id)
    .where(or_(_KEYS.c.secret_hash == _DIGEST, _KEYS.c.previous_secret_hash == _DIGEST))
)
_USE_ONE = (
    sa.update(_KEYS).where(_KEYS.c.id == sa.bindparam("key_id"), _KEYS.c.remaining_uses > 0)
    .values(remaining_uses=_KEYS.c.remaining_uses - 1).returning(_KEYS.c.remaining_uses)
)


@dataclass(frozen=True, slots=True)
class VerifiedKey:
    """A stored key as verify() read it for this request: what a guarded view needs to know, without the ORM.

    Built for every request from the lookup's row. `remaining_uses` is the quota before this request took its use,
    as the database's atomic decrement returned it.
    The owner's email comes with it (the same join that reads whether the owner is active); `owner` loads the User
    itself when asked for.
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
    owner_email: str

    @property
    def owner(self) -> User | None:
        """The key's owner, from the request's database session (a query the first time, the identity map after)."""
        return db.session.get(User, self.user_id)


def verify(token: str, required_scopes: Iterable[str] = (), client_ip: str | None = None,
           user_agent: str | None = None, now: datetime | None = None, verifier_id: int | None = None,
           method: str | None = None, path: str | None = None) -> Verification:
    """Check a presented key for a request needing all of `required_scopes`, from `client_ip`.

    A malformed key (bad checksum, wrong prefix, garbage) is refused without any database query. A revoke, disable
    or expiry applies to the very next request in every process on the host (the lookup cache is told before the
    change answers), and on other hosts within VERIFY_CACHE_SECONDS at most. A valid use is counted in the
    usage buffer; a failure is audited through it. A service that asks through its verifier credential is named by
    `verifier_id`, and may say the `method` and `path` the key was presented for: the owner sees them on the key.
    """
    core = KeyCore.current()
    s = core.settings
    now = now or utcnow()
    asked = _Asked(now, client_ip, user_agent, verifier_id, method, path)
    required = tuple(required_scopes)

    if s.service_key is not None and hmac.compare_digest(token.encode(), s.service_key.encode()):
        missing = tuple(scope for scope in required if scope not in s.service_scopes)
        if missing:
            _failed(Outcome.INSUFFICIENT_SCOPE, asked, detail="needs " + " ".join(missing),
                    key_display=ServiceKey.display_start)
            return Verification(Outcome.INSUFFICIENT_SCOPE, ServiceKey(s.service_scopes), missing)
        return Verification(Outcome.VALID, ServiceKey(s.service_scopes))

    secret_digest, stored = cached_for(core, core.key_cache, token, s.prefix)
    if stored is None:
        parsed = tokens.parse(token, s.prefix)
        if parsed is None:
            return _failed(Outcome.MALFORMED, asked)
        stored = cached_lookup(core, core.key_cache, _LOOKUP, secret_digest, _stored_key)
        if stored is None:
            return _failed(Outcome.NOT_FOUND, asked, key_display=parsed.display_start)

    key, secret_hash, previous_secret_expires_at, revoked_at, disabled, suspended_until, owner_active = stored
    key_id, expires_at, rate_limit, remaining_uses = key.id, key.expires_at, key.rate_limit, key.remaining_uses
    # The previous secret of a rotated key is usable only during the grace period.
    in_grace = previous_secret_expires_at is not None and previous_secret_expires_at > now
    if not hmac.compare_digest(secret_hash, secret_digest) and not in_grace:
        return _failed(Outcome.REVOKED, asked, key, "a secret replaced by rotation")
    if revoked_at is not None:
        return _failed(Outcome.REVOKED, asked, key)
    if disabled or not owner_active:
        return _failed(Outcome.DISABLED, asked, key, None if disabled else "owner deactivated")
    if expires_at is not None and expires_at <= now:
        return _failed(Outcome.EXPIRED, asked, key)
    if suspended_until is not None and suspended_until > now:
        return _failed(Outcome.SUSPENDED, asked, key)
    if key.allowed_ips and not policy.ip_allowed(client_ip, key.allowed_ips):
        return _failed(Outcome.IP_NOT_ALLOWED, asked, key, f"from {client_ip}")
    missing = tuple(scope for scope in required if scope not in key.scopes) if required else ()
    if missing:
        return _failed(Outcome.INSUFFICIENT_SCOPE, asked, key, "needs " + " ".join(missing),
                       missing=missing)

    state = None
    if rate_limit:
        state = core.limiter.hit(key_id, rate_limit)
        if not state.allowed:
            if core.limiter.rejection_should_suspend(key_id):
                _suspend(key, Actor.key(key, client_ip, user_agent), now)
            return _failed(Outcome.RATE_LIMITED, asked, key, rate_limit=state)
    if remaining_uses is not None:
        left = _use_one(key_id)
        if left is None:
            return _failed(Outcome.USAGE_EXCEEDED, asked, key, rate_limit=state)
        key = dataclasses.replace(key, remaining_uses=left)

    core.usage.record_use(key_id, now, client_ip, verifier_id)
    if verifier_id is not None:
        _note_request(asked, key_id, Outcome.VALID)
    return Verification(Outcome.VALID, key, rate_limit=state)


def _stored_key(row: sa.Row) -> tuple:
    """What verify() needs of a key's row, made once per read of it (the scopes and networks parsed), not per request:
    the VerifiedKey, then the fields that decide a refusal."""
    (key_id, user_id, name, display_start, scope_text, ip_text, expires_at, rate_limit, remaining_uses, secret_hash,
     previous_secret_expires_at, revoked_at, disabled, suspended_until, owner_active, owner_email) = row
    key = VerifiedKey(key_id, user_id, name, display_start, from_text(scope_text),
                      tuple(ip_text.split()) if ip_text else (), expires_at, rate_limit, remaining_uses, owner_email)
    return key, secret_hash, previous_secret_expires_at, revoked_at, disabled, suspended_until, owner_active


def cached_for(core: KeyCore, cache: LookupCache, token: str, prefix: str) -> tuple[str, Any | None]:
    """The token's digest and what `cache` holds for it. A token the cache holds passed the format check when it was
    read, and the same text has the same digest: a hit needs no second check. A token that cannot be well formed
    (another length, not ASCII) is not even hashed: ("", None), and its format check refuses it."""
    if len(token) != tokens.key_length(prefix) or not token.isascii():
        return "", None
    digest = tokens.digest(core.settings.pepper, token)
    return digest, cache.get(digest)


def cached_lookup(core: KeyCore, cache: LookupCache, statement: sa.Select, digest: str,
                  prepare: Callable[[sa.Row], Any]) -> Any | None:
    """`prepare` of the one row `statement` finds for `digest`, through `cache`: what a guarded request reads of a
    key, and what the verification API and forward auth read of a verifier credential. None: no such row."""
    if not cache.enabled:
        row = _read(statement, digest)
        return None if row is None else prepare(row)
    found = cache.get(digest)
    if found is None:
        core.listen_for_changes()
        ticket = cache.ticket()  # before the query: a change committed from now on makes this row unusable
        row = _read(statement, digest)
        if row is None:
            return None
        found = prepare(row)
        cache.put(digest, found, ticket)
    return found


def _read(statement: sa.Select, digest: str) -> sa.Row | None:
    """One indexed query on a pooled connection. A database blip is retried briefly with exponential backoff, then
    raised."""
    for attempt in range(LOOKUP_ATTEMPTS):
        try:
            with db.engine.connect() as connection:
                if connection.dialect.name == "postgresql":
                    # One read needs no transaction, and reads the latest committed row all the same. Without one,
                    # psycopg sends no BEGIN and the pool's reset no ROLLBACK (which would also drop the statement
                    # psycopg has prepared): 2 round trips instead of 4. The pool restores the isolation level when
                    # the connection goes back, so whoever takes it next gets a transaction as before.
                    connection.execution_options(isolation_level="AUTOCOMMIT")
                return connection.execute(statement, {"digest": digest}).first()
        except SQLAlchemyError as error:
            if not is_outage(error) or attempt == LOOKUP_ATTEMPTS - 1:
                raise
            time.sleep(LOOKUP_BACKOFF_SECONDS * 2 ** attempt)
    raise AssertionError("unreachable")


def _use_one(key_id: int) -> int | None:
    """Take one use from the key's quota atomically (one conditional UPDATE, committed): the uses left before this
    one, read from the database (never from a cached row), or None when none is left."""
    with db.engine.begin() as connection:
        left = connection.execute(_USE_ONE, {"key_id": key_id}).scalar()
    return None if left is None else left + 1


def _suspend(key: VerifiedKey, actor: Actor, now: datetime) -> None:
    until = now + settings().suspension
    db.session.execute(sa.update(ApiKey).where(ApiKey.id == key.id).values(suspended_until=until)
                       .execution_options(synchronize_session=False))
    message = (f"Key {key.display_start} ({key.name}) kept exceeding its rate limit of {key.rate_limit}/min "
               f"and is suspended until {until:%Y-%m-%d %H:%M} UTC.")
    audit.record("key.suspended", actor, key, message)
    db.session.add(Alert(kind="rate_limit_suspension", key_id=key.id, ip=actor.ip, message=message))
    owner_alerts.key_suspended(key, until)
    commit(db.session)


def looks_like_a_key(value: str) -> bool:
    """True for any well-formed key with this deployment's prefix (checksum and all), or the service key: no query."""
    s = settings()
    if s.service_key is not None and hmac.compare_digest(value.encode(), s.service_key.encode()):
        return True
    return tokens.parse(value, s.prefix) is not None


@dataclass(frozen=True, slots=True)
class _Asked:
    """Who asked for a check, from where and when: written into the audit of a refusal."""

    now: datetime
    client_ip: str | None
    user_agent: str | None
    verifier_id: int | None  # the service that asked through a verifier credential; None for Keyfob's own routes
    method: str | None = None  # what the service said the key was presented for
    path: str | None = None


def _note_request(asked: _Asked, key_id: int, outcome: Outcome) -> None:
    if asked.verifier_id is not None and asked.path is not None:
        key_core().usage.record_request(key_id, asked.verifier_id, asked.now, asked.method or "", asked.path,
                                        outcome.value)


def _failed(outcome: Outcome, asked: _Asked, key: VerifiedKey | None = None, detail: str | None = None, *,
            key_display: str | None = None, missing: tuple[str, ...] = (),
            rate_limit: RateLimitState | None = None) -> Verification:
    """Audit a refused key (buffered, never the secret) and return the refusal. The actor is the key when one was
    found (it acts for its owner), else anonymous."""
    actor = Actor.key(key, asked.client_ip, asked.user_agent) if key is not None else Actor(
        "anonymous", None, asked.client_ip, asked.user_agent)
    text = outcome.value + (f": {detail}" if detail else "")
    row = audit.event_row("key.verify_failed", actor, key, text, key_display=key_display,
                          verifier_id=asked.verifier_id)
    key_core().usage.record_failure(row, key.id if key is not None else None, asked.now)
    if key is not None and key.id is not None:
        _note_request(asked, key.id, outcome)
    return Verification(outcome, key, missing, rate_limit)
