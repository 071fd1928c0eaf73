"""Per-key rate limits (requests per minute) and suspension of keys that keep exceeding them.

Counters live in a `limits` storage: memory for one process, Redis (RATELIMIT_STORAGE_URI) to share them between
processes and hosts.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import limits
from limits.storage import Storage
from limits.strategies import MovingWindowRateLimiter

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
        self._limiter = MovingWindowRateLimiter(storage)
        self._suspend_after = limits.parse(suspend_after)

    def hit(self, key_id: int, per_minute: int) -> RateLimitState:
        """Count one request for the key; `allowed` is False when it is over its limit."""
        rule = limits.RateLimitItemPerMinute(per_minute)
        allowed = self._limiter.hit(rule, NAMESPACE, str(key_id))
        stats = self._limiter.get_window_stats(rule, NAMESPACE, str(key_id))
        reset = max(0, math.ceil(stats.reset_time - time.time()))
        return RateLimitState(per_minute, 60, stats.remaining, max(reset, 1) if not allowed else reset, allowed)

    def rejection_should_suspend(self, key_id: int) -> bool:
        """Count a rate-limited request; True once the key has kept exceeding its limit past the threshold."""
        return not self._limiter.hit(self._suspend_after, NAMESPACE, "rejected", str(key_id))

    def forget(self, key_id: int, per_minute: int | None) -> None:
        """Clear a key's counters, when its suspension ends early or its limit changes."""
        self._limiter.clear(self._suspend_after, NAMESPACE, "rejected", str(key_id))
        if per_minute:
            self._limiter.clear(limits.RateLimitItemPerMinute(per_minute), NAMESPACE, str(key_id))
