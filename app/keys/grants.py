"""What a key may grant when it makes, changes or rotates a key: never more than it has itself.

A key acting on keys (through the JSON API, or any face that lets a key manage keys) is a Caller: its scopes, expiry,
IP allowlist, rate limit and the uses it has left. A key it makes or changes holds no scope the caller lacks, outlives
it in no way, and is at least as restricted in rate limit, IP allowlist and remaining uses; a restriction a request
leaves out takes the caller's own (`inherited`), so leaving a field out never loosens a key. Rotating hands the caller
a working secret, so only a key that could do no more than the caller may be rotated by it.

Pure functions over values: no request, no database. A refusal is GrantRefused, which the API answers with 403.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.keys import policy

UNSET: Any = object()


class GrantRefused(Exception):
    """The caller would grant more than it has; the message says what, in words a person can act on."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Caller:
    """The key that asks, as far as what it may grant goes."""

    scopes: tuple[str, ...]
    expires_at: datetime | None
    allowed_ips: tuple[str, ...] = ()
    rate_limit: int | None = None
    uses_left: int | None = None  # once the asking request has taken its own use; None for no quota

    @classmethod
    def of(cls, key) -> Caller:
        """The caller a verified key is: verify() read its remaining uses before this request took one."""
        before = key.remaining_uses
        return cls(tuple(key.scopes), key.expires_at, tuple(key.allowed_ips), key.rate_limit,
                   None if before is None else before - 1)


def check_scopes(caller: Caller, scopes: Iterable[str]) -> None:
    """Refuse scopes the caller does not hold."""
    beyond = sorted(set(scopes) - set(caller.scopes))
    if beyond:
        raise GrantRefused("A key cannot grant scopes it does not hold itself: " + " ".join(beyond) + ".")


def check_outlives(caller: Caller, expires_at: datetime | None) -> None:
    """Refuse an expiry later than the caller's (never expiring is the latest of all)."""
    if caller.expires_at is not None and (expires_at is None or expires_at > caller.expires_at):
        raise GrantRefused("A key cannot make another key live longer than itself: choose an expiry on or before "
                           f"{caller.expires_at.isoformat()}.")


def capped(caller: Caller, expires_at: datetime) -> datetime:
    """An expiry the caller chose none for (a default, a renewal), brought back to the caller's own."""
    return min(expires_at, caller.expires_at) if caller.expires_at is not None else expires_at


def inherited(caller: Caller) -> dict[str, Any]:
    """The restrictions a new or replaced key gets for fields left out: the caller's own (none for a caller without).
    A key has at least one use: for a caller with none left even that is more than its own, and is refused."""
    return {"allowed_ips": list(caller.allowed_ips), "rate_limit": caller.rate_limit,
            "remaining_uses": None if caller.uses_left is None else max(caller.uses_left, 1)}


def looser(caller: Caller, *, allowed_ips: Iterable[str] = UNSET, rate_limit: int | None = UNSET,
           remaining_uses: int | None = UNSET) -> list[str]:
    """How each given restriction is looser than the caller's own, in words; empty when none is. Tightening is
    always allowed; None means unrestricted."""
    found = []
    if rate_limit is not UNSET and caller.rate_limit is not None and (rate_limit is None
                                                                      or rate_limit > caller.rate_limit):
        found.append(f"a higher rate limit than its own ({caller.rate_limit} per minute)")
    if allowed_ips is not UNSET and not policy.networks_within(allowed_ips, caller.allowed_ips):
        found.append(f"a wider IP allowlist than its own ({', '.join(caller.allowed_ips)})")
    left = caller.uses_left
    if remaining_uses is not UNSET and left is not None and (remaining_uses is None or remaining_uses > left):
        found.append(f"more remaining uses than it has left itself ({left} after this request)")
    return found


def check_restrictions(caller: Caller, **restrictions) -> None:
    """Refuse an allowed_ips, rate_limit or remaining_uses looser than the caller's own."""
    found = looser(caller, **restrictions)
    if found:
        raise GrantRefused("A key cannot give a key " + " or ".join(found) + ".")


def check_rotatable(caller: Caller, key, now: datetime) -> None:
    """Refuse to rotate `key` (anything with a key's scopes, expiry and restrictions) when its new secret would do
    more than the caller: hold another scope, live longer, or be less restricted. An expired key is revived only up to
    the caller's expiry (service.rotate's `ceiling`), so its old expiry does not count."""
    beyond = sorted(set(key.scopes) - set(caller.scopes))
    if beyond:
        raise GrantRefused("A key cannot rotate a key that holds scopes it does not hold itself: "
                           + " ".join(beyond) + ".")
    expired = key.expires_at is not None and key.expires_at <= now
    if caller.expires_at is not None and not expired and (key.expires_at is None
                                                          or key.expires_at > caller.expires_at):
        raise GrantRefused("A key cannot rotate a key that lives longer than itself: its new secret would outlive "
                           "the caller.")
    found = looser(caller, allowed_ips=key.allowed_ips, rate_limit=key.rate_limit,
                   remaining_uses=key.remaining_uses)
    if found:
        raise GrantRefused("A key cannot rotate a key with " + " or ".join(found)
                           + ": its new secret would do more than the caller.")
