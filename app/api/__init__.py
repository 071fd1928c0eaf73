"""The JSON API for client apps, at /api/v1, guarded by API keys (never by cookies, so no CSRF)."""

from flask import Blueprint

from app.extensions import csrf

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)

from app.api import key_routes, openapi, routes  # noqa: E402,F401  (routes attach themselves to bp)
