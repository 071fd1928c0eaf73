"""Throttles in moving windows (no permanent lockout): failed logins per account and per client IP, and account
creations per client IP.

While the counter store (Redis) cannot be reached, counting raises StoreUnavailable: logins and registrations answer
503 with Retry-After rather than go unthrottled.
"""

from __future__ import annotations

import math
import time

import limits
from limits.storage import Storage
from limits.strategies import MovingWindowRateLimiter

from app.counters import reachable

NAMESPACE = "login-failures"
# Wrong codes at the second step of signing in, counted apart: a right password must not clear them.
SECOND_STEP_NAMESPACE = "second-step-failures"
REGISTRATION_NAMESPACE = "registrations"


class LoginThrottle:
    """Failed attempts per account and per IP. One counts wrong passwords; another (namespace SECOND_STEP_NAMESPACE,
    the account being the user id) wrong codes at the second step of signing in."""

    def __init__(self, storage: Storage, per_account: str, per_ip: str, namespace: str = NAMESPACE) -> None:
        self._storage = storage
        self._namespace = namespace
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
                if not self._limiter.test(rule, self._namespace, kind, keys[kind]):
                    reset = self._limiter.get_window_stats(rule, self._namespace, kind, keys[kind]).reset_time
                    wait = max(wait, reset - time.time())
        return max(1, math.ceil(wait)) if wait > 0 else 0

    def record_failure(self, email: str, ip: str) -> None:
        keys = self._keys(email, ip)
        with reachable(self._storage):
            for kind, rule in self._rules:
                self._limiter.hit(rule, self._namespace, kind, keys[kind])

    def record_success(self, email: str) -> None:
        """A correct password clears the account's failures (the IP's stay: one IP may try many accounts)."""
        with reachable(self._storage):
            self._limiter.clear(self._rules[0][1], self._namespace, "account", email)


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
            if self._limiter.hit(self._rule, REGISTRATION_NAMESPACE, ip):
                return 0
            reset = self._limiter.get_window_stats(self._rule, REGISTRATION_NAMESPACE, ip).reset_time
        return max(1, math.ceil(reset - time.time()))
