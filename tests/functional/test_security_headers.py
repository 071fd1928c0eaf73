"""Security headers and cookie flags on every kind of response."""

from __future__ import annotations

import pytest

from app.assets import HTMX
from tests.support import make_app

ROUTES = {
    "page": ("GET", "/login"),
    "redirect": ("GET", "/"),
    "json": ("GET", "/healthz"),
    "json error": ("GET", "/api/nothing-here"),
    "html error": ("GET", "/nothing-here"),
    "method not allowed": ("GET", "/logout"),
    "csrf failure": ("POST", "/login"),
    "static": ("GET", "/static/css/app.css"),
}


@pytest.mark.parametrize("kind", ROUTES)
def test_security_headers_on_every_response_type(client, kind):
    method, path = ROUTES[kind]
    with client.open(path, method=method) as response:
        check_headers(response)


def check_headers(response):
    csp = response.headers["Content-Security-Policy"]
    for directive in ("default-src 'self'", f"script-src 'self' {HTMX.url};", "object-src 'none'",
                      "base-uri 'none'", "frame-ancestors 'none'"):
        assert directive in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in response.headers  # plain HTTP here


def test_hsts_over_https(client):
    response = client.get("/login", base_url="https://keyfob.example")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=63072000")


def test_session_cookie_flags_in_development(tmp_path):
    app = make_app(tmp_path, KEYFOB_ENV="development")
    response = app.test_client().get("/login")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie


def test_session_cookie_is_secure_in_production(tmp_path):
    app = make_app(tmp_path, KEYFOB_ENV="production")
    response = app.test_client().get("/login", base_url="https://keyfob.example")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie


def test_htmx_is_pinned_with_sri(client):
    html = client.get("/login").get_data(as_text=True)
    assert (f'<script src="{HTMX.url}" integrity="{HTMX.integrity}" crossorigin="anonymous" defer>'
            in html)
    assert "@" + HTMX.version + "/" in HTMX.url
    assert "<script>" not in html, "no inline scripts: the CSP forbids them"
