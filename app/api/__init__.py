"""The JSON API at /api/v1: client apps manage keys with an API key, services check keys with a verifier credential
(POST /keys/verify). Never cookies, so no CSRF."""

from flask import Blueprint

from app.extensions import csrf

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)

from app.api import key_routes, openapi, routes, verify_routes  # noqa: E402,F401  (routes attach themselves to bp)
