"""A gunicorn worker stopped (SIGTERM) while under load writes its buffered usage on the way out."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
from concurrent.futures import ThreadPoolExecutor

from tests.functional.processes import flask, worker_pids
from tests.functional.served import gunicorn_with_a_key, status_of


def answer(url: str, headers: dict) -> int:
    """The answer's status, or -1 when the connection itself failed (a worker stopping as it was picked)."""
    try:
        return status_of(url, headers)
    except (urllib.error.URLError, ConnectionError):
        return -1


def test_a_worker_stopped_under_load_loses_no_usage(tmp_path):
    with gunicorn_with_a_key(tmp_path, USAGE_FLUSH_SECONDS="3600") as gunicorn:
        first_workers = worker_pids(gunicorn.server.pid)
        assert len(first_workers) == 2
        valid = {"Authorization": f"Bearer {gunicorn.token}"}
        with ThreadPoolExecutor(max_workers=8) as pool:
            running = [pool.submit(answer, f"{gunicorn.base}/api/v1/whoami", valid) for _ in range(600)]
            time.sleep(0.3)
            os.kill(first_workers[0], signal.SIGTERM)  # graceful: it finishes its request and flushes on the way out
            statuses = [future.result() for future in running]
        deadline = time.monotonic() + 10
        while first_workers[0] in worker_pids(gunicorn.server.pid) or len(worker_pids(gunicorn.server.pid)) < 2:
            assert time.monotonic() < deadline, "gunicorn did not replace the stopped worker"
            time.sleep(0.1)
    env = gunicorn.env
    served = statuses.count(200)
    assert served + statuses.count(-1) == 600 and served >= 500
    [key] = json.loads(flask(tmp_path, "keys", "list", "--json", **env).stdout)
    assert key["usage_count"] == served
