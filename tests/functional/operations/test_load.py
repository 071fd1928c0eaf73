"""Load: concurrent clients for a few seconds against gunicorn on loopback. No 5xx, no lost usage, flat memory."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.functional.processes import flask, worker_pids
from tests.functional.served import gunicorn_with_a_key, http

CLIENTS = 8
SECONDS = 6


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def client(base: str, key: dict, wrong: dict, number: int) -> list[tuple[str, int]]:
    """One client's mix for SECONDS: valid and bad keys, key lists, and keys made and revoked beside the reads."""
    seen, step, deadline = [], 0, time.monotonic() + SECONDS
    while time.monotonic() < deadline:
        step += 1
        kind = ("whoami", "whoami", "whoami", "bad", "list", "churn")[(number + step) % 6]
        if kind == "whoami":
            seen.append((kind, http("GET", f"{base}/api/v1/whoami", key).status))
        elif kind == "bad":
            seen.append((kind, http("GET", f"{base}/api/v1/whoami", wrong).status))
        elif kind == "list":
            seen.append((kind, http("GET", f"{base}/api/v1/api-keys?limit=5", key).status))
        else:
            made = http("POST", f"{base}/api/v1/api-keys", key, {"name": f"c{number}-{step}"})
            seen.append(("create", made.status))
            if made.status == 201:
                seen.append(("revoke", http("DELETE", f"{base}/api/v1/api-keys/{made.json()['key']['id']}",
                                            key).status))
    return seen


def test_mixed_load_gives_no_server_error_loses_no_usage_and_keeps_memory_flat(tmp_path):
    with gunicorn_with_a_key(tmp_path, "--scope", "keys:read", "--scope", "keys:write",
                             "--expires-in-days", "30") as gunicorn:
        base, token = gunicorn.base, gunicorn.token
        key = {"Authorization": f"Bearer {token}"}
        wrong = {"Authorization": f"Bearer {token[:-1]}{'A' if token[-1] != 'A' else 'B'}"}
        workers = worker_pids(gunicorn.server.pid)
        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:  # a warm-up round, then the measured one
            list(pool.map(lambda n: http("GET", f"{base}/api/v1/whoami", key), range(200)))
        warm = {pid: rss_kib(pid) for pid in workers}
        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            answers = [answer for result in pool.map(lambda n: client(base, key, wrong, n), range(CLIENTS))
                       for answer in result]
        after = {pid: rss_kib(pid) for pid in workers}
    env = gunicorn.env

    statuses = [status for _, status in answers]
    assert len(answers) > 500, len(answers)
    assert [s for s in statuses if s >= 500] == []
    assert {status for kind, status in answers if kind == "bad"} == {401}
    assert {status for kind, status in answers if kind in ("whoami", "list")} == {200}
    assert {status for kind, status in answers if kind == "create"} == {201}
    assert {status for kind, status in answers if kind == "revoke"} == {200}
    valid = sum(1 for kind, _ in answers if kind != "bad") + 200  # each a valid use; the warm-up's 200 whoami too
    [me] = [k for k in json.loads(flask(tmp_path, "keys", "list", "--json", **env).stdout) if k["name"] == "load"]
    assert me["usage_count"] == valid
    for pid in workers:  # flat: no worker grew by more than 10 MiB over thousands of requests
        assert after[pid] - warm[pid] < 10 * 1024, (pid, warm[pid], after[pid])
