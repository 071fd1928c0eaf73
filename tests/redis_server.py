"""A throwaway Redis for the tests: Debian's redis-server on a free loopback port, in a temporary folder.

Nothing is persisted (no RDB snapshots, no AOF) and the server is stopped when the test module is done. Without
redis-server, tests that need it are skipped with one loud line, except under CI=true, where they fail: CI must
install it (Debian package `redis-server`).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

DEBIAN_REDIS_SERVER = Path("/usr/bin/redis-server")
MISSING = ("redis-server not found (apt-get install redis-server): the Redis rate-limit tests did NOT run")
START_SECONDS = 10


def find_redis_server() -> Path | None:
    """Debian's redis-server, or another on PATH."""
    if DEBIAN_REDIS_SERVER.is_file():
        return DEBIAN_REDIS_SERVER
    found = shutil.which("redis-server")
    return Path(found) if found else None


def redis_server_binary(*, module_level: bool = False) -> Path | None:
    """redis-server; without it the test (or with module_level, at import, the whole module: one line) is skipped.
    Under CI=true each test that needs it fails instead (at import nothing happens: a failed import would stop the
    whole run, and the rest of the suite should still report)."""
    found = find_redis_server()
    if found:
        return found
    if os.environ.get("CI") == "true":
        if module_level:
            return None
        pytest.fail(MISSING + " (CI=true: it must)", pytrace=False)
    pytest.skip(MISSING, allow_module_level=module_level)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    def __init__(self, process: subprocess.Popen, port: int, folder: Path) -> None:
        self.process, self.port, self.folder = process, port, folder
        self.url = f"redis://127.0.0.1:{port}/0"
        self.client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)

    def flush(self) -> None:
        """Forget every counter: each test starts from an empty Redis."""
        self.client.flushall()

    def restart(self) -> None:
        """A new, empty redis-server on the same port (after stop()): what a client sees when Redis comes back."""
        self.stop()
        self.process = _start(redis_server_binary(), self.folder, self.port).process

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _start(binary: Path, folder: Path, port: int | None = None) -> RedisServer:
    port = port or _free_port()
    log = folder / "redis.log"
    process = subprocess.Popen(
        [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(folder), "--logfile", str(log), "--daemonize", "no"],
        cwd=folder, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = RedisServer(process, port, folder)
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:  # a bare connect first: the Redis client would retry a refused connection with back-off
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            server.client.ping()
            return server
        except (OSError, redis.ConnectionError):
            if process.poll() is not None or time.monotonic() > deadline:
                server.stop()
                text = log.read_text() if log.is_file() else ""
                raise RuntimeError(f"redis-server did not start on port {port}:\n{text}") from None
            time.sleep(0.02)


@contextmanager
def running_redis(folder: Path) -> Iterator[RedisServer]:
    """A fresh redis-server for the duration of the block (a second try if another process took the free port)."""
    binary = redis_server_binary()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        server = _start(binary, folder)
    except RuntimeError:
        server = _start(binary, folder)
    try:
        yield server
    finally:
        server.stop()
