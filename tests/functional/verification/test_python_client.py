"""The Python client for services (static/clients/keyfob_client.py) against a real Keyfob under gunicorn: checks
through the client and through its Flask decorator, which must answer exactly as Keyfob's own routes do, and the
client failing closed when Keyfob is stopped, hangs, fails or refuses the verifier credential."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import logging
import re
import ssl
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask import Flask, g

from app.keys import tokens
from tests.functional.keyhelpers import bearer
from tests.functional.loopback_servers import KeepAliveProxy, SilentServer, self_signed_certificate
from tests.functional.processes import ROOT, flask, free_port
from tests.functional.served import Served, gunicorn, gunicorn_with_a_key, http
from tests.secret_leaks import find_keys

CLIENT_FILE = ROOT / "static" / "clients" / "keyfob_client.py"
WHOAMI, KEY_LIST = "/api/v1/whoami", "/api/v1/api-keys"  # Keyfob's routes for any valid key, and for keys:read
UNKNOWN_KEY = "kf_" + "A" * 33


def _load_client():
    """The client as a service vendors it: one file imported by path."""
    spec = importlib.util.spec_from_file_location("keyfob_client", CLIENT_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


kc = _load_client()


@dataclass(frozen=True)
class Keyfob:
    """The running Keyfob, a verifier credential it issued, and ways to act on it as its admin and its users do."""

    served: Served
    credential: str
    folder: Path

    def cli(self, *args: str) -> str:
        """`flask <args>` on Keyfob's database; its stdout."""
        result = flask(self.folder, *args, **self.served.env)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def new_key(self, scopes=("read:data",), **settings) -> tuple[int, str]:
        """(id, key) of a new key of ada's, made through Keyfob's API with her key."""
        answer = http("POST", self.served.base + KEY_LIST, bearer(self.served.token),
                      {"name": "service key", "scopes": list(scopes), **settings})
        assert answer.status == 201, answer.body
        return answer.json()["key"]["id"], answer.json()["secret"]

    def revoke_through_the_api(self, key_id: int) -> None:
        assert http("DELETE", f"{self.served.base}{KEY_LIST}/{key_id}", bearer(self.served.token)).status == 200


@pytest.fixture(scope="module")
def keyfob(tmp_path_factory):
    folder = tmp_path_factory.mktemp("python_client")
    # ada's key may make keys holding these scopes. One worker: with the default memory store each worker counts
    # rate limits on its own.
    with gunicorn_with_a_key(folder, "--scope", "keys:read", "--scope", "keys:write", "--scope", "read:data",
                             WEB_CONCURRENCY="1") as served:
        created = flask(folder, "verifiers", "create", "billing-service", **served.env)
        assert created.returncode == 0, created.stderr
        yield Keyfob(served, created.stdout.strip().splitlines()[-1], folder)


@pytest.fixture(scope="module")
def client(keyfob):
    with kc.KeyfobClient(keyfob.served.base, keyfob.credential) as client:
        yield client


@pytest.fixture
def proxy(keyfob):
    """A keep-alive proxy in front of Keyfob (gunicorn's sync workers close every connection), as nginx would be."""
    proxy = KeepAliveProxy(keyfob.served.base)
    yield proxy
    proxy.stop()


def service_for(client):
    """The test client of a service that guards, with the client's decorator, the paths of two of Keyfob's own routes
    as Keyfob guards them (whoami for any valid key, the key list for keys:read), and /data for read:data."""
    service = Flask("service")
    service.testing = True

    def found():
        return {"code": g.keyfob.code, "key_id": g.keyfob.key.id}

    service.add_url_rule(WHOAMI, "whoami", kc.require_api_key(client=client)(found))
    service.add_url_rule(KEY_LIST, "key_list", kc.require_api_key("keys:read", client=client)(found))
    service.add_url_rule("/data", "data", kc.require_api_key("read:data", client=client)(found))
    return service.test_client()


# -- one file, the standard library only ------------------------------------------------------------------------------

def test_the_client_imports_with_the_standard_library_only():
    # -S: no site-packages at all, so the import would fail if the module needed anything but the standard library.
    code = ("import importlib.util, sys\n"
            "before = set(sys.modules)\n"
            f"spec = importlib.util.spec_from_file_location('keyfob_client', {str(CLIENT_FILE)!r})\n"
            "module = importlib.util.module_from_spec(spec)\n"
            "sys.modules['keyfob_client'] = module\n"
            "spec.loader.exec_module(module)\n"
            "added = {name.partition('.')[0] for name in set(sys.modules) - before} - {'keyfob_client'}\n"
            "print(sorted(added - sys.stdlib_module_names), 'flask' in sys.modules, module.KeyfobClient.__name__)\n")
    result = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[] False KeyfobClient"
    # Every import anywhere in the file, the lazy ones in functions too: the standard library, and Flask only for the
    # decorator. Never Keyfob's own `app`.
    tree = ast.parse(CLIENT_FILE.read_text())
    imported = {alias.name.partition(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.partition(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported - sys.stdlib_module_names == {"flask"}


def test_keyfob_serves_the_client_that_matches_its_api(keyfob):
    answer = http("GET", f"{keyfob.served.base}/static/clients/keyfob_client.py")
    assert answer.status == 200 and answer.body == CLIENT_FILE.read_bytes()


# -- what Keyfob answers ----------------------------------------------------------------------------------------------

def test_a_valid_key_gives_a_frozen_typed_result_with_nothing_secret(keyfob, client):
    key_id, token = keyfob.new_key(("read:data", "keys:read"), rate_limit=10, remaining_uses=5)
    result = client.verify(token, ["read:data"], client_ip="203.0.113.7", method="GET", path="/invoices")
    assert (result.valid, result.code, result.remaining_uses, result.missing_scopes) == (True, "VALID", 4, ())
    key = result.key
    assert (key.id, key.name, key.scopes, key.owner.email) == (key_id, "service key", ("keys:read", "read:data"),
                                                               "ada@example.com")
    assert isinstance(key.owner, kc.Owner) and isinstance(key.owner.id, int)
    assert token.startswith(key.start) and len(key.start) < len(token) - 20
    assert key.expires_at.tzinfo is not None and key.expires_at > datetime.now(UTC)
    assert result.rate_limit == kc.RateLimit(limit=10, window=60, remaining=9, reset=result.rate_limit.reset)
    assert 0 < result.rate_limit.reset <= 60
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.valid = False
    assert token not in repr(result) and keyfob.credential not in repr(client)


def test_the_decorator_lets_a_good_key_through_and_tells_keyfob_the_requests_facts(keyfob, proxy):
    key_id, token = keyfob.new_key(rate_limit=10)
    with kc.KeyfobClient(proxy.base, keyfob.credential) as client:
        service = service_for(client)
        for left, headers in ((9, bearer(token)), (8, {"X-API-Key": token})):
            answer = service.get("/data?page=2", headers=headers, environ_base={"REMOTE_ADDR": "203.0.113.9"})
            assert answer.status_code == 200 and answer.get_json() == {"code": "VALID", "key_id": key_id}
            assert answer.headers["RateLimit-Policy"] == '"per-key";q=10;w=60'
            assert re.fullmatch(rf'"per-key";r={left};t=\d+', answer.headers["RateLimit"])
    assert proxy.bodies[-1] == {"key": token, "scopes": ["read:data"], "client_ip": "203.0.113.9", "method": "GET",
                                "path": "/data"}


def test_a_path_too_long_to_record_is_cut_never_refused(keyfob, proxy):
    _, token = keyfob.new_key()
    with kc.KeyfobClient(proxy.base, keyfob.credential) as client:
        assert client.verify(token, method="GET", path="/" + "x" * 5000).code == "VALID"
    assert len(proxy.bodies[-1]["path"]) == kc.RECORDED_LENGTH


def test_the_decorator_checks_the_clients_address_against_the_keys_allowlist(keyfob, client):
    _, token = keyfob.new_key(allowed_ips=["203.0.113.0/24"])
    service = service_for(client)
    assert service.get(WHOAMI, headers=bearer(token), environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 200
    with service:
        answer = service.get(WHOAMI, headers=bearer(token))  # from 127.0.0.1
        assert isinstance(g.keyfob, kc.Verification) and g.keyfob.code == "IP_NOT_ALLOWED"
    assert answer.status_code == 403 and answer.get_json()["error"] == "ip_not_allowed"


@pytest.mark.parametrize("presented", [UNKNOWN_KEY, "nonsense", tokens.generate("kf"), tokens.generate("kfv")])
def test_an_unknown_or_malformed_key_is_not_found_and_nothing_more(keyfob, client, presented):
    assert client.verify(presented) == kc.Verification(valid=False, code="NOT_FOUND")
    answer = service_for(client).get(WHOAMI, headers=bearer(presented))
    assert answer.status_code == 401 and answer.get_json()["error"] == "invalid_token"


@pytest.mark.parametrize("through", ["cli", "api"])
def test_a_key_revoked_through_keyfob_is_refused_on_the_very_next_check(keyfob, client, through):
    key_id, token = keyfob.new_key()
    service = service_for(client)
    assert client.verify(token).valid and service.get(WHOAMI, headers=bearer(token)).status_code == 200
    if through == "cli":
        keyfob.cli("keys", "revoke", str(key_id))
    else:
        keyfob.revoke_through_the_api(key_id)
    assert (client.verify(token).valid, client.verify(token).code) == (False, "REVOKED")
    assert service.get(WHOAMI, headers=bearer(token)).status_code == 401


def test_a_key_without_the_scope_gets_403_naming_it(keyfob, client):
    _, token = keyfob.new_key(("read:data",))
    result = client.verify(token, ["read:data", "keys:read"])
    assert (result.valid, result.code, result.missing_scopes) == (False, "INSUFFICIENT_SCOPE", ("keys:read",))
    answer = service_for(client).get(KEY_LIST, headers=bearer(token))
    assert answer.status_code == 403 and answer.get_json()["error"] == "insufficient_scope"
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="keyfob", error="insufficient_scope", scope="keys:read"'


def test_a_rate_limited_key_gets_429_with_retry_after_and_the_rate_limit_fields(keyfob, client):
    _, token = keyfob.new_key(rate_limit=2)
    service = service_for(client)
    assert service.get(WHOAMI, headers=bearer(token)).headers["RateLimit"].startswith('"per-key";r=1;')
    assert client.verify(token).rate_limit.remaining == 0
    answer = service.get(WHOAMI, headers=bearer(token))
    assert answer.status_code == 429 and answer.get_json()["error"] == "rate_limited"
    retry_after = int(answer.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert answer.headers["RateLimit-Policy"] == '"per-key";q=2;w=60'
    assert answer.headers["RateLimit"] == f'"per-key";r=0;t={retry_after}'
    result = client.verify(token)
    assert (result.valid, result.code, result.rate_limit.remaining) == (False, "RATE_LIMITED", 0)


def test_a_key_with_a_quota_counts_down_and_then_gets_403(keyfob, client):
    _, token = keyfob.new_key(remaining_uses=2)
    assert [client.verify(token).remaining_uses for _ in range(2)] == [1, 0]
    result = client.verify(token)
    assert (result.valid, result.code) == (False, "USAGE_EXCEEDED")
    answer = service_for(client).get(WHOAMI, headers=bearer(token))
    assert answer.status_code == 403 and answer.get_json()["error"] == "usage_exceeded"


def _refused_request(name: str, keyfob: Keyfob, client) -> tuple[str, dict]:
    """The path and headers of a request Keyfob refuses for the reason `name`."""
    if name == "no key":
        return WHOAMI, {}
    if name == "unknown key":
        return WHOAMI, bearer(UNKNOWN_KEY)
    if name == "missing scope":
        return KEY_LIST, bearer(keyfob.new_key(("read:data",))[1])
    if name == "address not allowed":
        return WHOAMI, bearer(keyfob.new_key(allowed_ips=["10.0.0.0/8"])[1])
    key_id, token = keyfob.new_key(**{"quota used up": {"remaining_uses": 1}, "rate limited": {"rate_limit": 1},
                                      "revoked key": {}}[name])
    if name == "revoked key":
        keyfob.revoke_through_the_api(key_id)
    else:
        assert client.verify(token).valid  # its one use, or its one request this minute
    return WHOAMI, bearer(token)


def _alike(ours: str | None, keyfobs: str | None) -> bool:
    """The same text, but a number of seconds may be one more or less (the two answers came moments apart)."""
    if ours is None or keyfobs is None:
        return ours == keyfobs
    numbers = re.compile(r"\d+")
    return numbers.sub("#", ours) == numbers.sub("#", keyfobs) and all(
        abs(int(a) - int(b)) <= 1 for a, b in zip(numbers.findall(ours), numbers.findall(keyfobs), strict=True))


@pytest.mark.parametrize("name", ["no key", "unknown key", "revoked key", "missing scope", "address not allowed",
                                  "quota used up", "rate limited"])
def test_the_decorator_refuses_exactly_as_keyfobs_own_routes_do(keyfob, client, name):
    path, headers = _refused_request(name, keyfob, client)
    keyfobs = http("GET", keyfob.served.base + path, headers)
    ours = service_for(client).get(path, headers=headers)
    assert keyfobs.status in (401, 403, 429) and ours.status_code == keyfobs.status
    assert ours.get_json()["error"] == keyfobs.json()["error"] and ours.get_json().keys() == keyfobs.json().keys()
    assert _alike(ours.get_json()["message"], keyfobs.json()["message"])
    assert ours.headers["Content-Type"] == keyfobs.headers["Content-Type"] == "application/json"
    for header in ("WWW-Authenticate", "Retry-After", "RateLimit-Policy", "RateLimit"):
        assert _alike(ours.headers.get(header), keyfobs.headers.get(header)), header


def test_a_scope_keyfob_does_not_know_raises_the_apis_refusal(keyfob, client):
    _, token = keyfob.new_key()
    with pytest.raises(kc.KeyfobRequestError) as raised:
        client.verify(token, ["no:such"])
    error = raised.value
    assert (error.status, error.error, list(error.fields)) == (422, "validation_failed", ["scopes"])


# -- failing closed ---------------------------------------------------------------------------------------------------

def test_a_wrong_or_revoked_verifier_credential_raises_and_never_passes_a_key(keyfob, client):
    old = keyfob.cli("verifiers", "create", "old-service").strip().splitlines()[-1]
    keyfob.cli("verifiers", "revoke", "old-service")
    _, token = keyfob.new_key()
    mistyped = keyfob.credential[:-1] + ("y" if keyfob.credential.endswith("x") else "x")
    for credential in (old, mistyped, tokens.generate("kfv")):
        with kc.KeyfobClient(keyfob.served.base, credential) as refused:
            with pytest.raises(kc.InvalidVerifierCredential) as raised:
                refused.verify(token)
            assert credential not in str(raised.value) and token not in str(raised.value)
            with pytest.raises(kc.InvalidVerifierCredential):  # the service's own error handling answers 500
                service_for(refused).get(WHOAMI, headers=bearer(token))
    assert client.verify(token).valid  # the key was good all along


def test_a_stopped_keyfob_is_unavailable_and_the_decorator_answers_503(keyfob, tmp_path):
    # A second gunicorn on the module's database, to stop without stopping the module's.
    env = {**keyfob.served.env, "KEYFOB_BIND": f"127.0.0.1:{free_port()}"}
    _, token = keyfob.new_key()
    with gunicorn(env, tmp_path / "gunicorn.log") as (base, server), kc.KeyfobClient(base, keyfob.credential) as client:
        assert client.verify(token).valid
        server.terminate()
        server.wait(timeout=60)
        with pytest.raises(kc.KeyfobUnavailable, match="cannot be reached"):
            client.verify(token)
        answer = service_for(client).get(WHOAMI, headers=bearer(token))
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
    assert answer.get_json() == {"error": "service_unavailable", "message": kc.UNAVAILABLE_MESSAGE}


def test_a_keyfob_that_never_answers_is_unavailable_within_about_the_timeout(keyfob):
    _, token = keyfob.new_key()
    silent = SilentServer()
    try:
        with kc.KeyfobClient(silent.base, keyfob.credential, timeout=0.5) as client:
            started = time.monotonic()
            with pytest.raises(kc.KeyfobUnavailable, match="did not answer within 0.5 s"):
                client.verify(token)
            assert 0.45 < time.monotonic() - started < 1.5
            started = time.monotonic()
            answer = service_for(client).get(WHOAMI, headers=bearer(token))
            assert time.monotonic() - started < 1.5
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
        assert len(silent.accepted) == 2  # connected both times: what it waited for was an answer
    finally:
        silent.stop()


@pytest.mark.parametrize(("status", "headers", "body", "retry_after"), [
    (503, {"Retry-After": "7"}, b'{"error": "service_unavailable"}', 7),
    (500, {}, b"", None),
    (502, {"Content-Type": "text/html"}, b"<h1>Bad gateway</h1>", None),
    (200, {"Content-Type": "text/html"}, b"<h1>Sign in to the Wi-Fi</h1>", None),
], ids=["503 with Retry-After", "500", "502 from a proxy", "200 not from Keyfob"])
def test_a_failing_keyfob_is_unavailable_and_never_valid(keyfob, proxy, status, headers, body, retry_after):
    _, token = keyfob.new_key()
    with kc.KeyfobClient(proxy.base, keyfob.credential) as client:
        proxy.fail_next(status, headers, body)
        with pytest.raises(kc.KeyfobUnavailable) as raised:
            client.verify(token)
        assert raised.value.retry_after == retry_after
        proxy.fail_next(status, headers, body)
        answer = service_for(client).get(WHOAMI, headers=bearer(token))
        assert answer.status_code == 503 and answer.headers["Retry-After"] == str(retry_after or 5)
        assert client.verify(token).valid  # the connection is still good for the next check


def test_an_untrusted_certificate_fails_closed_and_a_private_ca_is_trusted_when_given(keyfob, tmp_path):
    certificate, private_key = self_signed_certificate(tmp_path)
    proxy = KeepAliveProxy(keyfob.served.base, tls=(certificate, private_key))
    try:
        _, token = keyfob.new_key()
        with kc.KeyfobClient(proxy.base, keyfob.credential) as untrusting, \
                pytest.raises(kc.KeyfobUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            untrusting.verify(token)
        trusting = kc.KeyfobClient(proxy.base, keyfob.credential,
                                   ssl_context=ssl.create_default_context(cafile=certificate))
        with trusting:
            assert trusting.verify(token).valid and trusting.verify(token).valid
        assert proxy.accepted == 1 and len(proxy.bodies) == 2  # both checks over one TLS connection
    finally:
        proxy.stop()


# -- connections ------------------------------------------------------------------------------------------------------

def test_checks_reuse_one_kept_alive_connection_per_thread(keyfob, proxy):
    _, token = keyfob.new_key()
    with kc.KeyfobClient(proxy.base, keyfob.credential) as client:
        assert [client.verify(token).valid for _ in range(5)] == [True] * 5
        assert proxy.accepted == 1
        results = []

        def check_three_times():
            results.extend(client.verify(token).valid for _ in range(3))

        threads = [threading.Thread(target=check_three_times) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results == [True] * 9
        assert proxy.accepted == 4  # one more connection per thread, kept for its three checks


def test_a_dropped_connection_is_reopened_once_and_only_once(keyfob, proxy):
    _, token = keyfob.new_key()
    with kc.KeyfobClient(proxy.base, keyfob.credential) as client:
        assert client.verify(token).valid and proxy.accepted == 1
        proxy.drop_idle()  # the other end closed the idle connection
        assert client.verify(token).valid and proxy.accepted == 2
        proxy.drop_next(1)  # ... or closed it as the check came in
        assert client.verify(token).valid and (proxy.accepted, len(proxy.bodies)) == (3, 4)
        proxy.drop_next(2)  # and again on the new connection: there is no third try
        with pytest.raises(kc.KeyfobUnavailable, match="closed the connection"):
            client.verify(token)
        assert len(proxy.bodies) == 6
    with kc.KeyfobClient(proxy.base, keyfob.credential) as fresh:
        proxy.drop_next(1)  # a new connection that is dropped is no stale one: not retried
        with pytest.raises(kc.KeyfobUnavailable):
            fresh.verify(token)
        assert len(proxy.bodies) == 7


def test_a_stopped_front_closes_kept_connections_and_checks_fail_closed(keyfob, proxy):
    _, token = keyfob.new_key()
    with kc.KeyfobClient(proxy.base, keyfob.credential) as client:
        assert client.verify(token).valid
        proxy.stop()
        with pytest.raises(kc.KeyfobUnavailable, match="cannot be reached"):
            client.verify(token)


# -- secrets ----------------------------------------------------------------------------------------------------------

def test_no_key_or_credential_reaches_a_message_a_repr_or_a_log(keyfob, proxy, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    _, token = keyfob.new_key()
    silent = SilentServer()
    failing = [(kc.KeyfobClient(f"http://127.0.0.1:{free_port()}", keyfob.credential), ()),
               (kc.KeyfobClient(silent.base, keyfob.credential, timeout=0.2), ()),
               (kc.KeyfobClient(keyfob.served.base, tokens.generate("kfv")), ()),
               (kc.KeyfobClient(keyfob.served.base, keyfob.credential), ["no:such"]),
               (kc.KeyfobClient(proxy.base, keyfob.credential), ())]
    proxy.fail_next(503)
    texts = []
    try:
        for client, scopes in failing:
            with client, pytest.raises(kc.KeyfobError) as raised:
                client.verify(token, scopes)
            texts += [str(raised.value), repr(raised.value), "".join(traceback.format_exception(raised.value)),
                      repr(client)]
    finally:
        silent.stop()
    assert len(texts) == 4 * len(failing)
    for text in texts:
        assert token not in text and keyfob.credential not in text and not find_keys(text), text
    assert caplog.records == [] and capsys.readouterr() == ("", "")
    assert not find_keys(keyfob.served.log.read_text())  # nor in Keyfob's: the key goes in the body, not the URL


def test_a_client_is_refused_a_bad_address_or_credential_without_repeating_it():
    good = tokens.generate("kfv")
    for base_url, credential in (("ftp://keyfob.internal", good), ("keyfob.internal", good),
                                 ("https://user:secret@keyfob.internal", good),
                                 ("https://keyfob.internal", good + "\r\nX-Injected: 1"),
                                 ("https://keyfob.internal", "")):
        with pytest.raises(ValueError) as raised:
            kc.KeyfobClient(base_url, credential)
        assert good not in str(raised.value) and "secret" not in str(raised.value)
