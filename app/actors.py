"""Who acts, as the web faces know it: the signed-in person, or the key a request came with, each with the request's
IP and user agent. The core writes the Actor into every audit event it records."""

from __future__ import annotations

from flask import request
from flask_login import current_user

from app.audit.service import Actor


def signed_in_person() -> Actor:
    return Actor.user(current_user, request.remote_addr, request.user_agent.string)


def requesting_key(key) -> Actor:
    """A key acting through the API acts for its owner."""
    return Actor.key(key, request.remote_addr, request.user_agent.string)
