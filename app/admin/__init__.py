"""The admin face: usage across every user, alerts, key health, users and the audit log, at /admin."""

from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")

from app.admin import routes  # noqa: E402,F401  (routes attach themselves to bp)
