"""/forward-auth through the Flask test client: how each proxy's request is read, the rules file, and the answers.
The real nginx and Caddy in front of it: test_proxies.py."""

from __future__ import annotations

import pytest

from app.audit.service import Actor
from app.config import ConfigError
from app.keys import service, verifiers
from tests.functional.keyhelpers import act_on_key, add_user, bearer, flush, new_key, rows
from tests.support import app_config

RULES = """
# the billing service's routes
GET,HEAD  /invoices/**   read:data
POST      /invoices      write:data
*         /status        -
"""
PROXY = {"X-Forwarded-For": "10.1.2.3"}  # what the proxy says the client's address is (TRUSTED_PROXIES=1)


@pytest.fixture
def edge(apps, tmp_path):
    """(app, client, the proxy's headers with its verifier credential, a key with read:data from 10/8, its id)."""
    rules = tmp_path / "rules"
    rules.write_text(RULES)
    app = apps(FORWARD_AUTH_RULES=str(rules), TRUSTED_PROXIES="1")
    owner = add_user(app)
    with app.app_context():
        _, credential = verifiers.create("edge-nginx", actor=Actor.cli())
    key_id, token = new_key(app, owner, scopes=("read:data",), allowed_ips=["10.0.0.0/8"], rate_limit=3)
    return app, app.test_client(), {"X-Keyfob-Verifier": credential, **PROXY}, token, key_id


def ask(client, proxy: dict, path: str = "/forward-auth", method: str = "GET", **headers):
    response = client.open(path, method=method, headers={**proxy, **headers})
    response.close()
    return response


@pytest.mark.parametrize("proxy_says", [
    {"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/invoices/7?page=2"},  # Caddy, Traefik
    {"X-Original-Method": "GET", "X-Original-URI": "/invoices/7"},  # the nginx recipe
])
def test_an_allowed_request_gets_200_with_the_identity_for_the_upstream(edge, proxy_says):
    app, client, proxy, token, key_id = edge
    response = ask(client, proxy, **proxy_says, **bearer(token))
    assert response.status_code == 200
    assert response.headers["X-Keyfob-Key-Id"] == str(key_id)
    assert response.headers["X-Keyfob-User-Id"] == str(rows(app, "SELECT user_id FROM api_keys")[0]["user_id"])
    assert response.headers["X-Keyfob-Scopes"] == "read:data"
    assert response.headers["X-Keyfob-Code"] == "VALID"
    assert response.headers["RateLimit-Policy"] == '"per-key";q=3;w=60'
    assert response.get_data() == b""


def test_envoy_style_the_method_and_path_are_the_requests_own(edge):
    _, client, proxy, token, _ = edge
    assert ask(client, proxy, "/forward-auth/invoices/9?x=1", **bearer(token)).status_code == 200
    assert ask(client, proxy, "/forward-auth/invoices", method="POST", **bearer(token)).status_code == 403
    assert ask(client, proxy, "/forward-auth/status", method="DELETE", **{"X-API-Key": token}).status_code == 200


def test_the_key_is_read_from_x_api_key_too(edge):
    _, client, proxy, token, _ = edge
    assert ask(client, proxy, **{"X-Forwarded-Uri": "/invoices/1", "X-API-Key": token}).status_code == 200


@pytest.mark.parametrize(("method", "uri", "code", "status"), [
    ("POST", "/invoices", "INSUFFICIENT_SCOPE", 403),
    ("GET", "/nowhere", "NO_RULE", 403),
    ("GET", "/public/../admin", "NO_RULE", 403),  # resolved before matching: not a way round the rules
    ("GET", "/public/%2e%2e/invoices/1", "VALID", 200),
    ("DELETE", "/invoices/1", "NO_RULE", 403),
])
def test_the_rules_file_decides_the_scopes(edge, method, uri, code, status):
    _, client, proxy, token, _ = edge
    response = ask(client, proxy, **{"X-Forwarded-Method": method, "X-Forwarded-Uri": uri}, **bearer(token))
    assert (response.status_code, response.headers["X-Keyfob-Code"]) == (status, code)


def test_refusals_have_the_decorators_shapes(edge):
    app, client, proxy, token, key_id = edge
    route = {"X-Forwarded-Uri": "/invoices/1"}
    missing = ask(client, proxy, **route)
    assert (missing.status_code, missing.headers["WWW-Authenticate"]) == (401, 'Bearer realm="keyfob"')
    wrong = ask(client, proxy, **route, **bearer("kf_" + "A" * 33))
    assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
    outside = ask(client, {**proxy, "X-Forwarded-For": "192.0.2.1"}, **route, **bearer(token))
    assert (outside.status_code, outside.headers["X-Keyfob-Code"]) == (403, "IP_NOT_ALLOWED")
    for _ in range(3):
        assert ask(client, proxy, **route, **bearer(token)).status_code == 200
    limited = ask(client, proxy, **route, **bearer(token))
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    assert limited.headers["RateLimit"].startswith('"per-key";r=0;')
    assert limited.get_json()["error"] == "rate_limited"
    for_nginx = ask(client, proxy, "/forward-auth?for=nginx", **route, **bearer(token))
    assert (for_nginx.status_code, for_nginx.headers["X-Keyfob-Status"]) == (403, "429")
    assert int(for_nginx.headers["Retry-After"]) > 0
    act_on_key(app, key_id, service.revoke)
    assert ask(client, proxy, **route, **bearer(token)).status_code == 401  # the very next request


def test_without_the_proxys_verifier_credential_nothing_is_checked(edge):
    app, client, proxy, token, _ = edge
    for headers in ({}, {"X-Keyfob-Verifier": token}, {"X-Keyfob-Verifier": "kfv_" + "A" * 33}):
        response = ask(client, {**PROXY, **headers}, **{"X-Forwarded-Uri": "/invoices/1"}, **bearer(token))
        assert response.status_code == 401
        assert response.get_json()["error"] == "invalid_verifier"
        assert "X-Keyfob-Key-Id" not in response.headers
    flush(app)
    assert rows(app, "SELECT usage_count FROM api_keys")[0]["usage_count"] == 0


def test_checks_are_counted_for_the_client_and_the_service_and_shown_on_the_key(edge):
    app, client, proxy, token, key_id = edge
    ask(client, proxy, **{"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/invoices/7?page=2"}, **bearer(token))
    ask(client, proxy, **{"X-Forwarded-Method": "POST", "X-Forwarded-Uri": "/invoices"}, **bearer(token))
    flush(app)
    assert rows(app, "SELECT last_used_ip FROM api_keys WHERE id = :id", id=key_id)[0]["last_used_ip"] == "10.1.2.3"
    assert [(row["requests"], row["failures"]) for row in rows(app, "SELECT * FROM key_verifier_usage")] == [(1, 1)]
    recent = rows(app, "SELECT method, path, outcome FROM key_recent_requests ORDER BY id")
    assert recent == [{"method": "GET", "path": "/invoices/7", "outcome": "valid"},
                      {"method": "POST", "path": "/invoices", "outcome": "insufficient_scope"}]


def test_a_path_no_rule_matches_may_take_any_valid_key_when_configured(apps, tmp_path):
    app = apps(FORWARD_AUTH_UNMATCHED="any-key", TRUSTED_PROXIES="1")
    owner = add_user(app)
    with app.app_context():
        _, credential = verifiers.create("edge", actor=Actor.cli())
    _, token = new_key(app, owner, scopes=())
    client = app.test_client()
    proxy = {"X-Keyfob-Verifier": credential, **PROXY}
    assert ask(client, proxy, **{"X-Forwarded-Uri": "/anything"}, **bearer(token)).status_code == 200
    assert ask(client, proxy, **{"X-Forwarded-Uri": "/anything"}, **bearer("kf_nope")).status_code == 401


@pytest.mark.parametrize(("text", "message"), [
    ("GET /x", "line 1: write `METHODS PATH SCOPES`"),
    ("\n\nG?T /x read:data", "line 3: 'G?T' is not a list of methods"),
    ("GET x read:data", "line 1: 'x' is not a path pattern"),
    ("GET /x no:such", "line 1: unknown scope 'no:such' (not in API_SCOPES)"),
    ("GET /a**b read:data", "line 1: '/a**b' is not a path pattern"),
])
def test_a_bad_rules_file_stops_the_start_with_the_line_named(tmp_path, text, message):
    from app import create_app

    rules = tmp_path / "rules"
    rules.write_text(text)
    with pytest.raises(ConfigError) as refused:
        create_app(app_config(tmp_path, FORWARD_AUTH_RULES=str(rules)))
    assert f"FORWARD_AUTH_RULES={str(rules)!r} {message}" in str(refused.value)


def test_a_missing_rules_file_stops_the_start(tmp_path):
    from app import create_app

    with pytest.raises(ConfigError, match="FORWARD_AUTH_RULES=.* cannot be read"):
        create_app(app_config(tmp_path, FORWARD_AUTH_RULES=str(tmp_path / "nope")))
