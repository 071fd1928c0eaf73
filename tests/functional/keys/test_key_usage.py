"""Usage counting through the buffer: exact under concurrency, failures audited safely, nothing lost on a failed
write, and several processes adding up on one database."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from app.api.decorator import require_api_key
from app.database import utcnow
from app.keys import tokens, verification
from app.keys.core import KeyCore
from app.keys.usage import UsageBuffer
from tests.functional.keyhelpers import (
    WHOAMI,
    add_user,
    all_stored_values,
    audit_rows,
    bearer,
    daily_totals,
    flush,
    load_key,
    new_key,
)

WRITE = "/api/v1/test/write"


@pytest.fixture
def app(app):
    app.add_url_rule(WRITE, endpoint="test_write", view_func=require_api_key("write:data")(lambda: {"ok": True}))
    return app


def test_concurrent_requests_are_counted_exactly(app, user):
    threads_count, requests_each = 8, 25
    key_id, token = new_key(app, user)
    barrier = threading.Barrier(threads_count)
    statuses: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(number: int) -> None:
        try:
            client = app.test_client()
            barrier.wait(timeout=10)
            got = [client.get(WHOAMI, headers=bearer(token), environ_base={"REMOTE_ADDR": f"10.0.0.{number}"})
                   .status_code for _ in range(requests_each)]
            with lock:
                statuses.extend(got)
        except BaseException as error:  # reported below: a thread's exception must fail the test
            with lock:
                errors.append(error)

    started = utcnow()
    workers = [threading.Thread(target=worker, args=(number,)) for number in range(threads_count)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=60)
    finished = utcnow()
    assert errors == []
    assert statuses == [200] * (threads_count * requests_each)

    assert load_key(app, key_id).usage_count == 0  # buffered, not written per request
    assert flush(app) == threads_count * requests_each
    key = load_key(app, key_id)
    assert key.usage_count == threads_count * requests_each
    assert daily_totals(app, key_id) == (threads_count * requests_each, 0)
    assert started <= key.last_used_at <= finished
    assert key.last_used_ip in {f"10.0.0.{number}" for number in range(threads_count)}
    assert flush(app) == 0
    assert load_key(app, key_id).usage_count == threads_count * requests_each


def test_remaining_uses_are_exact_under_concurrency(app, user):
    key_id, token = new_key(app, user, remaining_uses=50)
    statuses: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            client = app.test_client()
            got = [client.get(WHOAMI, headers=bearer(token)).status_code for _ in range(10)]
            with lock:
                statuses.extend(got)
        except BaseException as error:
            with lock:
                errors.append(error)

    workers = [threading.Thread(target=worker) for _ in range(8)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(statuses) == [200] * 50 + [403] * 30
    assert load_key(app, key_id).remaining_uses == 0
    flush(app)
    assert load_key(app, key_id).usage_count == 50
    assert daily_totals(app, key_id) == (50, 30)


def test_failures_of_a_known_key_are_counted_and_audited(app, user):
    key_id, token = new_key(app, user, scopes=["read:data"])
    client = app.test_client()
    for _ in range(3):
        response = client.get(WRITE, headers=bearer(token) | {"User-Agent": "fuzzer/1.0"},
                              environ_base={"REMOTE_ADDR": "192.0.2.44"})
        assert response.status_code == 403
    assert client.get(WHOAMI, headers=bearer(token)).status_code == 200
    with app.app_context():
        assert verification.verify(token, now=utcnow() + timedelta(days=31)).outcome is verification.Outcome.EXPIRED
    assert audit_rows(app, "key.verify_failed") == []  # buffered

    flush(app)
    assert load_key(app, key_id).usage_count == 1
    assert daily_totals(app, key_id) == (1, 4)
    failed = audit_rows(app, "key.verify_failed")
    assert [row["detail"] for row in failed] == ["insufficient_scope: needs write:data"] * 3 + ["expired"]
    first = failed[0]
    assert (first["key_id"], first["key_display"], first["actor"], first["actor_user_id"]) == (
        key_id, token[:9], f"key:{token[:9]}", user)
    assert (first["ip"], first["user_agent"]) == ("192.0.2.44", "fuzzer/1.0")
    assert not [value for value in all_stored_values(app) if token in value or token[9:] in value]


def test_malformed_and_unknown_keys_are_audited_without_the_presented_string(app, user):
    _, real = new_key(app, user)
    presented = [real[:-1] + ("A" if real[-1] != "A" else "B"), "hello world", "sk_live_" + "x" * 24, "kf_short"]
    unknown = tokens.generate("kf")
    client = app.test_client()
    for value in [*presented, unknown]:
        assert client.get(WHOAMI, headers=bearer(value)).status_code == 401
    flush(app)

    failed = audit_rows(app, "key.verify_failed")
    assert [row["detail"] for row in failed] == ["malformed"] * len(presented) + ["not_found"]
    assert [row["key_display"] for row in failed] == [None] * len(presented) + [unknown[:9]]
    assert {row["key_id"] for row in failed} == {None}
    assert {row["actor"] for row in failed} == {"anonymous"}
    stored = all_stored_values(app)
    for value in [*presented, unknown, unknown[9:]]:
        assert not [column for column in stored if value in column], value
    assert daily_totals(app, 0) == (0, 0)


def test_a_failed_flush_keeps_every_count_for_the_next(app, user, monkeypatch):
    key_id, token = new_key(app, user, scopes=["read:data"])
    client = app.test_client()
    for _ in range(5):
        assert client.get(WHOAMI, headers=bearer(token)).status_code == 200
    for _ in range(2):
        assert client.get(WRITE, headers=bearer(token)).status_code == 403

    real_write, calls = UsageBuffer._write, []

    def write_failing_once(self, pending):
        calls.append(pending)
        if len(calls) == 1:
            raise RuntimeError("database went away")
        return real_write(self, pending)

    monkeypatch.setattr(UsageBuffer, "_write", write_failing_once)
    with pytest.raises(RuntimeError):
        flush(app)
    assert load_key(app, key_id).usage_count == 0
    assert KeyCore.of(app).usage.pending_uses() == 5

    for _ in range(3):
        assert client.get(WHOAMI, headers=bearer(token)).status_code == 200
    assert flush(app) == 8
    assert len(calls) == 2
    key = load_key(app, key_id)
    assert key.usage_count == 8 and key.last_used_at is not None
    assert daily_totals(app, key_id) == (8, 2)
    assert len(audit_rows(app, "key.verify_failed")) == 2


def test_two_processes_on_one_database_add_up(apps):
    first, second = apps("shared"), apps("shared")  # two buffers, as in two gunicorn workers
    for app in (first, second):
        app.add_url_rule(WRITE, endpoint="test_write", view_func=require_api_key("write:data")(lambda: {}))
    key_id, token = new_key(first, add_user(first))

    one, two = first.test_client(), second.test_client()
    for _ in range(5):
        assert two.get(WHOAMI, headers=bearer(token), environ_base={"REMOTE_ADDR": "10.0.0.2"}).status_code == 200
    for _ in range(7):
        assert one.get(WHOAMI, headers=bearer(token), environ_base={"REMOTE_ADDR": "10.0.0.1"}).status_code == 200
    assert one.get(WRITE, headers=bearer(token)).status_code == 403
    assert two.get(WRITE, headers=bearer(token)).status_code == 403
    with second.app_context():
        assert verification.verify(token, client_ip="10.0.0.3", now=utcnow() - timedelta(hours=1)).ok

    # The second process's uses are all older than the first's; flushed last, they must not move last_used_at back.
    assert flush(first) == 7
    latest = load_key(first, key_id).last_used_at
    assert flush(second) == 6
    key = load_key(second, key_id)
    assert key.usage_count == 13
    assert daily_totals(first, key_id) == (13, 2)
    assert key.last_used_at == latest and key.last_used_ip == "10.0.0.1"
    assert len(audit_rows(first, "key.verify_failed")) == 2
