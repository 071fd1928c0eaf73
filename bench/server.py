"""gunicorn for `make bench`, and what the bench reads about processes from /proc: children, CPU time, memory."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
GUNICORN_CONFIG = BENCH / "gunicorn_quiet.conf.py"
READY_TIMEOUT_SECONDS = 30
STOP_TIMEOUT_SECONDS = 40  # gunicorn.conf.py's graceful_timeout is 30


class BenchError(Exception):
    """The bench cannot measure; the message says why."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_status(url: str, headers: dict[str, str] | None = None, timeout: float = 5.0, method: str = "GET",
                body: str | None = None) -> int:
    request = urllib.request.Request(url, data=None if body is None else body.encode(),  # noqa: S310 -- loopback
                                     headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 -- always http://127.0.0.1
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def start_gunicorn(env: dict[str, str], log_path: Path, access_log: bool, app: str) -> subprocess.Popen:
    """gunicorn serving `app` (a module of bench/ or of the repository's root, which is its working directory) with
    the production settings (bench/gunicorn_quiet.conf.py loads gunicorn.conf.py), its output into `log_path`."""
    command = [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONFIG), "--pythonpath", str(BENCH), app]
    env = {**env, "KEYFOB_BENCH_ACCESS_LOG": "1" if access_log else "0"}
    with log_path.open("w") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log,  # noqa: S603 -- a fixed argv, no shell
                                stderr=subprocess.STDOUT)


def wait_ready(server: subprocess.Popen, base_url: str, log_path: Path, path: str = "/readyz") -> None:
    """Until `path` answers 200: Keyfob's readiness probe, or the bare app's /healthz."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise BenchError(f"gunicorn exited with {server.returncode} before it was ready:\n{tail(log_path)}")
        try:
            if http_status(base_url + path, timeout=1.0) == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise BenchError(f"gunicorn was not ready after {READY_TIMEOUT_SECONDS} s:\n{tail(log_path)}")


def stop_gunicorn(server: subprocess.Popen) -> int:
    """SIGTERM (graceful: workers finish and run worker_exit, which flushes usage counts); the exit code."""
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return server.returncode


def wait_for_workers(master: int, count: int) -> list[int]:
    """The worker pids, once all `count` workers have started (their CPU time is measured)."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while True:
        pids = children(master)
        if len(pids) >= count or time.monotonic() > deadline:
            return pids
        time.sleep(0.1)


def children(pid: int) -> list[int]:
    found = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text() if (task / "children").exists() else ""
            found.extend(int(child) for child in text.split())
    except OSError:
        return []
    return sorted(found)


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User plus system CPU time so far of each of these processes still alive (all threads), from /proc/<pid>/stat."""
    ticks_per_second = os.sysconf("SC_CLK_TCK")
    found = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            found[pid] = (int(fields[11]) + int(fields[12])) / ticks_per_second  # utime, stime: fields 14, 15
        except (OSError, IndexError, ValueError):
            continue
    return found


def process_cpu_seconds(pids: list[int]) -> float | None:
    """User plus system CPU time so far of all these processes together; None when one of them is gone."""
    found = cpu_seconds(pids)
    return sum(found.values()) if len(found) == len(pids) else None


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
