"""The cache of verified keys on one host (issue 15): a change that can refuse a key applies to the very next request
in every gunicorn worker, through every face that checks keys, whatever VERIFY_CACHE_SECONDS says.

One gunicorn with 4 workers and an hour's cache, so that only the invalidation can make these pass. For each change a
key of its own is first accepted by every worker through each face (each worker's own Prometheus file says it
verified the key, so each has it cached), then changed by one request to the server; right after that answer a burst
of concurrent requests on fresh connections, released together, goes through each face: none may be accepted, and
every worker must have answered some of each face's.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.functional.processes import flask, worker_pids
from tests.functional.served import (
    Answer,
    Served,
    counts_by_worker,
    form_token,
    gunicorn_with_a_key,
    http,
    signed_in_cookie,
)
from tests.support import FAST_ARGON2, database_url

WORKERS = 4
BURST = 64  # requests per face, released together right after the change's answer
WARM_ROUNDS = 20
SCOPE = "keys:read"  # every face's request needs it: the scope the "scope removed" change takes away
GUARDED = "/guarded/report"  # the upstream path forward auth is asked about
RULES = f"GET /guarded/** {SCOPE}\n"


@dataclass(frozen=True)
class Host:
    served: Served
    metrics: str        # PROMETHEUS_MULTIPROC_DIR: each worker's own counts
    admin: str          # an admin's session cookie
    verifier: str       # the credential the verification API and forward auth ask with
    owner_id: int       # bob, whose deactivation is one of the changes
    owner_key: tuple[int, str]


@dataclass(frozen=True)
class Case:
    key_id: int
    token: str
    verifier: str       # the credential its verification API and forward auth requests carry
    verifier_name: str


def cli(served: Served, *args: str) -> str:
    """The last line `flask <args>` printed, on the server's database."""
    result = flask(Path(served.env["HOME"]), *args, **served.env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def scalar(served: Served, sql: str, **params):
    engine = sa.create_engine(database_url(served.env["KEYFOB_INSTANCE_PATH"]))
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text(sql), params).scalar_one()
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """gunicorn with 4 workers and an hour's cache; ada's manager key (the server's own), an admin signed in, bob and
    a key of his, and a verifier credential."""
    tmp_path = tmp_path_factory.mktemp("cache")
    rules = tmp_path / "forward-auth.rules"
    rules.write_text(RULES)
    argon2 = {name: str(value) for name, value in FAST_ARGON2.items()}
    with gunicorn_with_a_key(tmp_path, "--scope", "keys:read", "--scope", "keys:write", "--scope", "read:data",
                             WEB_CONCURRENCY=str(WORKERS), VERIFY_CACHE_SECONDS="3600",
                             FORWARD_AUTH_RULES=str(rules), PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
                             # The admin acts through the admin pages with a password session: the second factor
                             # those ask for by default has tests of its own (accounts/test_two_factor_policy.py).
                             TWO_FACTOR_FOR_ADMINS="false", **argon2) as served:
        cli(served, "users", "create", "admin@example.com", "--admin")
        cli(served, "users", "create", "bob@example.com")
        bob_token = cli(served, "keys", "create", "bob@example.com", "--name", "bob's", "--scope", SCOPE)
        bob = scalar(served, "SELECT id FROM users WHERE email = 'bob@example.com'")
        bob_key = scalar(served, "SELECT id FROM api_keys WHERE user_id = :bob", bob=bob)
        yield Host(served, served.env["PROMETHEUS_MULTIPROC_DIR"], signed_in_cookie(served.base, "admin@example.com"),
                   cli(served, "verifiers", "create", "edge"), bob, (bob_key, bob_token))


def manage(host: Host, method: str, path: str, body: dict | None = None) -> Answer:
    """A key operation through the JSON API, as ada's manager key."""
    return http(method, f"{host.served.base}/api/v1{path}", {"Authorization": f"Bearer {host.served.token}"}, body)


def as_admin(host: Host, path: str) -> Answer:
    """One admin action button, posted with a fresh CSRF token; its 302 says it was done."""
    cookie, token = form_token(host.served.base, "/admin/users", host.admin)
    return http("POST", host.served.base + path, {"Cookie": cookie}, form={"csrf_token": token},
                follow_redirects=False)


# -- the faces: each asks about the key as its callers would, needing SCOPE; True when the key was accepted ---------

def _decorator(base: str, case: Case) -> bool:
    return http("GET", f"{base}/api/v1/api-keys/{case.key_id}", {"Authorization": f"Bearer {case.token}"}).status == 200


def _verify_api(base: str, case: Case) -> bool:
    answer = http("POST", f"{base}/api/v1/keys/verify", {"Authorization": f"Bearer {case.verifier}"},
                  {"key": case.token, "scopes": [SCOPE], "client_ip": "127.0.0.1"})
    return answer.status == 200 and answer.json()["valid"] is True


def _forward_auth(base: str, case: Case) -> bool:
    answer = http("GET", f"{base}/forward-auth", {"X-Keyfob-Verifier": case.verifier, "X-Forwarded-Method": "GET",
                                                 "X-Forwarded-Uri": GUARDED, "Authorization": f"Bearer {case.token}"})
    return answer.status == 200 and answer.headers["X-Keyfob-Code"] == "VALID"


@dataclass(frozen=True)
class Face:
    name: str
    route: str  # its route, as the request-duration histogram labels it
    ask: Callable[[str, Case], bool]

    def via(self, case: Case) -> str:
        """Who asked, as the verification counter labels it."""
        return "keyfob" if self is DECORATOR else case.verifier_name


DECORATOR = Face("decorator", "/api/v1/api-keys/<int:key_id>", _decorator)
VERIFY_API = Face("verify API", "/api/v1/keys/verify", _verify_api)
FORWARD_AUTH = Face("forward auth", "/forward-auth", _forward_auth)


# -- the changes: one request to the server each, done when its answer has come ---------------------------------------

def revoke(host: Host, case: Case) -> None:
    assert manage(host, "DELETE", f"/api-keys/{case.key_id}", {"reason": "leaked"}).status == 200


def disable(host: Host, case: Case) -> None:
    assert manage(host, "PATCH", f"/api-keys/{case.key_id}", {"disabled": True}).status == 200


def rotate_without_grace(host: Host, case: Case) -> None:
    assert manage(host, "POST", f"/api-keys/{case.key_id}/rotate", {"grace": "none"}).status == 200


def remove_the_scope(host: Host, case: Case) -> None:
    assert manage(host, "PATCH", f"/api-keys/{case.key_id}", {"scopes": ["read:data"]}).status == 200


def deactivate_the_owner(host: Host, case: Case) -> None:
    assert as_admin(host, f"/admin/users/{host.owner_id}/deactivate").status == 302


def limit_the_rate(host: Host, case: Case) -> None:
    assert manage(host, "PATCH", f"/api-keys/{case.key_id}", {"rate_limit": 1}).status == 200


def allow_another_network_only(host: Host, case: Case) -> None:
    assert manage(host, "PATCH", f"/api-keys/{case.key_id}", {"allowed_ips": ["10.0.0.0/8"]}).status == 200


def revoke_the_verifier(host: Host, case: Case) -> None:
    verifier_id = scalar(host.served, "SELECT id FROM verifiers WHERE name = :name", name=case.verifier_name)
    assert as_admin(host, f"/admin/verifiers/{verifier_id}/revoke").status == 302


def new_case(host: Host, change) -> Case:
    """A key for this change alone (bob's for his deactivation), and a verifier of its own for a verifier's
    revocation."""
    verifier, verifier_name = host.verifier, "edge"
    if change is revoke_the_verifier:
        verifier_name = "doomed"
        verifier = cli(host.served, "verifiers", "create", verifier_name)
    if change is deactivate_the_owner:
        return Case(*host.owner_key, verifier, verifier_name)
    made = manage(host, "POST", "/api-keys", {"name": change.__name__, "scopes": [SCOPE, "read:data"],
                                              "expires_in_days": 30})
    assert made.status == 201, made.body
    return Case(made.json()["key"]["id"], made.json()["secret"], verifier, verifier_name)


# -- which worker answered -------------------------------------------------------------------------------------------

def together(calls: list[Callable[[], bool]]) -> list[bool]:
    """Every call in a thread of its own, on a connection of its own, all released at once; their results in order."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], bool]) -> bool:
        barrier.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def warm(host: Host, face: Face, case: Case, workers: set[int]) -> None:
    """Send the key through `face` until every worker has accepted it (and so holds it in its cache), every answer an
    accept."""
    def accepted_by_worker() -> dict[int, Counter]:
        return counts_by_worker(host.metrics, "keyfob_key_verifications_total", "via", outcome="valid")

    before = accepted_by_worker()
    for _ in range(WARM_ROUNDS):
        accepted = together([lambda: face.ask(host.served.base, case)] * (4 * WORKERS))
        assert all(accepted), f"{face.name}: {accepted.count(False)} of {len(accepted)} refused before the change"
        now = accepted_by_worker()
        if all(now[pid][face.via(case)] > before.get(pid, Counter())[face.via(case)] for pid in workers):
            return
    pytest.fail(f"{face.name}: not every worker accepted the key in {WARM_ROUNDS} rounds")


def requests_by_worker(host: Host) -> dict[int, Counter]:
    return counts_by_worker(host.metrics, "keyfob_request_duration_seconds_count", "route")


# -- the test --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("change", [revoke, disable, rotate_without_grace, remove_the_scope, deactivate_the_owner,
                                    limit_the_rate, allow_another_network_only, revoke_the_verifier],
                         ids=lambda change: change.__name__)
def test_a_change_refuses_the_very_next_requests_in_every_worker_through_every_face(host, change):
    workers = set(worker_pids(host.served.server.pid))
    assert len(workers) == WORKERS
    case = new_case(host, change)
    faces = (VERIFY_API, FORWARD_AUTH) if change is revoke_the_verifier else (DECORATOR, VERIFY_API, FORWARD_AUTH)
    for face in faces:
        warm(host, face, case, workers)
    before = requests_by_worker(host)

    change(host, case)
    answers = together([lambda face=face: face.ask(host.served.base, case) for face in faces for _ in range(BURST)])
    accepted = {face.name: answers[n * BURST:(n + 1) * BURST].count(True) for n, face in enumerate(faces)}
    # A new rate limit of 1 a minute lets one request through in each worker (memory:// counts per worker; the
    # key's old limit, none, is what a stale cache would apply: all of them); every other change lets none.
    allowed = WORKERS if change is limit_the_rate else 0
    assert sum(accepted.values()) <= allowed, f"accepted after the change's answer, of {BURST} per face: {accepted}"

    # The burst must have met every worker's cache through each face. On a busy machine one worker may have missed a
    # face's burst: then more bursts, each refused all the same, until every worker has answered one.
    for face in faces:
        for _ in range(WARM_ROUNDS):
            after = requests_by_worker(host)
            answered = {pid for pid in workers if after.get(pid, Counter())[face.route] >
                        before.get(pid, Counter())[face.route]}
            if answered == workers:
                break
            more = together([lambda face=face: face.ask(host.served.base, case)] * BURST)
            accepted[face.name] += more.count(True)
            assert sum(accepted.values()) <= allowed, f"accepted, with later bursts: {accepted}"
        assert answered == workers, f"{face.name}: only {len(answered)} of {WORKERS} workers answered the bursts"
