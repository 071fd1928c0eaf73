"""Issue 12's four classes of hostile input, each with its reproducer, and what the app answers instead of a 500.

1. A JSON body that is not an object, sent to a page or an unknown address: Flask-WTF read it as form data for every
   form, the layout's sign-out form included, so even the error page failed.
2. JSON nested 1,000 deep to an API operation: a RecursionError.
3. A lone surrogate in a JSON string reached the database driver; a revoke with one answered 500 and left the key
   valid.
4. A far date in the audit log's filter overflowed the date arithmetic.

And an exception nobody expected still gets Keyfob's own answer, with the security headers, logged in one line.
test_body_shapes.py throws every shape at every route; these pin the reported cases down.
"""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.dates import OUT_OF_RANGE
from app.request_body import MAX_BODY_BYTES, MAX_DEPTH, NUL_MESSAGE, SURROGATE_MESSAGE
from tests.functional.keyhelpers import bearer, new_key
from tests.functional.route_matrix import (
    API_KEY,
    COOKIE_FACES,
    UNSAFE,
    check_security_headers,
    csrf_token,
    routes,
    snapshot,
)

JSON = {"Content-Type": "application/json"}
NOT_OBJECTS = [b"[null, null]", b'"text"', b"123", b"[1,2]", b"true", b"NaN", b'{"name": "trunc', b"\xff\xfe",
               b"9" * 5000, b"[" * 1000 + b"]" * 1000]
DEEP = b'{"name": ' * 1000 + b'"x"' + b"}" * 1000
EXACTLY_THE_LIMIT = b'{"name": "' + b"x" * (MAX_BODY_BYTES - 12) + b'"}'


def _raw_json(**fields) -> bytes:
    """A JSON object as bytes; json.dumps writes a lone surrogate as the escape \\udXXX, as an attacker would."""
    return json.dumps(fields).encode()


# -- 1. JSON that is not an object, to pages and unknown addresses -----------------------------------------------------

@pytest.mark.parametrize("body", NOT_OBJECTS, ids=lambda body: body[:12].decode(errors="replace"))
@pytest.mark.parametrize(("method", "path", "status"), [
    ("POST", "/login", 400),  # no CSRF token: refused for that first
    ("PUT", "/nope", 404), ("DELETE", "/", 405), ("PATCH", "/keys/new", 405), ("POST", "/api/v1/nope", 404)])
def test_json_that_is_not_an_object_gets_the_addresses_own_answer(world, method, path, status, body):
    response = world.app.test_client().open(path, method=method, data=body, headers=JSON)
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    check_security_headers(response)
    if path.startswith("/api/"):
        assert response.get_json()["error"] == "not_found"
    else:
        assert "<h1" in response.get_data(as_text=True)  # the error page, drawn with its layout


@pytest.mark.parametrize("route", routes(*COOKIE_FACES, methods=UNSAFE))
def test_every_form_route_refuses_a_json_body_with_415_and_changes_nothing(world, route):
    """Signed in, with a valid CSRF token in the header: the view is reached, and refuses JSON for a form."""
    who = "admin" if route.face != "public" else "anonymous"
    client = world.client(who) if who == "admin" else world.app.test_client()
    token = csrf_token(client)
    path = route.path(**world.ids(route, whose="attacker"))
    before = snapshot(world.app)
    for body in (b"[null, null]", b'{"name": "x", "confirmed": "yes", "reason": "json"}'):
        response = client.open(path, method=route.method, data=body, headers={**JSON, "X-CSRFToken": token})
        assert response.status_code == 415, (body, response.get_data(as_text=True)[:500])
        assert "takes a form" in response.get_data(as_text=True)
        check_security_headers(response)
    assert snapshot(world.app) == before
    assert world.clients["admin"].get("/account").status_code == 200  # not even the sign-out form read it


# -- 2. deep JSON to the API -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("route", routes(API_KEY, methods=UNSAFE))
def test_json_nested_1000_deep_is_a_400_on_every_api_operation(world, route):
    key_id, _ = new_key(world.app, world.attacker, name="deep target")
    before = snapshot(world.app)
    response = world.app.test_client().open(route.path(key_id=key_id), method=route.method, data=DEEP,
                                            headers={**JSON, **bearer(world.attacker_token)})
    assert response.status_code == 400, response.get_data(as_text=True)[:500]
    assert response.get_json() == {"error": "malformed_json",
                                   "message": f"The body is nested more than {MAX_DEPTH} deep."}
    assert snapshot(world.app) == before


# -- 3. text that cannot be stored -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "suffix", "field"), [
    ("post", "", "name"), ("post", "", "description"), ("put", "/{key}", "name"), ("put", "/{key}", "description"),
    ("patch", "/{key}", "name"), ("patch", "/{key}", "description"), ("delete", "/{key}", "reason"),
    ("delete", "", "reason")])
@pytest.mark.parametrize(("value", "message"), [("\ud800", SURROGATE_MESSAGE), ("ok \udfff", SURROGATE_MESSAGE),
                                                ("a\x00b", NUL_MESSAGE)])
def test_text_that_cannot_be_stored_is_a_422_naming_the_field(world, method, suffix, field, value, message):
    key_id, token = new_key(world.app, world.attacker, name="unstorable target", scopes=("keys:write", "read:data"))
    body = {"name": "named", "description": "", "scopes": [], "allowed_ips": [], "rate_limit": None}
    body = {"post": body, "put": body, "patch": {}, "delete": {"id": key_id} if not suffix else {}}[method]
    before = snapshot(world.app)
    response = world.app.test_client().open("/api/v1/api-keys" + suffix.format(key=key_id), method=method.upper(),
                                            data=_raw_json(**{**body, field: value}),
                                            headers={**JSON, **bearer(world.attacker_token)})
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.get_json()["fields"] == {field: message}
    assert snapshot(world.app) == before
    assert world.app.test_client().get("/api/v1/whoami", headers=bearer(token)).status_code == 200


def test_the_reported_revoke_with_a_surrogate_reason_refuses_and_the_key_stays_as_it_was(world):
    """DELETE /api/v1/api-keys/ID with {"reason": "\\udfff"} answered 500 and left the key valid: now a 422 that
    says why, nothing written, and the key works until a revoke that can be stored."""
    key_id, token = new_key(world.app, world.attacker, name="revoke target")
    before = snapshot(world.app)
    client = world.app.test_client()
    response = client.delete(f"/api/v1/api-keys/{key_id}", data=b'{"reason": "\\udfff"}',
                             headers={**JSON, **bearer(world.attacker_token)})
    assert response.status_code == 422
    assert response.get_json()["fields"] == {"reason": SURROGATE_MESSAGE}
    assert snapshot(world.app) == before
    assert client.get("/api/v1/whoami", headers=bearer(token)).status_code == 200
    response = client.delete(f"/api/v1/api-keys/{key_id}", json={"reason": "leaked"},
                             headers=bearer(world.attacker_token))
    assert response.status_code == 200
    assert client.get("/api/v1/whoami", headers=bearer(token)).status_code == 401


# Reasons of every kind: any text (lone surrogates and control characters included), the wrong types, over-long.
REASONS = st.one_of(st.text(max_size=30), st.text(min_size=490, max_size=520),
                    st.sampled_from(["\ud800", "\x00", "a\u202eb", "", " ", "\ufeff"]),
                    st.none(), st.integers(), st.booleans(), st.lists(st.text(max_size=3), max_size=2))


@settings(max_examples=30, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(reason=REASONS, by_body=st.booleans())
def test_a_revoke_with_any_reason_either_revokes_or_refuses_and_changes_nothing(world, reason, by_body):
    """After a 200 the key is refused at once; after a 422 not one row changed and the key still works. Never
    anything else."""
    key_id, token = new_key(world.app, world.attacker, name="revoke target")
    client = world.app.test_client()
    before = snapshot(world.app)
    path, body = ("/api/v1/api-keys", {"id": key_id, "reason": reason}) if by_body else \
        (f"/api/v1/api-keys/{key_id}", {"reason": reason})
    response = client.delete(path, data=_raw_json(**body), headers={**JSON, **bearer(world.attacker_token)})
    whoami = client.get("/api/v1/whoami", headers=bearer(token)).status_code
    if response.status_code == 200:
        assert whoami == 401
    else:
        assert response.status_code == 422, response.get_data(as_text=True)  # a reason no key may be revoked with
        assert set(response.get_json()) >= {"error", "message"}
        assert snapshot(world.app) == before
        assert whoami == 200


# -- 4. far dates ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("query", ["until=9999-12-31", "since=9999-12-31", "since=0001-01-01", "until=0001-01-01"])
def test_a_far_date_in_the_audit_filter_is_an_error_on_the_field(world, query):
    admin = world.clients["admin"]
    page = admin.get(f"/admin/audit?{query}")
    assert page.status_code == 200
    assert OUT_OF_RANGE in page.get_data(as_text=True)
    export = admin.get(f"/admin/audit.csv?{query}")
    assert export.status_code == 400
    assert OUT_OF_RANGE in export.get_data(as_text=True)
    check_security_headers(export)


def test_an_audit_export_with_a_good_date_still_exports(world):
    export = world.clients["admin"].get("/admin/audit.csv?since=2020-01-01&until=9998-12-31")
    assert export.status_code == 200
    assert export.get_data(as_text=True).startswith("time,event,actor")


@pytest.mark.parametrize("moment", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "9999-12-31T00:00:00Z"])
def test_a_far_expiry_through_the_api_is_a_422_naming_it(world, moment):
    before = snapshot(world.app)
    response = world.app.test_client().post("/api/v1/api-keys", json={"name": "far", "expires_at": moment},
                                            headers=bearer(world.attacker_token))
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.get_json()["fields"] == {"expires_at": OUT_OF_RANGE}
    assert snapshot(world.app) == before


def test_a_far_expiry_date_on_the_dashboard_is_an_error_on_the_field(world):
    client = world.clients["admin"]
    before = snapshot(world.app)
    response = client.post("/keys/new", data={"csrf_token": csrf_token(client), "name": "far", "scopes": ["read:data"],
                                              "expiry": "date", "expires_on": "9999-12-31"})
    assert response.status_code == 422, response.get_data(as_text=True)[:500]
    assert OUT_OF_RANGE in response.get_data(as_text=True)
    assert snapshot(world.app) == before


# -- bodies past the size limit ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/api/v1/api-keys", "/keys/new", "/login"])
def test_a_body_past_a_megabyte_is_a_413(world, path):
    client = world.clients["admin"]
    headers = {"X-CSRFToken": csrf_token(client), **bearer(world.admin_token)}
    response = client.post(path, data={"name": "x" * (1024 * 1024)}, headers=headers)
    assert response.status_code == 413
    check_security_headers(response)


# -- the unexpected ----------------------------------------------------------------------------------------------------

@pytest.fixture
def fragile_app(apps):
    """An app that answers an exception as production does (the test configuration re-raises it), with a page
    and an API operation that fail in a way no handler expects."""
    app = apps(PROPAGATE_EXCEPTIONS=False)

    def broken():
        raise LookupError("kf_" + "S" * 40 + " was in the message")

    app.view_functions["auth.login"] = broken
    app.view_functions["api.openapi_document"] = broken
    return app


def test_an_unexpected_exception_gets_keyfobs_own_answer_logged_in_one_line(fragile_app, caplog):
    client = fragile_app.test_client()
    with caplog.at_level(logging.ERROR, logger=fragile_app.logger.name):
        page = client.get("/login")
        api = client.get("/api/v1/openapi.json")
    assert page.status_code == 500
    assert "Something went wrong on our side" in page.get_data(as_text=True)
    assert api.status_code == 500
    assert api.get_json() == {"error": "internal_error",
                              "message": "Something went wrong on our side. It has been logged; please try again."}
    for response in (page, api):
        check_security_headers(response)
    records = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(records) == 2  # once per request
    for record in records:
        line = record.getMessage()
        assert "\n" not in line and record.exc_info is None and len(line) < 600
        assert "LookupError" in line and "test_hostile_bodies.py" in line
        assert "S" * 24 not in line  # a long token-like run is redacted: it could be a key
    assert "GET /login" in records[0].getMessage()


def test_an_error_page_that_fails_to_draw_still_answers_with_the_headers(fragile_app, caplog, monkeypatch):
    def no_templates(*args, **kwargs):
        raise RuntimeError("the template folder is gone")

    monkeypatch.setattr("app.errors.render_template", no_templates)
    with caplog.at_level(logging.ERROR, logger=fragile_app.logger.name):
        response = fragile_app.test_client().get("/nope")
    assert response.status_code == 404
    assert "There is nothing here" in response.get_data(as_text=True)
    check_security_headers(response)
    assert any("the error page failed" in record.getMessage() for record in caplog.records)


# -- the reproducers, through gunicorn ------------------------------------------------------------------------------

def _raw(base: str, method: str, path: str, body: bytes, headers: dict, *, chunked: bool = False):
    """One request as bytes on the wire (http.client), chunked when asked: no client library tidies it up."""
    import http.client
    from urllib.parse import urlsplit

    address = urlsplit(base)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    try:
        connection.request(method, path, body=iter([body]) if chunked else body, headers=headers,
                           encode_chunked=chunked)
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def test_the_reported_requests_through_gunicorn_get_4xx_with_the_headers_and_log_no_traceback(tmp_path):
    from tests.functional.served import gunicorn_with_a_key, http

    with gunicorn_with_a_key(tmp_path, "--scope", "keys:read", "--scope", "keys:write") as served:
        key = bearer(served.token)
        made = http("POST", f"{served.base}/api/v1/api-keys", key, {"name": "to revoke", "scopes": []})
        assert made.status == 201
        target, target_token = made.json()["key"]["id"], made.json()["secret"]
        cases = [
            ("POST", "/login", b"[null, null]", JSON, 400, False),
            ("PUT", "/nope", b'"text"', JSON, 404, False),
            ("DELETE", "/", b"123", JSON, 405, False),
            ("POST", "/register", b"\xff\xfe[", JSON, 400, False),
            ("POST", "/api/v1/api-keys", DEEP, {**JSON, **key}, 400, False),
            ("POST", "/api/v1/api-keys", b"9" * 5000, {**JSON, **key}, 400, True),
            ("DELETE", f"/api/v1/api-keys/{target}", b'{"reason": "\\udfff"}', {**JSON, **key}, 422, False),
            ("POST", "/api/v1/api-keys", b'{"name": "' + b"x" * (2 << 20) + b'"}', {**JSON, **key}, 413, True),
            ("POST", "/login", b"email=" + b"x" * (2 << 20), {"Content-Type": "application/x-www-form-urlencoded"},
             413, True),
            # Exactly the limit is not too large, chunked or not: refused for the over-long name instead.
            ("POST", "/api/v1/api-keys", EXACTLY_THE_LIMIT, {**JSON, **key}, 422, False),
            ("POST", "/api/v1/api-keys", EXACTLY_THE_LIMIT, {**JSON, **key}, 422, True),
        ]
        for method, path, body, headers, status, chunked in cases:
            got, answer_headers, _ = _raw(served.base, method, path, body, headers, chunked=chunked)
            assert got == status, (method, path, body[:20], got, _[:300])
            assert "frame-ancestors 'none'" in answer_headers["Content-Security-Policy"], (method, path)
            assert answer_headers["X-Content-Type-Options"] == "nosniff"
        assert http("GET", f"{served.base}/api/v1/whoami", bearer(target_token)).status == 200
        log = served.log.read_text(errors="replace")
    assert "Traceback" not in log and "ERROR" not in log, log[-3000:]
