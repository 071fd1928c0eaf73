"""The body-shape fuzzer: every rule in the URL map (read from the app, so a new route is covered without editing this
file) and a few addresses that match none, with every method, sent bodies of every shape an attacker or a broken
client might send: JSON that is not an object, too deep, with huge numbers, NaN, lone surrogates or NUL; bytes that
are not UTF-8; forms with repeated, oversized or undecodable fields; multipart; wrong, missing and lying content
types; empty bodies; a body past the size limit. Each goes anonymously (with the session's own CSRF token, so it
gets past CSRF to the view), signed in as an admin (with a valid CSRF token), with a valid key, and as a service
with its verifier credential.

Every answer must be Keyfob's own: never a 5xx (no 503 can be deliberate here: every store is up), the security
headers on all of them, the JSON error shape from the API, and nothing logged at ERROR. test_fuzz_inputs.py fuzzes
the *values* of well-formed requests; this fuzzes their *shape*.
"""

from __future__ import annotations

import json
import logging

import pytest

from app.api.json_io import READ_ONLY
from tests.functional.keyhelpers import bearer, new_key
from tests.functional.route_matrix import FORM, ROUTES, Route, check_security_headers, csrf_token, signed_in

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
JSON = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"
BOUNDARY = "fuzzboundary"
# Every field any form or API operation reads, and those the API refuses to set.
FIELDS = sorted({*FORM, *READ_ONLY, "csrf_token", "id", "reason", "grace", "expires_in_days", "expires_at",
                 "action", "q", "next"})


def _deep(depth: int, opening: str, closing: str, inner: str = "1") -> bytes:
    return (opening * depth + inner + closing * depth).encode()


def _multipart(parts: list[tuple[str, bytes, str | None]]) -> bytes:
    chunks = []
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        chunks.append(f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n")
    return b"".join(chunks) + f"--{BOUNDARY}--\r\n".encode()


def _every_field(value) -> bytes:
    return json.dumps({field: value for field in FIELDS}).encode()


# (name, Content-Type or None, body). The names show in a failure.
SHAPES = [
    # JSON that parses but is not an object, each type of it
    ("json null", JSON, b"null"),
    ("json true", JSON, b"true"),
    ("json integer", JSON, b"123"),
    ("json negative float", JSON, b"-1.5"),
    ("json string", JSON, b'"text"'),
    ("json empty list", JSON, b"[]"),
    ("json list of numbers", JSON, b"[1, 2]"),
    ("json list of nulls", JSON, b"[null, null]"),
    ("json list of pairs", JSON, b'[["name", "x"], ["scopes", "read:data"]]'),
    # JSON that a strict parser refuses
    ("NaN", JSON, b"NaN"),
    ("-Infinity in an object", JSON, b'{"rate_limit": -Infinity}'),
    ("1e999", JSON, b'{"rate_limit": 1e999, "expires_in_days": 1e999}'),
    ("truncated", JSON, b'{"name": "a'),
    ("trailing garbage", JSON, b'{"name": "a"} {"name": "b"}'),
    ("5,000-digit integer", JSON, b'{"rate_limit": ' + b"9" * 5000 + b"}"),
    ("5,000-digit bare integer", JSON, b"9" * 5000),
    ("list nested 1,000 deep", JSON, _deep(1000, "[", "]")),
    ("object nested 1,000 deep", JSON, _deep(1000, '{"name": ', "}")),
    ("list nested 100,000 deep", JSON, _deep(100_000, "[", "]")),
    ("object nested 40 deep", JSON, _deep(40, '{"name": ', "}", '"x"')),
    ("invalid UTF-8", JSON, b'{"name": "\xff\xfe\xc3("}'),
    ("UTF-8 byte order mark", JSON, b'\xef\xbb\xbf{"name": "bom"}'),
    ("UTF-16", JSON, '{"name": "utf16"}'.encode("utf-16")),
    ("lone surrogates", JSON, b'{"name": "\\ud800", "description": "\\udfff", "reason": "\\ud83d", '
                              b'"scopes": ["\\udc00"], "id": 1, "grace": "\\ud800"}'),
    ("surrogate in a field name", JSON, b'{"\\ud800": 1}'),
    ("NUL in strings", JSON, b'{"name": "a\\u0000b", "reason": "\\u0000", "scopes": ["read:data\\u0000"]}'),
    ("over-long strings", JSON, json.dumps({field: "x" * 20_000 for field in FIELDS}).encode()),
    ("repeated fields", JSON, b'{"name": "first", "name": "second", "reason": "a", "reason": "b"}'),
    ("every field an object", JSON, _every_field({"nested": [1, {"deeper": None}]})),
    ("every field a list", JSON, _every_field([1, "two", None])),
    ("every field null", JSON, _every_field(None)),
    ("every field a huge number", JSON, _every_field(10**30)),
    ("every field a negative number", JSON, _every_field(-(2**63) - 1)),
    ("every field a float", JSON, _every_field(1.5e308)),
    ("every field a boolean", JSON, _every_field(True)),
    ("every field a far date", JSON, _every_field("9999-12-31T23:59:59-23:59")),
    ("every field an early date", JSON, _every_field("0001-01-01T00:00:00+23:59")),
    ("a form body said to be JSON", JSON, b"name=x&scopes=read%3Adata"),
    ("JSON with a charset", "application/json; charset=utf-16", '{"name": "x"}'.encode("utf-16")),
    ("JSON said to be +json", "application/problem+json", b"[1]"),
    # content types that lie or are missing
    ("JSON with no content type", None, b'{"name": "x"}'),
    ("JSON as text/plain", "text/plain", b'{"name": "x"}'),
    ("XML", "application/xml", b"<key><name>x</name></key>"),
    ("an empty body said to be JSON", JSON, b""),
    ("whitespace said to be JSON", JSON, b"  \r\n "),
    ("an empty body", None, b""),
    ("an empty form", FORM_TYPE, b""),
    # forms
    ("form with undecodable bytes", FORM_TYPE, b"name=%ff%fe%c3%28&%zz=%zz&scopes=%80"),
    ("form with raw bytes", FORM_TYPE, b"name=\xff\xfe&description=\xc3\x28"),
    ("form with NUL", FORM_TYPE, b"name=a%00b"),
    ("form with repeated fields", FORM_TYPE, b"name=a&name=b&expiry=7&expiry=never&grace=none&grace=7d"
                                              b"&rate_limit=1&rate_limit=x&expires_on=2027-01-01&expires_on=x"),
    ("form with every field over-long", FORM_TYPE,
     "&".join(f"{field}={'9' * 20_000}" for field in FIELDS).encode()),
    ("form with far dates", FORM_TYPE, b"expiry=date&expires_on=9999-12-31&since=0001-01-01&until=9999-12-31"),
    ("form with JSON in a field", FORM_TYPE, b"name=%5B1%2C2%5D&scopes=%7B%7D"),
    ("form said to be JSON-ish", FORM_TYPE + "; charset=utf-16", b"name=x"),
    ("multipart with a file for each field", f"multipart/form-data; boundary={BOUNDARY}",
     _multipart([(field, b"\x00\xff file body", "evil.bin") for field in ("name", "scopes", "reason", "email")])),
    ("multipart with text fields", f"multipart/form-data; boundary={BOUNDARY}",
     _multipart([("name", "ünïcode".encode(), None), ("scopes", b"read:data", None), ("name", b"again", None)])),
    ("multipart with no boundary", "multipart/form-data", b"--x\r\nnot really\r\n"),
    ("multipart cut short", f"multipart/form-data; boundary={BOUNDARY}",
     f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="name"\r\n\r\nunfinished'.encode()),
    ("a body past the size limit", JSON, b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'"}'),
]
# The shapes that broke even the error pages (issue 12): sent with every method a rule does not take as well.
EVERY_METHOD = {"json null", "json string", "json list of nulls", "NaN", "truncated", "list nested 1,000 deep",
                "invalid UTF-8", "5,000-digit bare integer", "a body past the size limit", "form with raw bytes",
                "multipart with a file for each field"}
# Addresses no rule serves, or serves no row for: their error pages must hold up as well.
UNKNOWN = ("/nope", "/api/v1/nope", "/api/v1/api-keys/999999999", "/keys/999999999", "/admin/users/999999999",
           "/static/..%2f..%2fetc%2fpasswd")


def _targets() -> list:
    """pytest params: (path template, methods the rule takes, route or None), one per rule and choice."""
    rules: dict[tuple, tuple[Route, set]] = {}
    for route in ROUTES:
        rules.setdefault((route.rule, route.choices), (route, set()))[1].add(route.method)
    params = [pytest.param(route, frozenset(methods), id=str(route).split(" ", 1)[1])
              for route, methods in rules.values()]
    params += [pytest.param(path, frozenset(), id=path) for path in UNKNOWN]
    return params


def _identities(world):
    anonymous = world.client("anonymous")
    return {
        "anonymous": (anonymous, {"X-CSRFToken": csrf_token(anonymous)}),
        "admin": (world.clients["admin"], {"X-CSRFToken": csrf_token(world.clients["admin"])}),
        "key": (world.app.test_client(), bearer(world.admin_token)),
        # A service: its credential both as the verification API reads it and as forward auth does.
        "verifier": (world.app.test_client(), {**bearer(world.verifier_credential),
                                               "X-Keyfob-Verifier": world.verifier_credential}),
    }


def _check(response, path: str, label: str) -> None:
    body = response.get_data()
    response.close()
    status = response.status_code
    assert status < 500, f"{label}: {status}\n{body[:1500].decode(errors='replace')}"
    check_security_headers(response)
    if path.startswith("/api/") and status >= 400:
        error = json.loads(body)
        assert isinstance(error["error"], str) and isinstance(error["message"], str), label


@pytest.mark.parametrize(("target", "methods"), _targets())
def test_no_body_shape_gets_a_5xx_on_any_route(world, target, methods, caplog):
    # The requests aim at a key of the admin's, so the signed-in admin and the admin's key reach the views (not a
    # 404); a new one for each rule, in case a shape changed the last.
    key_id, _ = new_key(world.app, world.admin, name="fuzz target", scopes=("read:data",), days=30)
    ids = {"key_id": key_id, "alert_id": world.alert, "user_id": world.victim, "verifier_id": world.verifier,
           "passkey_id": world.passkeys["admin"]}
    path = target if isinstance(target, str) else target.path(**ids)
    caplog.set_level(logging.ERROR)
    for who, (client, headers) in _identities(world).items():
        for method in METHODS:
            for name, content_type, body in SHAPES:
                if method not in methods and name not in EVERY_METHOD:
                    continue
                sent = {**headers, **({"Content-Type": content_type} if content_type else {})}
                if isinstance(target, Route) and target.endpoint == "auth.logout" and who == "admin":
                    client = signed_in(world.app, "mallory@example.com")  # a logout ends all her sessions
                    sent["X-CSRFToken"] = csrf_token(client)
                response = client.open(path, method=method, data=body, headers=sent)
                _check(response, path, f"{method} {path} {name!r} as {who}")
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR], caplog.text[:3000]
    # The admin is still signed in, and the admin's key still works: no shape broke a session or a key.
    assert world.clients["admin"].get("/account").status_code == 200
    assert world.app.test_client().get("/api/v1/whoami", headers=bearer(world.admin_token)).status_code == 200
