"""One background thread per process: the usage flusher, the mail sender and the key-change listener each need
exactly one in every process that uses them. Threads do not survive fork, so each gunicorn worker starts its own on
first need; a lock keeps two request threads of one worker from starting two."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable


class ProcessThread:
    """A daemon thread running `target(stop)` until the Event `stop` is set, started at most once per process."""

    def __init__(self, name: str, target: Callable[[threading.Event], None]) -> None:
        self._name = name
        self._target = target
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._stop = threading.Event()

    def ensure_started(self) -> None:
        """Start this process's thread unless it runs already (a pid compare when it does)."""
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._stop = threading.Event()  # a fresh one: the parent's may be set, and is not ours to share
            threading.Thread(target=self._target, args=(self._stop,), name=self._name, daemon=True).start()

    def stop(self) -> None:
        """Ask the thread to end after its current wait; nobody waits for it."""
        self._stop.set()
