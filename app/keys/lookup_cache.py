"""What a worker read for a key (or a verifier credential), kept for the next request, and the host's change counter
that tells every worker on the host when to read afresh.

A cached lookup is used only while three things hold: the host's change generation is the one read *before* the
lookup went to the database, the entry is younger than the bounded age (VERIFY_CACHE_SECONDS), and it is in the
cache at all (bounded in size, the oldest out first). Every change that can refuse a key bumps the generation after
its commit and before its response (app/keys/key_changes.py), so on one host the next request in every worker reads
afresh. Across hosts the generation is bumped by a PostgreSQL notification, and the bounded age covers a lost one.

Only the lookup's row is kept, keyed by the presented secret's HMAC digest (what the database is searched by): never
the secret itself. Times that decide a refusal (expiry, suspension, the grace of a rotated secret) are in the row
and compared with the clock at every request; a quota's remaining uses are taken from the database every time.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import time
from pathlib import Path
from typing import Any

from app.extensions import AppPart

_COUNTER = struct.Struct("=Q")
GENERATION_FILE = "key-changes.generation"


class Generation(AppPart):
    """A 64-bit counter in a file every process on the host maps into memory: reading it is a memory load (~0.2 µs);
    bumping it takes the file's lock, so two changes at once cannot make one bump. A file in the instance folder,
    so every Keyfob process of a deployment on the host (gunicorn workers, `flask` commands) shares it."""

    EXTENSION = "keyfob.key_changes"

    def __init__(self, path: Path) -> None:
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < _COUNTER.size:
                os.ftruncate(fd, _COUNTER.size)  # zero-filled; a second process doing the same changes nothing
            self._map = mmap.mmap(fd, _COUNTER.size)  # MAP_SHARED: every process sees every write at once
        finally:
            os.close(fd)  # the map keeps its own handle

    def read(self) -> int:
        return _COUNTER.unpack_from(self._map)[0]

    def bump(self) -> None:
        with open(self.path, "rb") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            _COUNTER.pack_into(self._map, 0, (self.read() + 1) % 2**64)

    def close(self) -> None:
        self._map.close()


class LookupCache:
    """Lookups of one kind (keys, or verifier credentials) by digest: at most `size` entries, each used for at most
    `max_age` seconds from the moment its lookup started, and only while the generation read before that lookup is
    still the host's. Not-found answers are never kept: a key made a moment ago must work at once, and made-up
    digests must not fill the cache. Safe to share between a worker's threads (each step is one dict operation)."""

    def __init__(self, generation: Generation, max_age: float, size: int) -> None:
        self.generation = generation
        self.max_age = max_age
        self.size = size
        self._entries: dict[str, tuple[int, float, Any]] = {}
        self._seen = generation.read()

    @property
    def enabled(self) -> bool:
        return self.max_age > 0

    def _generation(self) -> int:
        generation = self.generation.read()
        if generation != self._seen:
            # Whatever was read under an older generation may be stale: drop it all at once, so that nothing stale
            # even takes up room.
            self._entries.clear()
            self._seen = generation
        return generation

    def get(self, digest: str) -> Any | None:
        """The row kept for `digest` while it is fresh, else None."""
        entry = self._entries.get(digest)
        if entry is None:
            return None
        generation, read_at, row = entry
        if generation != self._generation() or time.monotonic() - read_at >= self.max_age:
            self._entries.pop(digest, None)
            return None
        return row

    def ticket(self) -> tuple[int, float]:
        """Taken before a lookup goes to the database: the generation and the time the lookup's row is valid from.
        A change committed after this bumps the generation past the ticket's, so the row is never used."""
        return self._generation(), time.monotonic()

    def put(self, digest: str, row: Any, ticket: tuple[int, float]) -> None:
        """Keep the row a lookup started with `ticket` found."""
        generation, read_at = ticket
        if row is None or generation != self._generation():
            return
        self._entries.pop(digest, None)
        while len(self._entries) >= self.size:
            try:
                self._entries.pop(next(iter(self._entries)), None)  # the oldest: dicts keep insertion order
            except (RuntimeError, StopIteration):  # another thread changed the dict meanwhile: look again
                continue
        self._entries[digest] = (generation, read_at, row)

    def __len__(self) -> int:
        return len(self._entries)
