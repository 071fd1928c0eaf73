"""PostgreSQL stopped under load, then started again, under gunicorn: while it is down the API answers 503 with
Retry-After in the JSON error shape and pages show the friendly error page (never a 500); nothing is half-written
and no verified use is lost; and service comes back by itself within 5 s of the database returning, no restart.

The test runs its own PostgreSQL cluster (the one the PostgreSQL run of the suite shares cannot be stopped), so it
needs PostgreSQL on the machine: without it, it is skipped, except under CI=true where that is a failure.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

import app.database
from app.keys import tokens
from tests.functional.keyhelpers import add_user, bearer, new_key
from tests.functional.processes import flask
from tests.functional.served import Answer, gunicorn_with_a_key, http, signed_in_cookie
from tests.pg_cluster import DEFAULT_BIN, Cluster, in_ci

BACK_WITHIN_SECONDS = 5
# What psycopg raises on a connection PostgreSQL ended while stopping, ROLLBACK included.
TERMINATED = OperationalError("ROLLBACK", {}, Exception("terminating connection due to administrator command"))


# -- a connection lost mid-request: the ROLLBACK that ends the request fails too ------------------------------------
# (The test under load below meets these as it happens; these two make each path happen every time.)

def test_an_answer_stands_when_closing_its_session_finds_the_database_gone(app, monkeypatch):
    owner = add_user(app)
    _, token = new_key(app, owner, scopes=("keys:read",))
    dropped = []
    monkeypatch.setattr(Session, "close", lambda self: (_ for _ in ()).throw(TERMINATED))
    real_invalidate = Session.invalidate
    monkeypatch.setattr(Session, "invalidate", lambda self: dropped.append(self) or real_invalidate(self))
    response = app.test_client().get("/api/v1/api-keys", headers=bearer(token))
    assert response.status_code == 200 and response.get_json()["data"]
    assert dropped  # the session's connections were dropped, not handed back to the pool


def test_an_outage_answers_503_even_when_its_rollback_fails(app, monkeypatch):
    owner = add_user(app)
    _, token = new_key(app, owner, scopes=("keys:read",))

    def lost(*_args, **_kwargs):
        raise OperationalError("SELECT", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr("app.keys.queries.key_slice", lost)
    monkeypatch.setattr(Session, "rollback", lambda self: (_ for _ in ()).throw(TERMINATED))
    response = app.test_client().get("/api/v1/api-keys", headers=bearer(token))
    assert response.status_code == 503
    assert response.get_json()["error"] == "service_unavailable" and response.headers["Retry-After"] == "5"


# -- a database server that takes the connection and never answers ---------------------------------------------------

@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port whose connections the kernel completes but nobody ever reads or answers: a hung database host."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def test_a_database_host_that_never_answers_gives_503_within_the_connect_timeout(apps, monkeypatch, silent_server):
    # Without a connect timeout each request waited for the system's (minutes) and held its worker all along.
    monkeypatch.setattr(app.database, "POSTGRES_CONNECT_TIMEOUT_SECONDS", 1)
    url = f"postgresql+psycopg://keyfob@127.0.0.1:{silent_server}/keyfob"
    assert app.database.engine_options(url)["connect_args"]["connect_timeout"] == 1
    assert "connect_timeout" not in app.database.engine_options(f"{url}?connect_timeout=9")["connect_args"]
    client = apps(DATABASE_URL=url, migrate=False).test_client()
    well_formed = {"Authorization": f"Bearer {tokens.generate('kf')}"}  # passes the checksum: it needs the lookup
    for path, headers in (("/readyz", {}), ("/api/v1/whoami", well_formed)):
        started = time.monotonic()
        response = client.get(path, headers=headers)
        took = time.monotonic() - started
        # Not a timing target: without the timeout each of these hung for minutes (the system's TCP timeout).
        assert took < 15, f"{path} took {took:.1f} s"
        assert response.status_code == 503 and int(response.headers["Retry-After"]) > 0


# -- PostgreSQL stopped under load ------------------------------------------------------------------------------------


@pytest.fixture
def cluster() -> Iterator[tuple[Cluster, str]]:
    bin_dir = Path(DEFAULT_BIN)
    if not (bin_dir / "pg_ctl").is_file():
        if in_ci():
            pytest.fail(f"CI=true needs PostgreSQL in {bin_dir} for the database-outage test")
        pytest.skip(f"no PostgreSQL in {bin_dir}")
    made = Cluster(bin_dir)
    try:
        yield made, made.start()
    finally:
        made.remove()


# What each of the load's requests is answered while all is well.
ANSWERED_WELL = {"whoami": 200, "create": 201, "list": 200, "page": 200}


@dataclass(frozen=True)
class Seen(Answer):
    what: str = ""  # which of the load's requests

    @property
    def well(self) -> bool:
        return self.status == ANSWERED_WELL[self.what]


def call(base: str, what: str, method: str, path: str, headers: dict, body: dict | None = None) -> Seen:
    return Seen(**vars(http(method, base + path, headers, body, timeout=15)), what=what)


@dataclass
class Load:
    """Clients that keep asking until told to stop: whoami with one key, creates and lists with another, and the
    dashboard page with a signed-in session."""

    base: str
    reader: dict
    writer: dict
    cookie: str
    answers: list[Seen] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def _client(self, number: int) -> None:
        step = 0
        while not self.stop.is_set():
            step += 1
            kind = ("whoami", "whoami", "create", "whoami", "list", "page")[(number + step) % 6]
            if kind == "whoami":
                answer = call(self.base, kind, "GET", "/api/v1/whoami", self.reader)
            elif kind == "create":
                answer = call(self.base, kind, "POST", "/api/v1/api-keys", self.writer, {"name": f"c{number}-{step}"})
            elif kind == "list":
                answer = call(self.base, kind, "GET", "/api/v1/api-keys?limit=5", self.writer)
            else:
                answer = call(self.base, kind, "GET", "/keys", {"Cookie": self.cookie})
            self.answers.append(answer)  # list.append is atomic under the GIL
            time.sleep(0.01)

    @contextmanager
    def running(self, clients: int) -> Iterator[Load]:
        threads = [threading.Thread(target=self._client, args=(number,), daemon=True) for number in range(clients)]
        for thread in threads:
            thread.start()
        try:
            yield self
        finally:
            self.stop.set()
            for thread in threads:
                thread.join(timeout=30)

    def between(self, start: float, end: float) -> list[Seen]:
        return [answer for answer in list(self.answers) if start <= answer.at < end]


def make_key(tmp_path, env: dict, *options: str) -> str:
    created = flask(tmp_path, "keys", "create", "ada@example.com", *options, **env)
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("kf_"), created.stderr
    return token


def test_postgresql_stopped_under_load(tmp_path, cluster):
    server, url = cluster
    with gunicorn_with_a_key(tmp_path, "--scope", "keys:read", "--scope", "keys:write", "--expires-in-days", "30",
                             DATABASE_URL=url, USAGE_FLUSH_SECONDS="0.5") as gunicorn:
        reader_token = make_key(tmp_path, gunicorn.env, "--name", "reader", "--expires-in-days", "30")
        load = Load(gunicorn.base, {"Authorization": f"Bearer {reader_token}"},
                    {"Authorization": f"Bearer {gunicorn.token}"}, signed_in_cookie(gunicorn.base))
        with load.running(clients=6):
            time.sleep(1.5)
            halting = time.monotonic()
            server.halt("fast")  # every session ends at once, as in a restart of the database server
            down_from = time.monotonic()
            time.sleep(2.5)
            ready = call(gunicorn.base, "readyz", "GET", "/readyz", {})
            alive = call(gunicorn.base, "healthz", "GET", "/healthz", {})
            restarting = time.monotonic()
            server.serve()
            back_from = time.monotonic()  # pg_ctl start --wait returns once the server accepts connections
            # Keep the load on until every kind of request has been answered well for a while (or give up).
            while time.monotonic() - back_from < BACK_WITHIN_SECONDS + 5:
                recent = load.between(time.monotonic() - 1.0, time.monotonic())
                if ({answer.what for answer in recent} >= {"whoami", "create", "list", "page"}
                        and all(answer.well for answer in recent)):
                    break
                time.sleep(0.05)
        answers = list(load.answers)
    log = gunicorn.log.read_text()

    # Service came back by itself: after the last failed answer, everything was answered well, and that last
    # failure came soon after the database returned.
    failed_after = [answer.at for answer in answers if answer.at >= back_from and not answer.well]
    recovered_after = max(failed_after, default=back_from) - back_from
    assert recovered_after < BACK_WITHIN_SECONDS, f"back {recovered_after:.2f} s after the database"
    good = [answer for answer in answers if answer.at > back_from + recovered_after]
    assert {answer.what for answer in good} >= {"whoami", "create", "list", "page"}
    print(f"outage: {len(answers)} answers; back {recovered_after:.2f} s after PostgreSQL, then {len(good)} good")

    # While it was down: 503 with Retry-After, in the JSON shape for the API and the error page for people.
    down = [answer for answer in answers if down_from + 0.2 <= answer.at < restarting]
    assert {answer.what for answer in down} >= {"whoami", "create", "list", "page"}
    print(f"outage: {len(down)} answers while PostgreSQL was down")
    for answer in down:
        assert answer.status == 503, (answer.what, answer.status, answer.body[:300])
        assert int(answer.headers["Retry-After"]) > 0
        if answer.what == "page":
            assert answer.headers["Content-Type"].startswith("text/html")
            assert b"cannot reach its database" in answer.body and b"Error 503" in answer.body
        else:
            assert json.loads(answer.body)["error"] == "service_unavailable"
    assert ready.status == 503 and json.loads(ready.body)["checks"]["database"] == "unreachable"
    assert alive.status == 200  # a database outage is no reason to restart healthy workers
    # The log says what happened in a line per failed request and per worker's flusher, never a traceback.
    assert "Traceback" not in log and "ERROR" not in log
    # (A worker whose buffer was empty all through the outage had nothing to write, so nothing to say.)
    assert log.count("usage flush: the database is unavailable") <= 2
    assert log.count("usage flush: the database is unavailable") == log.count("usage flush: the database is back")

    # Never a server error, before, during or after; never a key in an answer but the one that creates it.
    assert not [answer for answer in answers if answer.status >= 500 and answer.status != 503]
    created = [json.loads(answer.body) for answer in answers if answer.what == "create" and answer.status == 201]
    assert created and all(body["secret"].startswith("kf_") for body in created)
    # Every key this test knows (a page's random CSRF tokens can hold "kf_" and 20 letters, so not a pattern).
    secrets = {body["secret"] for body in created} | {reader_token, gunicorn.token}
    assert not [answer for answer in answers if answer.status != 201
                and any(secret.encode() in answer.body for secret in secrets)]
    assert any(answer.at < halting for answer in answers if answer.what == "create" and answer.status == 201)

    # Nothing half-written: exactly the keys whose creation was answered 201 exist (besides the two set up), each with
    # its audit event; and every verified use of the reader key is counted, none lost while the database was away.
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            keys = dict(connection.execute(sa.text("SELECT id, name FROM api_keys")).all())
            audited = {row[0] for row in connection.execute(
                sa.text("SELECT key_id FROM audit_events WHERE event = 'key.created'"))}
            reader_uses = connection.execute(
                sa.text("SELECT usage_count FROM api_keys WHERE name = 'reader'")).scalar_one()
    finally:
        engine.dispose()
    made = {body["key"]["id"] for body in created}
    assert set(keys) - made == {key_id for key_id, name in keys.items() if name in ("load", "reader")}
    assert made <= set(keys) and set(keys) <= audited
    served = sum(1 for answer in answers if answer.what == "whoami" and answer.status == 200)
    assert reader_uses == served
