"""Correctness across processes: a real gunicorn with 4 workers, production settings, Redis for the rate limits.

Which worker answered is read from the workers' own Prometheus files: in multiprocess mode each worker counts its
key verifications in PROMETHEUS_MULTIPROC_DIR/counter_<pid>.db, by outcome. So "every worker refused the revoked
key" is checked worker by worker, not hoped for from the number of requests.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.functional.processes import BIN, ROOT, clean_env, flask, free_port
from tests.functional.served import counts_by_worker, http, pid_of, wait_until_ready
from tests.redis_server import find_redis_server, redis_server_binary, running_redis
from tests.support import FAST_ARGON2, PASSWORD
from tests.support import database_url as run_database_url

WORKERS = 4
SECRET = {"SECRET_KEY": "k" * 48, "KEY_PEPPER": "p" * 48}
WHOAMI = "/api/v1/whoami"
START_SECONDS = 30


def database_url(tmp_path: Path) -> str:
    """The database of the server under test (and of the CLI beside it): the one place to point these tests at
    another database. SQLite in the instance folder, where clean_env() puts it; in the suite's PostgreSQL run, that
    run's database for the same folder."""
    return run_database_url(tmp_path / "instance")


# -- a gunicorn of our own -----------------------------------------------------------------------------------------

class Server:
    def __init__(self, tmp_path: Path, **settings: str) -> None:
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.metrics = tmp_path / "metrics"
        self.log = tmp_path / "gunicorn.log"
        # Production settings, with OWASP's minimum Argon2id cost rather than the default's, to make the user quickly.
        argon2 = {name: str(value) for name, value in FAST_ARGON2.items()}
        self.env = clean_env(tmp_path, KEYFOB_ENV="production", **SECRET, **argon2, DATABASE_URL=database_url(tmp_path),
                             KEYFOB_BIND=f"127.0.0.1:{port}", WEB_CONCURRENCY=str(WORKERS),
                             PROMETHEUS_MULTIPROC_DIR=str(self.metrics), KEYFOB_PASSWORD=PASSWORD, **settings)
        self.tmp_path = tmp_path
        self.process: subprocess.Popen | None = None

    def cli(self, *args: str) -> str:
        result = flask(self.tmp_path, *args, **self.env)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def start(self, *arguments: str) -> None:
        """`gunicorn -c gunicorn.conf.py wsgi:app`, as `make serve` runs it, or with these arguments instead."""
        with self.log.open("w") as log:
            self.process = subprocess.Popen([str(BIN / "gunicorn"), "-c", "gunicorn.conf.py",
                                             *(arguments or ["wsgi:app"])],
                                            cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=log)
        wait_until_ready(self.process, self.base, self.log)
        self.wait_for_every_worker()

    def wait_for_every_worker(self) -> None:
        """Until each of the workers has answered a request: gunicorn answers as soon as one of them is up."""
        deadline = time.monotonic() + START_SECONDS
        while len(self.workers_that_answered()) < WORKERS:
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, f"not every worker answered within {START_SECONDS} s"
            concurrently(lambda _: status_of(self.base + "/healthz"), range(4 * WORKERS))
            time.sleep(0.05)

    def workers_that_answered(self) -> set[int]:
        return {pid_of(path) for path in self.metrics.glob("histogram_*.db")}

    def stop(self) -> int:
        """A graceful stop (SIGTERM): each worker finishes its request and writes its buffered usage."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def verifications_by_worker(self) -> dict[int, Counter]:
        """Each worker's key verifications so far, by outcome, read from its own counter file."""
        return counts_by_worker(self.metrics, "keyfob_key_verifications_total", "outcome")


@contextmanager
def serving(tmp_path: Path, **settings: str):
    """A migrated database with one user, and gunicorn serving it; stopped (gracefully) at the end."""
    server = Server(tmp_path, **settings)
    server.cli("db", "upgrade")
    server.cli("users", "create", "ada@example.com")
    server.manager = server.cli("keys", "create", "ada@example.com", "--name", "manager", "--scope", "keys:write",
                                "--scope", "keys:read", "--scope", "read:data").strip().splitlines()[-1]
    try:
        server.start()
        yield server
    finally:
        if server.stop() != 0:
            pytest.fail("gunicorn did not stop cleanly:\n" + server.log.read_text())


def concurrently(call, items, threads: int = 16) -> list:
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(call, items))


def request(url: str, token: str | None = None, method: str = "GET", body: dict | None = None):
    """(status, headers, JSON body) of one request on a connection of its own."""
    answer = http(method, url, {"Authorization": f"Bearer {token}"} if token else {}, body)
    return answer.status, answer.headers, answer.json()


def status_of(url: str, token: str | None = None) -> int:
    return request(url, token)[0]


def new_key(server: Server, name: str, **fields) -> tuple[int, str]:
    """A read:data key made through the API (by the manager key), as (id, plaintext)."""
    status, _, body = request(server.base + "/api/v1/api-keys", server.manager, "POST",
                              {"name": name, "scopes": ["read:data"], "expires_in_days": 30, **fields})
    assert status == 201, body
    return body["key"]["id"], body["secret"]


# -- the tests -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the rate-limit and revocation tests, with Redis when there is a redis-server (only the
    rate-limit test needs it, and skips without it)."""
    settings = {}  # KEY_SUSPEND_AFTER keeps its default, 100 refusals a minute
    with ExitStack() as stack:
        if find_redis_server():
            redis = stack.enter_context(running_redis(tmp_path_factory.mktemp("redis")))
            settings["RATELIMIT_STORAGE_URI"] = redis.url
        yield stack.enter_context(serving(tmp_path_factory.mktemp("gunicorn"), **settings))


def test_a_rate_limit_holds_across_all_workers_with_redis(server):
    redis_server_binary()
    assert server.env["RATELIMIT_STORAGE_URI"].startswith("redis://")
    assert "RATELIMIT_STORAGE_URI is memory://" not in server.log.read_text()
    key_id, token = new_key(server, "limited", rate_limit=30)
    before = server.verifications_by_worker()
    answers = concurrently(lambda _: request(server.base + WHOAMI, token), range(120))
    statuses = Counter(status for status, _, _ in answers)
    assert statuses == {200: 30, 429: 90}
    for status, headers, body in answers:
        if status == 429:
            assert body["error"] == "rate_limited"
            assert 1 <= int(headers["Retry-After"]) <= 60
    # The budget was spent by every worker, not 30 each: each one answered, and some of the 30 are its.
    after = server.verifications_by_worker()
    served = {pid: after[pid] - before.get(pid, Counter()) for pid in after}
    assert sum(counts["valid"] for counts in served.values()) == 30
    assert sum(counts["rate_limited"] for counts in served.values()) == 90
    assert len([pid for pid, counts in served.items() if counts["valid"]]) >= 2
    assert len([pid for pid, counts in served.items() if counts.total()]) == WORKERS


def test_a_key_over_its_limit_on_every_worker_is_suspended_once(server):
    redis_server_binary()
    key_id, token = new_key(server, "hammered", rate_limit=1)
    statuses = Counter(concurrently(lambda _: status_of(server.base + WHOAMI, token), range(250)))
    # One use, then refusals; the 101st refusal, in whichever worker, suspends the key (requests already past that
    # check still get their 429), and from then on it is refused as invalid.
    assert statuses[200] == 1 and statuses[429] >= 101 and statuses[401] >= 1
    assert sum(statuses.values()) == 250
    assert query(server, "SELECT count(*) FROM alerts WHERE key_id = :id AND kind = 'rate_limit_suspension'",
                 id=key_id) == 1
    assert query(server, "SELECT count(*) FROM audit_events WHERE key_id = :id AND event = 'key.suspended'",
                 id=key_id) == 1


def query(server: Server, sql: str, **params):
    """One value from the server's database, read beside the running server."""
    engine = sa.create_engine(database_url(server.tmp_path))
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text(sql), params).scalar_one()
    finally:
        engine.dispose()


def revoke_through_the_api(server: Server, key_id: int) -> None:
    status, _, body = request(f"{server.base}/api/v1/api-keys/{key_id}", server.manager, "DELETE",
                              {"reason": "leaked"})
    assert status == 200, body
    assert body["key"]["status"] == "revoked" if "key" in body else body["status"] == "revoked"


def revoke_from_the_cli(server: Server, key_id: int) -> None:
    server.cli("keys", "revoke", str(key_id), "--reason", "leaked")


@pytest.mark.parametrize("revoke", [revoke_through_the_api, revoke_from_the_cli])
def test_a_revoked_key_is_refused_by_the_next_request_in_every_worker(server, revoke):
    key_id, token = new_key(server, "soon revoked")

    def hit_until_every_worker_has(outcome: str, expected_status: int) -> dict[int, Counter]:
        start = server.verifications_by_worker()
        for _ in range(20):
            statuses = concurrently(lambda _: status_of(server.base + WHOAMI, token), range(8 * WORKERS))
            assert set(statuses) == {expected_status}
            now = server.verifications_by_worker()
            if len([pid for pid in now if now[pid][outcome] > start.get(pid, Counter())[outcome]]) == WORKERS:
                return now
        pytest.fail(f"not every worker answered with {outcome} in 20 rounds")

    # Every worker has seen the key work (so any cache a worker kept would hold it)...
    hit_until_every_worker_has("valid", 200)
    revoke(server, key_id)
    revoked = server.verifications_by_worker()
    # ...and from the first request after the revoke, every worker refuses it, reading the database each time.
    refused = hit_until_every_worker_has("revoked", 401)
    assert {pid: counts["valid"] for pid, counts in refused.items()} == \
        {pid: counts["valid"] for pid, counts in revoked.items()}


@pytest.mark.parametrize("flush_seconds", [
    "0.1",   # the workers' flushes overlap each other and the load; the last ones come at the stop
    "3600",  # nothing is written before the stop: all four workers write everything at once as they exit
])
def test_concurrent_clients_add_up_exactly_after_a_graceful_stop(tmp_path, flush_seconds):
    clients, requests_each = 8, 60
    with serving(tmp_path, USAGE_FLUSH_SECONDS=flush_seconds) as server:
        key_id, token = new_key(server, "busy")

        def client(_):
            return [status_of(server.base + WHOAMI, token) for _ in range(requests_each)]

        statuses = [status for batch in concurrently(client, range(clients), clients) for status in batch]
        assert statuses == [200] * (clients * requests_each)
        served = server.verifications_by_worker()
        assert len([pid for pid, counts in served.items() if counts["valid"]]) == WORKERS
    # Stopped (SIGTERM, exit status 0): whatever each worker had buffered is written.
    usage_count = query(server, "SELECT usage_count FROM api_keys WHERE id = :id", id=key_id)
    daily = query(server, "SELECT sum(requests) FROM daily_key_usage WHERE key_id = :id", id=key_id)
    assert (usage_count, daily) == (clients * requests_each, clients * requests_each)
    # No Redis here: gunicorn says at start that each worker counts rate limits on its own.
    assert "RATELIMIT_STORAGE_URI is memory://: each of the 4 workers counts" in server.log.read_text()




def test_preloaded_workers_never_use_a_database_connection_the_master_opened(tmp_path):
    # With --preload the master builds the app, and here it also opens a connection and leaves it in the pool:
    # gunicorn.conf.py's post_fork must keep every worker from taking it over.
    server = Server(tmp_path)
    server.cli("db", "upgrade")
    try:
        server.start("--preload", "tests.functional.preload_wsgi:app")
        answers = concurrently(lambda _: request(server.base + "/test/connection")[2], range(8 * WORKERS))
    finally:
        assert server.stop() == 0, server.log.read_text()
    workers = {answer["worker"] for answer in answers}
    assert len(workers) == WORKERS and answers[0]["master"] not in workers
    assert [answer for answer in answers if answer["opened_by"] != answer["worker"]] == []
