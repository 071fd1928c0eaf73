"""The store that throttles and rate limits count in: memory for one process, Redis to share counts between processes
and hosts (RATELIMIT_STORAGE_URI). Shared plumbing: the key core's rate limits and the accounts' throttles both count
here, and neither owns it.

While Redis cannot be reached, whatever needs it raises StoreUnavailable (a 503 with Retry-After from the web faces,
as a database outage is): a limit that cannot be counted is not waved through, and the log gets one warning line.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask, current_app
from limits.errors import ConfigurationError
from limits.storage import MemoryStorage, Storage, storage_from_string

log = logging.getLogger(__name__)
EXTENSION = "keyfob.counters"


class StoreUnavailable(Exception):
    """The counter store (Redis) cannot be reached right now."""

    retry_after_seconds = 5
    message = ("Keyfob cannot reach its rate-limit store right now, so it cannot count this request. "
               "Please try again in a few seconds.")


class StoreConfigError(ValueError):
    """RATELIMIT_STORAGE_URI names no store that can be used."""


def open_store(uri: str) -> Storage:
    try:
        return storage_from_string(uri)
    except ConfigurationError as error:
        raise StoreConfigError(str(error)) from None


def install(app: Flask, store: Storage) -> None:
    app.extensions[EXTENSION] = store


def counter_store() -> Storage:
    """The app's counter store."""
    return current_app.extensions[EXTENSION]


def is_shared(store: Storage) -> bool:
    """True for a store on a server (Redis), which can be down; memory storage cannot."""
    return not isinstance(store, MemoryStorage)


@contextmanager
def reachable(store: Storage) -> Iterator[None]:
    """Turn the store's "cannot reach the server" errors into StoreUnavailable."""
    errors = store.base_exceptions if is_shared(store) else ()
    try:
        yield
    except errors as error:
        log.warning("rate-limit storage (Redis) unavailable: %s: %s", error.__class__.__name__, error)
        raise StoreUnavailable() from None
