"""Per-key rate limits (requests per minute) and suspension of keys that keep exceeding them.

Counters live in the app's counter store (app/counters.py): memory for one process, Redis to share them between
processes and hosts. While Redis cannot be reached, counting raises StoreUnavailable: a limit that cannot be counted
is not waved through.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import limits
from limits.storage import Storage
from limits.strategies import MovingWindowRateLimiter

from app.counters import reachable

NAMESPACE = "api-key"


@dataclass(frozen=True)
class RateLimitState:
    limit: int          # requests per window
    window: int         # seconds
    remaining: int
    reset: int          # seconds until a request is allowed again (or the window clears)
    allowed: bool


class KeyRateLimiter:
    def __init__(self, storage: Storage, suspend_after: str) -> None:
        self._storage = storage
        self._limiter = MovingWindowRateLimiter(storage)
        self._suspend_after = limits.parse(suspend_after)
        # Once over the threshold, every refusal in flight in every process is over it too: only the first of them
        # may suspend the key (one audit event, one alert). A slot of 1 per the threshold's window, taken atomically.
        self._first_to_suspend = limits.RateLimitItemPerSecond(1, self._suspend_after.get_expiry())

    def hit(self, key_id: int, per_minute: int) -> RateLimitState:
        """Count one request for the key; `allowed` is False when it is over its limit."""
        rule = limits.RateLimitItemPerMinute(per_minute)
        with reachable(self._storage):
            allowed = self._limiter.hit(rule, NAMESPACE, str(key_id))
            stats = self._limiter.get_window_stats(rule, NAMESPACE, str(key_id))
        reset = max(0, math.ceil(stats.reset_time - time.time()))
        return RateLimitState(per_minute, 60, stats.remaining, max(reset, 1) if not allowed else reset, allowed)

    def rejection_should_suspend(self, key_id: int) -> bool:
        """Count a rate-limited request; True, for one request only, once the key has kept exceeding its limit past
        the threshold."""
        with reachable(self._storage):
            if self._limiter.hit(self._suspend_after, NAMESPACE, "rejected", str(key_id)):
                return False
            return self._limiter.hit(self._first_to_suspend, NAMESPACE, "suspending", str(key_id))

    def forget(self, key_id: int, per_minute: int | None) -> None:
        """Clear a key's counters, when its suspension ends early or its limit changes."""
        with reachable(self._storage):
            self._limiter.clear(self._suspend_after, NAMESPACE, "rejected", str(key_id))
            self._limiter.clear(self._first_to_suspend, NAMESPACE, "suspending", str(key_id))
            if per_minute:
                self._limiter.clear(limits.RateLimitItemPerMinute(per_minute), NAMESPACE, str(key_id))
