"""`Authorization: Bearer <token>`, read one way for every face that takes a token (API keys, the metrics token)."""

from __future__ import annotations

from flask import request


def bearer_token() -> str | None:
    """The token of an `Authorization: Bearer` header, or None when there is none."""
    scheme, _, token = request.environ.get("HTTP_AUTHORIZATION", "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token
