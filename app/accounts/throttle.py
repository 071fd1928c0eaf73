"""Throttles in moving windows (no permanent lockout): failed logins per account and per client IP, account
creations per client IP, and password-reset mails per address and per client IP.

While the counter store (Redis) cannot be reached, counting raises StoreUnavailable: logins, registrations and
password resets answer 503 with Retry-After rather than go unthrottled.
"""

from __future__ import annotations

import math
import time

import limits
from limits.storage import Storage
from limits.strategies import MovingWindowRateLimiter

from app.counters import reachable

NAMESPACE = "login-failures"
REGISTRATION_NAMESPACE = "registrations"
RESET_NAMESPACE = "reset-requests"


class LoginThrottle:
    def __init__(self, storage: Storage, per_account: str, per_ip: str) -> None:
        self._storage = storage
        self._limiter = MovingWindowRateLimiter(storage)
        self._rules = (("account", limits.parse(per_account)), ("ip", limits.parse(per_ip)))

    def _keys(self, email: str, ip: str) -> dict[str, str]:
        return {"account": email, "ip": ip}

    def retry_after(self, email: str, ip: str) -> int:
        """Seconds until another attempt is allowed for this email and IP; 0 when it is allowed now."""
        keys = self._keys(email, ip)
        wait = 0.0
        with reachable(self._storage):
            for kind, rule in self._rules:
                if not self._limiter.test(rule, NAMESPACE, kind, keys[kind]):
                    reset = self._limiter.get_window_stats(rule, NAMESPACE, kind, keys[kind]).reset_time
                    wait = max(wait, reset - time.time())
        return max(1, math.ceil(wait)) if wait > 0 else 0

    def record_failure(self, email: str, ip: str) -> None:
        keys = self._keys(email, ip)
        with reachable(self._storage):
            for kind, rule in self._rules:
                self._limiter.hit(rule, NAMESPACE, kind, keys[kind])

    def record_success(self, email: str) -> None:
        """A correct password clears the account's failures (the IP's stay: one IP may try many accounts)."""
        with reachable(self._storage):
            self._limiter.clear(self._rules[0][1], NAMESPACE, "account", email)


class RegistrationThrottle:
    """Account creations tried per client IP. Each attempt tells whether an email already has an account (there is
    no email step to hide that behind), so this bounds how fast anyone can probe addresses, and how fast anyone can
    make accounts (and spend password hashing)."""

    def __init__(self, storage: Storage, per_ip: str) -> None:
        self._storage = storage
        self._limiter = MovingWindowRateLimiter(storage)
        self._rule = limits.parse(per_ip)

    def attempt(self, ip: str) -> int:
        """Count one attempt from this IP: 0 when it may go ahead, else the seconds until one may."""
        with reachable(self._storage):
            return _hit_or_wait(self._limiter, self._rule, REGISTRATION_NAMESPACE, ip)


class PasswordResetThrottle:
    """Reset mails asked for, per client IP (bounds how fast anyone can make Keyfob mail strangers) and per address
    (bounds how many mails one inbox gets). Over the address's share the answer stays the same and nothing is sent,
    so throttling cannot tell whether the address has an account."""

    def __init__(self, storage: Storage, per_address: str, per_ip: str) -> None:
        self._storage = storage
        self._limiter = MovingWindowRateLimiter(storage)
        self._per_address = limits.parse(per_address)
        self._per_ip = limits.parse(per_ip)

    def attempt(self, ip: str) -> int:
        """Count one request from this IP: 0 when it may go ahead, else the seconds until one may."""
        with reachable(self._storage):
            return _hit_or_wait(self._limiter, self._per_ip, RESET_NAMESPACE, "ip", ip)

    def may_mail(self, email: str) -> bool:
        """Count one mail to this (normalised) address: False when it has had its share for now."""
        with reachable(self._storage):
            return self._limiter.hit(self._per_address, RESET_NAMESPACE, "address", email)


def _hit_or_wait(limiter: MovingWindowRateLimiter, rule: limits.RateLimitItem, *identifiers: str) -> int:
    """Count one hit: 0 when it was within the rule, else the seconds until one will be."""
    if limiter.hit(rule, *identifiers):
        return 0
    reset = limiter.get_window_stats(rule, *identifiers).reset_time
    return max(1, math.ceil(reset - time.time()))
