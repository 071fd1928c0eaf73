"""The key lifecycle: create, update, rotate, renew, revoke, disable, enable, lift a suspension.

Plain Python over the database session: callers pass who acts and from where (an audit Actor); nothing here reads a
request. Every change is audited in the same transaction that makes it; the plaintext key leaves this module only as
the return value of create() and rotate(). Checking a presented key is verification.py; reading keys, queries.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from app.accounts import confirmation
from app.accounts.models import User
from app.audit import service as audit
from app.audit.service import Actor
from app.database import commit, utcnow
from app.extensions import db
from app.keys import owner_alerts, policy, tokens
from app.keys.core import key_core, settings
from app.keys.models import ApiKey
from app.keys.policy import KeyInputError
from app.keys.scopes import UnknownScopeError, normalise_scopes, to_text

GRACE_PERIODS = {"none": timedelta(0), "1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
UNSET: Any = object()


class KeyStateError(ValueError):
    """The key's state forbids the change (a revoked key stays revoked)."""


class OwnerUnconfirmed(KeyInputError):
    """The owner has not confirmed their address yet (EMAIL_CONFIRMATION), so no key is made for them. A KeyInputError
    on the `owner` argument: every face that shows those shows this one; the API answers it 403 `email_unconfirmed`."""

    def __init__(self, owner: User) -> None:
        super().__init__("owner", f"{owner.email} is not confirmed yet: until its owner follows the link Keyfob "
                                  "mailed to it (the dashboard can send a new one), the account cannot create API "
                                  "keys.")


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
    """A new key for `owner`, and its plaintext, which is never available again. Raises KeyInputError, or
    OwnerUnconfirmed for an owner whose address is still to be confirmed."""
    if confirmation.pending(owner):
        raise OwnerUnconfirmed(owner)
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
    commit(db.session)
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
        key_core().limiter.forget(key.id, key.rate_limit)
    for field in changed:
        setattr(key, cleaners[field][0], cleaned[field])
    if "disabled" in changed:
        audit.record("key.disabled" if key.disabled else "key.enabled", actor, key)
        if key.disabled:
            owner_alerts.key_stopped(key, "disabled", actor, utcnow())
    others = [field for field in changed if field != "disabled"]
    if others:
        audit.record("key.updated", actor, key, "changed: " + ", ".join(others))
    commit(db.session)
    return changed


def disable(key: ApiKey, *, actor: Actor) -> None:
    update(key, actor=actor, disabled=True)


def enable(key: ApiKey, *, actor: Actor) -> None:
    update(key, actor=actor, disabled=False)


def rotate(key: ApiKey, grace: str = "none", *, actor: Actor, ceiling: datetime | None = None,
           now: datetime | None = None) -> str:
    """A new secret for the same record (name, scopes and settings kept), like Stripe's "roll".

    The old secret keeps working for `grace` ("none", "1h", "24h" or "7d"), so clients can be switched over. An
    expired key can be rotated: it is revived for its original lifetime again (within policy, and never past
    `ceiling`, such as the expiry of the key that asks). Returns the new plaintext key.
    """
    _require_not_revoked(key)
    if grace not in GRACE_PERIODS:
        raise KeyInputError("grace", f"Choose one of: {', '.join(GRACE_PERIODS)}.")
    now = now or utcnow()
    s = settings()
    longest = now + timedelta(days=s.max_lifetime_days)
    expired = key.expires_at is not None and key.expires_at <= now
    expires_at = key.expires_at
    if expired:
        expires_at = policy.renewed_expiry(key.created_at, key.expires_at, now, s.max_lifetime_days, 0)
        if ceiling is not None:
            expires_at = min(expires_at, ceiling)
    elif expires_at is None and not s.allow_non_expiring:
        expires_at = longest
    elif expires_at is not None and expires_at > longest:
        expires_at = longest  # MAX_KEY_LIFETIME_DAYS was lowered since the key was made: back within the policy
    key.expires_at = _check_expiry(expires_at, now)
    if GRACE_PERIODS[grace] and not expired:
        key.previous_secret_hash = key.secret_hash
        key.previous_secret_expires_at = now + GRACE_PERIODS[grace]
    else:
        key.previous_secret_hash = key.previous_secret_expires_at = None
    old_start = key.display_start
    token = _new_secret(key)
    audit.record("key.rotated", actor, key, f"replaces {old_start}; old secret valid for {grace}")
    commit(db.session)
    return token


def renewal_expiry(key: ApiKey, now: datetime) -> datetime:
    """Where a one-click renewal moves the expiry, on every face: the key's original lifetime again from now, at
    least long enough to leave the renewal list (KeySettings.renewal_min_days), within the lifetime policy."""
    s = settings()
    return policy.renewed_expiry(key.created_at, key.expires_at, now, s.max_lifetime_days, s.renewal_min_days)


def renew(key: ApiKey, expires_at: datetime | None = UNSET, *, actor: Actor, now: datetime | None = None) -> None:
    """Move the expiry to `expires_at`, or by default to renewal_expiry() (within the lifetime policy either way);
    an expired key becomes usable again."""
    _require_not_revoked(key)
    now = now or utcnow()
    key.expires_at = _check_expiry(renewal_expiry(key, now) if expires_at is UNSET else expires_at, now)
    audit.record("key.renewed", actor, key, f"expires: {key.expires_at.isoformat() if key.expires_at else 'never'}")
    commit(db.session)


def revoke(key: ApiKey, reason: str = "", *, actor: Actor, now: datetime | None = None) -> None:
    """Stop the key for good, old rotated secret included."""
    _require_not_revoked(key)
    reason = policy.clean_reason(reason)  # before any change, so a refused reason leaves the key untouched
    key.revoked_at = now or utcnow()
    key.revoked_reason = reason or None
    key.previous_secret_hash = key.previous_secret_expires_at = None
    audit.record("key.revoked", actor, key, key.revoked_reason)
    owner_alerts.key_stopped(key, "revoked", actor, key.revoked_at, key.revoked_reason)
    commit(db.session)


def lift_suspension(key: ApiKey, *, actor: Actor) -> None:
    key.suspended_until = None
    key_core().limiter.forget(key.id, key.rate_limit)
    audit.record("key.unsuspended", actor, key)
    commit(db.session)


