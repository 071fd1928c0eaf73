"""Throttles in moving windows (no permanent lockout): failed logins per account and per client IP, account
creations per client IP, the mails address confirmation sends per account and per address, and password-reset
mails per address and per client IP.

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
# Wrong codes at the second step of signing in, counted apart: a right password must not clear them.
SECOND_STEP_NAMESPACE = "second-step-failures"
REGISTRATION_NAMESPACE = "registrations"
RESET_NAMESPACE = "reset-requests"


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


class AttemptThrottle:
    """Attempts per subject (a client IP, an account, an address) under one or more rules in moving windows: an
    attempt allowed counts against every rule, a refused one against none."""

    def __init__(self, storage: Storage, namespace: str, *rules: str) -> None:
        self._storage = storage
        self._limiter = MovingWindowRateLimiter(storage)
        self._namespace = namespace
        self._rules = tuple(limits.parse(rule) for rule in rules)

    def attempt(self, subject: str) -> int:
        """Count one attempt for this subject: 0 when it may go ahead, else the seconds until one may."""
        with reachable(self._storage):
            resets = [self._limiter.get_window_stats(rule, self._namespace, subject).reset_time
                      for rule in self._rules if not self._limiter.test(rule, self._namespace, subject)]
            if not resets:
                for rule in self._rules:
                    self._limiter.hit(rule, self._namespace, subject)
                return 0
        return max(1, math.ceil(max(resets) - time.time()))


class RegistrationThrottle(AttemptThrottle):
    """Account creations tried per client IP. Without EMAIL_CONFIRMATION each attempt tells whether an email already
    has an account, so this bounds how fast anyone can probe addresses, and how fast anyone can make accounts (and
    spend password hashing, and, with it on, make Keyfob send mail)."""

    def __init__(self, storage: Storage, per_ip: str) -> None:
        super().__init__(storage, REGISTRATION_NAMESPACE, per_ip)


# Address confirmation (app/accounts/confirmation.py): a signed-in account asking for its link again, and the notice
# to an address someone tried to sign up with again. Both mail an address nobody proved is theirs: bounded per
# account and per address, so neither can be turned into a mail bomb.
CONFIRMATION_RESENDS = ("confirmation-resends", "1 per minute", "10 per day")
SIGN_UP_NOTICES = ("sign-up-notices", "1 per hour")
RESET_IP_NAMESPACE, RESET_ADDRESS_NAMESPACE = "password-resets-ip", "password-resets-address"
