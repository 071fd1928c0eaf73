"""Helpers for the dashboard tests: a signed-in client, posting the real forms, and reading pages."""

from __future__ import annotations

import re

from tests.support import csrf_token_from

KEY = re.compile(r"\bkf_[0-9A-Za-z]{33}\b")
HTMX = {"HX-Request": "true"}


def page_text(response) -> str:
    return response.get_data(as_text=True)


def token_on(client, path: str = "/keys/new") -> str:
    return csrf_token_from(page_text(client.get(path)))


def create_form(client, **fields):
    """POST the create form as a browser would: a 30-day key named "ci deploy" with read:data unless told."""
    data = {"name": "ci deploy", "description": "", "scopes": ["read:data"], "allowed_ips": "", "rate_limit": "",
            "expiry": "30", "expires_on": "", **fields}
    return client.post("/keys/new", data={"csrf_token": token_on(client), **data})


def create_key(client, **fields) -> tuple[int, str]:
    """Create a key through the form; returns (id, plaintext shown once)."""
    response = create_form(client, **fields)
    assert response.status_code == 200, page_text(response)
    html = page_text(response)
    token = KEY.search(html).group(0)
    key_id = int(re.search(r'href="/keys/(\d+)"', html).group(1))
    return key_id, token


def post_action(client, path: str, headers: dict | None = None, **fields):
    """POST one of the small action forms (renew, disable, enable, revoke, rotate) with a valid CSRF token."""
    return client.post(path, data={"csrf_token": token_on(client, "/keys/"), **fields}, headers=headers or {})
