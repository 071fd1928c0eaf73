"""Rate limits and the login throttle on a real Redis (RATELIMIT_STORAGE_URI=redis://...), shared by processes.

Two apps on one database file and one Redis stand for two processes (or two hosts): whatever one counts, the other
sees. Without Redis each process would count on its own and a key would get its limit once per process.
"""

from __future__ import annotations

import logging
import re
import time

import pytest
from limits.storage import storage_from_string

from app import counters
from app.keys import service
from app.keys.ratelimit import KeyRateLimiter
from tests.functional.keyhelpers import (
    WHOAMI,
    act_on_key,
    add_user,
    audit_rows,
    bearer,
    load_key,
    new_key,
    rows,
)
from tests.redis_server import redis_server_binary, running_redis
from tests.support import AuthActions

redis_server_binary(module_level=True)  # every test here needs one: without it, one skip (a failure under CI)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis_server):
    redis_server.flush()
    return redis_server.url


@pytest.fixture
def limiters(redis_url):
    """Two limiters, each with its own connection to the one Redis, as two processes would have."""
    storages = [storage_from_string(redis_url) for _ in range(2)]
    yield [KeyRateLimiter(storage, "3 per 1 minute") for storage in storages]
    for storage in storages:
        storage.storage.close()


@pytest.fixture
def two_processes(apps, redis_url):
    """Makes two apps on one database file and one Redis, with the settings given."""
    made = []

    def make(**settings):
        settings = {"RATELIMIT_STORAGE_URI": redis_url, **settings}
        made.extend([apps("shared", **settings), apps("shared", **settings)])
        return made[-2:]

    yield make
    for app in made:
        app.extensions[counters.EXTENSION].storage.close()


# -- the limiter on Redis ------------------------------------------------------------------------------------------

def test_the_limit_holds_then_forget_resets_it(limiters, redis_server):
    limiter = limiters[0]
    states = [limiter.hit(7, 5) for _ in range(6)]
    assert [state.allowed for state in states] == [True] * 5 + [False]
    assert [state.remaining for state in states] == [4, 3, 2, 1, 0, 0]
    assert 1 <= states[-1].reset <= 60
    assert limiter.hit(8, 5).allowed  # another key has its own budget
    # Every counter expires on its own: Redis never fills up with keys that stopped calling.
    stored = redis_server.client.keys("*")
    assert stored and all(0 < redis_server.client.ttl(name) <= 60 for name in stored)

    limiter.forget(7, 5)
    assert limiter.hit(7, 5).allowed


def test_two_limiters_on_one_redis_spend_one_budget(limiters):
    first, second = limiters
    allowed = [(first if n % 2 else second).hit(7, 10).allowed for n in range(15)]
    assert allowed == [True] * 10 + [False] * 5
    second.forget(7, 10)  # forgotten by one process, forgotten for all
    assert first.hit(7, 10).allowed


def test_suspension_counts_rejections_from_every_process_and_suspends_once(limiters):
    first, second = limiters  # KEY_SUSPEND_AFTER of 3 per minute
    assert [first.rejection_should_suspend(7), second.rejection_should_suspend(7),
            first.rejection_should_suspend(7)] == [False, False, False]
    assert second.rejection_should_suspend(7)
    # Requests already in flight are past the threshold too; only the first suspends the key.
    assert [first.rejection_should_suspend(7), second.rejection_should_suspend(7)] == [False, False]
    first.forget(7, None)  # the suspension lifted early: the key starts afresh, and may be suspended again
    assert [second.rejection_should_suspend(7) for _ in range(4)] == [False, False, False, True]


# -- the app on Redis ----------------------------------------------------------------------------------------------

def test_two_apps_sharing_one_redis_see_one_budget(two_processes):
    first, second = two_processes()
    _, token = new_limited_key(first, 5)
    clients = [first.test_client(), second.test_client()]
    responses = [clients[n % 2].get(WHOAMI, headers=bearer(token)) for n in range(8)]
    assert [response.status_code for response in responses] == [200] * 5 + [429] * 3
    remaining = [re.search(r";r=(\d+);", response.headers["RateLimit"]).group(1) for response in responses[:5]]
    assert remaining == ["4", "3", "2", "1", "0"]
    for response in responses[5:]:
        assert response.get_json()["error"] == "rate_limited"
        assert 1 <= int(response.headers["Retry-After"]) <= 60


def test_a_key_that_keeps_exceeding_its_limit_in_any_process_is_suspended_once(two_processes):
    first, second = two_processes(KEY_SUSPEND_AFTER="3 per 1 minute")
    key_id, token = new_limited_key(first, 1)
    clients = [first.test_client(), second.test_client()]
    statuses = [clients[n % 2].get(WHOAMI, headers=bearer(token)).status_code for n in range(5)]
    # One use, then four refusals: the fourth, counted by whichever process, suspends the key.
    assert statuses == [200, 429, 429, 429, 429]
    assert load_key(first, key_id).suspended_until is not None
    assert [client.get(WHOAMI, headers=bearer(token)).status_code for client in clients] == [401, 401]
    assert len(audit_rows(first, "key.suspended")) == 1
    assert [alert["kind"] for alert in rows(first, "SELECT kind FROM alerts")] == ["rate_limit_suspension"]

    # An admin lifts it in one process: the counters go for every process, so the key starts afresh.
    act_on_key(second, key_id, service.lift_suspension)
    assert clients[0].get(WHOAMI, headers=bearer(token)).status_code == 200
    assert clients[1].get(WHOAMI, headers=bearer(token)).status_code == 429


def test_failed_logins_count_across_processes(two_processes):
    first, second = two_processes(LOGIN_THROTTLE_PER_ACCOUNT="3 per 5 minutes")
    add_user(first)
    # A fresh client (no session) for each attempt, in the first or the second process.
    login = [lambda app=app, **form: AuthActions(app.test_client()).login(**form) for app in (first, second)]
    assert [login[n % 2](password="wrong password").status_code for n in range(2)] == [422, 422]
    # A correct password in one process clears the account's failures for all of them.
    assert login[1]().status_code == 302
    assert [login[n % 2](password="wrong password").status_code for n in range(3)] == [422, 422, 422]
    for attempt in login:  # three failures, wherever they were made: both processes now make it wait
        response = attempt()
        assert response.status_code == 429
        assert 1 <= int(response.headers["Retry-After"]) <= 300


def test_a_lockout_in_redis_ends_when_its_window_has_passed(two_processes):
    first, second = two_processes(LOGIN_THROTTLE_PER_ACCOUNT="2 per 2 seconds")
    add_user(first)
    for app in (first, second):
        assert AuthActions(app.test_client()).login(password="wrong password").status_code == 422
    response = AuthActions(second.test_client()).login()
    assert response.status_code == 429 and response.headers["Retry-After"] in {"1", "2"}
    time.sleep(2.1)  # the failures leave the moving window, in Redis as in memory
    assert AuthActions(first.test_client()).login().status_code == 302


def new_limited_key(app, per_minute: int) -> tuple[int, str]:
    return new_key(app, add_user(app), rate_limit=per_minute)


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def logged():
    """What the app logs (the `app` logger and its children); the migrations' logging set-up replaces the root's
    handlers, caplog's included."""
    recorder, logger = Recorder(), logging.getLogger("app")
    logger.addHandler(recorder)
    yield recorder
    logger.removeHandler(recorder)


def test_while_redis_is_down_what_needs_it_answers_503_and_recovers_after(tmp_path, apps, logged):
    with running_redis(tmp_path / "redis-folder") as redis:
        app = apps(RATELIMIT_STORAGE_URI=redis.url, LOGIN_THROTTLE_PER_ACCOUNT="3 per 5 minutes")
        try:
            user = add_user(app)
            _, limited = new_key(app, user, rate_limit=5)
            _, unlimited = new_key(app, user)
            client = app.test_client()
            assert client.get(WHOAMI, headers=bearer(limited)).status_code == 200

            redis.stop()
            response = client.get(WHOAMI, headers=bearer(limited))
            assert response.status_code == 503
            assert response.get_json()["error"] == "service_unavailable"
            assert "rate-limit store" in response.get_json()["message"]
            assert int(response.headers["Retry-After"]) > 0
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert ready.get_json()["checks"] == {"database": "ok", "rate_limits": "unreachable"}
            # A key without a rate limit needs no Redis, and keeps working.
            assert client.get(WHOAMI, headers=bearer(unlimited)).status_code == 200
            response = AuthActions(app.test_client()).login()
            assert response.status_code == 503 and int(response.headers["Retry-After"]) > 0
            assert "rate-limit store" in response.get_data(as_text=True)
            # One warning per refusal, no traceback ("Exception on ..." is how Flask logs a 500).
            assert {(record.levelname, record.getMessage()[:40]) for record in logged.records} == \
                {("WARNING", "rate-limit storage (Redis) unavailable: ")}

            redis.restart()  # empty, as it comes back without persistence: the windows start afresh
            assert client.get(WHOAMI, headers=bearer(limited)).status_code == 200
            assert AuthActions(app.test_client()).login().status_code == 302
            assert client.get("/readyz").get_json()["checks"] == {"database": "ok", "rate_limits": "ok"}
        finally:
            app.extensions[counters.EXTENSION].storage.close()
