"""The documented forward-auth recipes (docs/proxies/) with the real nginx and Caddy in front of Keyfob under
gunicorn and a service that echoes what reaches it: the key decides what passes, the service never sees the key,
the identity headers it sees are Keyfob's, and nothing passes while Keyfob is down.

One Keyfob, one service and one of each proxy for the whole module; each test runs through both proxies and makes
the keys it changes. Traefik and Envoy are not installable here: their recipes are not tested.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from http.client import HTTPConnection
from pathlib import Path

import pytest

from tests.functional.keyhelpers import bearer
from tests.functional.processes import flask
from tests.functional.reverse_proxies import EchoService, running_caddy, running_nginx
from tests.functional.served import Answer, Served, gunicorn_with_a_key, http, start_gunicorn

RULES = """\
# methods   path            scopes (all needed; - for any valid key)
GET,HEAD    /invoices/**    read:data
POST        /invoices       write:data
*           /status         -
"""
SERVICE_KEY = "s" * 40
IDENTITY = ("x-keyfob-key-id", "x-keyfob-key-start", "x-keyfob-user-id", "x-keyfob-scopes")
# A loopback address of its own for the client, so that Keyfob can tell it from the proxy's (127.0.0.1).
CLIENT = "127.0.0.2"


@dataclass
class Keyfob:
    """The module's Keyfob: gunicorn, which a test may stop and start again on the same database."""

    served: Served
    process: subprocess.Popen
    folder: Path  # where its database and instance folder are, for `flask` on the same database

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)

    def start(self) -> None:
        self.process = start_gunicorn(self.served.env, self.served.base, self.served.log)

    def api(self, method: str, path: str, body=None) -> Answer:
        """Keyfob's own API, straight (not through a proxy), with ada's key (keys:read and keys:write)."""
        return http(method, f"{self.served.base}/api/v1{path}", {"Authorization": f"Bearer {self.served.token}"},
                    body)

    def new_key(self, **fields) -> tuple[int, str]:
        """A new key of ada's, made through the API: (id, secret)."""
        answer = self.api("POST", "/api-keys", {"name": "proxied", "scopes": ["read:data"], **fields})
        assert answer.status == 201, answer.body
        return answer.json()["key"]["id"], answer.json()["secret"]


@dataclass(frozen=True)
class Proxy:
    name: str
    base: str
    verifier: str  # its credential, which only Keyfob may ever see

    def ask(self, method: str, path: str, headers: dict | None = None, source: str = CLIENT) -> Answer:
        """One request through the proxy, from the client's address `source`, the path sent as written."""
        host, port = self.base.removeprefix("http://").split(":")
        connection = HTTPConnection(host, int(port), timeout=30, source_address=(source, 0))
        try:
            connection.request(method, path, headers=headers or {})
            response = connection.getresponse()
            return Answer(response.status, response.headers, response.read())
        finally:
            connection.close()


@pytest.fixture(scope="module")
def keyfob(tmp_path_factory) -> Iterator[Keyfob]:
    folder = tmp_path_factory.mktemp("keyfob")
    rules = folder / "forward-auth.rules"
    rules.write_text(RULES)
    # One worker: its rate-limit counters (memory://) are then the only ones, and a limit of 1 is exactly 1.
    with gunicorn_with_a_key(folder, "--scope", "read:data", "--scope", "keys:read", "--scope", "keys:write",
                             TRUSTED_PROXIES="1", FORWARD_AUTH_RULES=str(rules), WEB_CONCURRENCY="1",
                             SERVICE_API_KEY=SERVICE_KEY, SERVICE_API_KEY_SCOPES="read:data",
                             PROMETHEUS_MULTIPROC_DIR=str(folder / "metrics")) as served:
        keyfob = Keyfob(served, served.server, folder)
        try:
            yield keyfob
        finally:
            keyfob.stop()


@pytest.fixture(scope="module")
def service() -> Iterator[EchoService]:
    with EchoService() as echo:
        yield echo


def _verifier(keyfob: Keyfob, name: str) -> str:
    """A verifier credential for one proxy, issued by the CLI as the docs say."""
    created = flask(keyfob.folder, "verifiers", "create", name, **keyfob.served.env)
    assert created.returncode == 0, created.stderr
    return created.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def nginx(keyfob, service, tmp_path_factory) -> Iterator[Proxy]:
    verifier = _verifier(keyfob, "nginx")
    with running_nginx(tmp_path_factory.mktemp("nginx"), KEYFOB_ADDRESS=keyfob.served.base.removeprefix("http://"),
                       SERVICE_ADDRESS=service.address, KEYFOB_VERIFIER=verifier) as base:
        yield Proxy("nginx", base, verifier)


@pytest.fixture(scope="module")
def caddy(keyfob, service, tmp_path_factory) -> Iterator[Proxy]:
    verifier = _verifier(keyfob, "caddy")
    with running_caddy(tmp_path_factory.mktemp("caddy"), verifier, SERVICE_ADDRESS=service.address,
                       KEYFOB_ADDRESS=keyfob.served.base.removeprefix("http://")) as base:
        yield Proxy("caddy", base, verifier)


@pytest.fixture(params=["nginx", "caddy"])
def proxy(request) -> Proxy:
    return request.getfixturevalue(request.param)


def identity(seen) -> dict[str, str]:
    """The identity headers the service received, without empty ones (nginx sends none for an empty value, Caddy
    an empty header)."""
    return {name: seen.headers[name] for name in IDENTITY if seen.headers.get(name)}


def refused(proxy: Proxy, service: EchoService, method: str, path: str, headers: dict | None = None,
            source: str = CLIENT) -> Answer:
    """A request through the proxy that must not reach the service."""
    before = len(service.seen)
    answer = proxy.ask(method, path, headers, source)
    assert len(service.seen) == before, f"{proxy.name} let {method} {path} through: {service.seen[before:]}"
    assert not 200 <= answer.status < 300
    return answer


def reached(proxy: Proxy, service: EchoService, method: str, path: str, headers: dict | None = None):
    """A request through the proxy that must reach the service: what the service received."""
    before = len(service.seen)
    answer = proxy.ask(method, path, headers)
    assert answer.status == 200, (proxy.name, answer.status, answer.body)
    assert len(service.seen) == before + 1
    return service.seen[-1]


# -- what passes ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("header", ["Authorization", "X-API-Key"])
def test_a_valid_key_reaches_the_service_with_who_it_is_and_without_the_key(proxy, keyfob, service, header):
    key_id, token = keyfob.new_key(scopes=["read:data"])
    value = f"Bearer {token}" if header == "Authorization" else token
    seen = reached(proxy, service, "GET", "/invoices/7?page=2", {header: value})
    assert (seen.method, seen.path) == ("GET", "/invoices/7?page=2")
    owner = keyfob.api("GET", "/whoami").json()["user_id"]
    assert identity(seen) == {"x-keyfob-key-id": str(key_id), "x-keyfob-key-start": token[:9],
                              "x-keyfob-user-id": str(owner), "x-keyfob-scopes": "read:data"}
    assert not {"authorization", "x-api-key"} & set(seen.headers)
    assert token not in repr(seen) and proxy.verifier not in repr(seen)


def test_a_route_any_key_may_use_lets_any_valid_key_through(proxy, keyfob, service):
    _, token = keyfob.new_key(scopes=[])
    assert reached(proxy, service, "DELETE", "/status", bearer(token)).method == "DELETE"


@pytest.mark.parametrize("who", ["a user's key", "the service key"])
def test_identity_headers_a_client_makes_up_never_reach_the_service(proxy, keyfob, service, who):
    token = keyfob.served.token if who == "a user's key" else SERVICE_KEY
    forged = {"X-Keyfob-User-Id": "999", "x-keyfob-user-id": "998", "X-Keyfob-Key-Id": "999",
              "X-Keyfob-Key-Start": "kf_forged", "X-Keyfob-Scopes": "keys:write admin", "X-Keyfob-Code": "VALID",
              "X-Keyfob-Status": "200", "X-Keyfob-Verifier": "kfv_forged"}
    seen = reached(proxy, service, "GET", "/invoices", {**bearer(token), **forged})
    if who == "the service key":  # no id and no owner: nothing the client said may stand in for them
        assert identity(seen) == {"x-keyfob-key-start": "service", "x-keyfob-scopes": "read:data"}
    else:
        key = keyfob.api("GET", "/whoami").json()
        assert identity(seen) == {"x-keyfob-key-id": str(key["key_id"]), "x-keyfob-key-start": key["key"],
                                  "x-keyfob-user-id": str(key["user_id"]), "x-keyfob-scopes": " ".join(key["scopes"])}
    # The rest of the client's X-Keyfob-* headers are gone too, so the service cannot mistake one for Keyfob's.
    assert {name for name in seen.headers if name.startswith("x-keyfob-")} <= set(IDENTITY)


# -- what is refused --------------------------------------------------------------------------------------------------

def test_a_missing_an_invalid_or_a_revoked_key_is_a_401_that_never_reaches_the_service(proxy, keyfob, service):
    revoked_id, revoked = keyfob.new_key()
    assert keyfob.api("DELETE", f"/api-keys/{revoked_id}", {"reason": "test"}).status == 200
    for headers in ({}, bearer("kf_" + "A" * 33), bearer(revoked), {"X-API-Key": revoked},
                    {"Authorization": f"Basic {revoked}"}):
        answer = refused(proxy, service, "GET", "/invoices/1", headers)
        assert answer.status == 401, (headers, answer.status)
        assert answer.headers["WWW-Authenticate"].startswith('Bearer realm="keyfob"')


def test_a_key_without_the_routes_scope_or_a_route_without_a_rule_is_a_403(proxy, keyfob, service):
    _, token = keyfob.new_key(scopes=["read:data"])
    answer = refused(proxy, service, "POST", "/invoices", bearer(token))
    assert answer.status == 403
    assert answer.headers["WWW-Authenticate"].endswith('error="insufficient_scope", scope="write:data"')
    for path in ("/admin/users", "/invoices/../admin/users", "/invoices/%2e%2e/admin/users", "//admin/users"):
        assert refused(proxy, service, "GET", path, bearer(token)).status == 403, path
    # The route is the one the client asks for, whatever headers it adds to name another.
    for other in ({"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/invoices/1"},
                  {"X-Original-Method": "GET", "X-Original-URI": "/invoices/1"}):
        assert refused(proxy, service, "POST", "/invoices", {**bearer(token), **other}).status == 403


def test_a_key_over_its_rate_limit_gets_a_429_with_retry_after(proxy, keyfob, service):
    _, token = keyfob.new_key(rate_limit=1)
    reached(proxy, service, "GET", "/invoices/1", bearer(token))
    answer = refused(proxy, service, "GET", "/invoices/1", bearer(token))
    assert answer.status == 429
    assert 1 <= int(answer.headers["Retry-After"]) <= 60
    assert answer.headers["RateLimit-Policy"] == '"per-key";q=1;w=60'


def test_a_key_revoked_in_keyfob_is_refused_from_the_very_next_request(proxy, keyfob, service):
    key_id, token = keyfob.new_key()
    reached(proxy, service, "GET", "/invoices/1", bearer(token))
    assert keyfob.api("DELETE", f"/api-keys/{key_id}", {"reason": "leaked"}).status == 200
    assert refused(proxy, service, "GET", "/invoices/1", bearer(token)).status == 401


def test_the_key_allowlist_sees_the_client_not_the_proxy_nor_what_the_client_claims(proxy, keyfob, service):
    _, token = keyfob.new_key(allowed_ips=[f"{CLIENT}/32"])
    reached(proxy, service, "GET", "/invoices/1", bearer(token))
    claims = {**bearer(token), "X-Forwarded-For": CLIENT, "X-Real-IP": CLIENT}
    assert refused(proxy, service, "GET", "/invoices/1", claims, source="127.0.0.3").status == 403


def test_envoys_questions_are_judged_on_the_path_the_service_will_read(keyfob):
    """Envoy cannot run here: its question as ext_authz sends it, the client's method and path under /forward-auth,
    with no X-Forwarded-Uri."""
    credential = _verifier(keyfob, "envoy")
    _, token = keyfob.new_key(scopes=["read:data"])

    def status(method: str, path: str) -> int:
        return http(method, f"{keyfob.served.base}/forward-auth{path}",
                    {**bearer(token), "X-Keyfob-Verifier": credential, "X-Forwarded-For": CLIENT}).status

    assert status("GET", "/invoices/1?page=2") == 200
    assert status("HEAD", "/invoices/1") == 200
    assert status("POST", "/invoices") == 403
    assert status("GET", "/admin/users") == 403
    # The service reads %252e%252e as a segment named %2e%2e, under /admin: not as `..` back to /invoices.
    assert status("GET", "/admin/%252e%252e/invoices/1") == 403


def test_while_keyfob_is_down_nothing_passes(proxy, keyfob, service):
    _, token = keyfob.new_key()
    reached(proxy, service, "GET", "/invoices/1", bearer(token))
    keyfob.stop()
    try:
        answer = refused(proxy, service, "GET", "/invoices/1", bearer(token))
        assert answer.status >= 500
    finally:
        keyfob.start()
    reached(proxy, service, "GET", "/invoices/1", bearer(token))
