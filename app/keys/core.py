"""The key core's settings and collaborators, built once per app and found through one typed object (KeyCore):
the settings every face reads (lifetimes, the renewal list, scopes), the rate limiter, the usage buffer, and the
lookup caches with the host's change generation they obey."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from app.extensions import AppPart
from app.keys import policy
from app.keys.key_changes import ChangeListener
from app.keys.lookup_cache import Generation, LookupCache
from app.keys.ratelimit import KeyRateLimiter
from app.keys.usage import UsageBuffer


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
    warning_days: int  # keys expiring within this many days are in the renewal list

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
            warning_days=config["RENEWAL_WARNING_DAYS"],
        )

    @property
    def default_lifetime_days(self) -> int:
        """How long a key made without an expiry lives."""
        return min(policy.DEFAULT_LIFETIME_DAYS, self.max_lifetime_days)

    @property
    def renewal_min_days(self) -> int:
        """The least a renewal gives: long enough for the renewed key to leave the renewal list."""
        return max(policy.MIN_RENEWAL_DAYS, 2 * self.warning_days)

    @property
    def expired_listed_days(self) -> int:
        """How long an expired key stays in the renewal list."""
        return policy.EXPIRED_LISTED_DAYS


@dataclass(frozen=True)
class KeyCore(AppPart):
    EXTENSION = "keyfob.keys"

    settings: KeySettings
    limiter: KeyRateLimiter
    usage: UsageBuffer
    changes: Generation  # bumped by every change a cached lookup would miss (app/keys/key_changes.py)
    key_cache: LookupCache
    verifier_cache: LookupCache
    listener: ChangeListener | None = None  # PostgreSQL: other hosts' changes

    def listen_for_changes(self) -> None:
        """Hear other hosts' changes from now on in this process (a no-op once started, and without PostgreSQL)."""
        if self.listener is not None:
            self.listener.ensure_started()

    def close(self) -> None:
        """Let go of what the core holds outside the database session: the usage flusher, the listener, the map."""
        self.usage.stop()
        if self.listener is not None:
            self.listener.stop()
        self.changes.close()


def key_core() -> KeyCore:
    """The current app's key core."""
    return KeyCore.current()


def settings() -> KeySettings:
    """The current app's key settings."""
    return KeyCore.current().settings
