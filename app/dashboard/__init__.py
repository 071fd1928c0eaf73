"""The self-service face: people manage their own keys in server-rendered pages, enhanced with htmx."""

from flask import Blueprint

bp = Blueprint("dashboard", __name__, url_prefix="/keys")

from app.dashboard import routes  # noqa: E402,F401  (routes attach themselves to bp)
