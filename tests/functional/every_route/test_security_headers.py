"""Security headers and cookie flags on every kind of response."""

from __future__ import annotations

import pytest

from app.assets import HTMX
from tests.functional.keyhelpers import bearer
from tests.functional.route_matrix import check_security_headers

# kind: (who asks, method, path, headers); "admin" and "attacker" (an ordinary user) are signed in, "key" sends
# ada's API key. The abuse matrix checks the same headers on every route; these are the kinds of answer.
ROUTES = {
    "page": ("anonymous", "GET", "/login", {}),
    "signed-in page": ("attacker", "GET", "/keys/", {}),
    "htmx fragment": ("attacker", "GET", "/keys/?status=all", {"HX-Request": "true"}),
    "redirect": ("anonymous", "GET", "/", {}),
    "json": ("anonymous", "GET", "/healthz", {}),
    "api json": ("key", "GET", "/api/v1/api-keys", {}),
    "api refusal": ("anonymous", "GET", "/api/v1/whoami", {}),
    "json error": ("anonymous", "GET", "/api/nothing-here", {}),
    "html error": ("anonymous", "GET", "/nothing-here", {}),
    "forbidden page": ("attacker", "GET", "/admin/", {}),
    "method not allowed": ("anonymous", "GET", "/logout", {}),
    "csrf failure": ("anonymous", "POST", "/login", {}),
    "cross-site refusal": ("attacker", "POST", "/keys/new", {"Sec-Fetch-Site": "cross-site"}),
    "static": ("anonymous", "GET", "/static/css/app.css", {}),
    "csv export": ("admin", "GET", "/admin/audit.csv", {}),
    "metrics": ("admin", "GET", "/metrics", {}),
    "openapi document": ("anonymous", "GET", "/api/v1/openapi.json", {}),
}


@pytest.mark.parametrize("kind", ROUTES)
def test_security_headers_on_every_response_type(world, kind):
    who, method, path, headers = ROUTES[kind]
    client = world.app.test_client() if who in ("anonymous", "key") else world.client(who)
    if who == "key":
        headers = {**headers, **bearer(world.admin_token)}
    with client.open(path, method=method, headers=headers) as response:
        assert response.status_code < 500
        check_security_headers(response)


@pytest.mark.parametrize("path", ["/boom", "/api/v1/boom"])
def test_security_headers_on_an_internal_error(apps, path):
    app = apps(PROPAGATE_EXCEPTIONS=False)  # answer the 500 as production does, not raise it
    app.add_url_rule(path, "boom", lambda: 1 / 0)
    response = app.test_client().get(path)
    assert response.status_code == 500
    check_security_headers(response)


def test_hsts_over_https(client):
    response = client.get("/login", base_url="https://keyfob.example")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=63072000")


def test_session_cookie_flags_in_development(apps):
    app = apps(KEYFOB_ENV="development")
    response = app.test_client().get("/login")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie


def test_session_cookie_is_secure_in_production(apps):
    app = apps(KEYFOB_ENV="production")
    response = app.test_client().get("/login", base_url="https://keyfob.example")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie


def test_htmx_is_pinned_with_sri(client):
    html = client.get("/login").get_data(as_text=True)
    assert (f'<script src="{HTMX.url}" integrity="{HTMX.integrity}" crossorigin="anonymous" defer>'
            in html)
    assert "@" + HTMX.version + "/" in HTMX.url
    assert "<script>" not in html, "no inline scripts: the CSP forbids them"
