"""The sign-in face: register, log in, log out, forgotten passwords, and the account page."""

from flask import Blueprint

bp = Blueprint("auth", __name__)

from app.auth import password_reset, routes  # noqa: E402,F401  (routes attach themselves to bp)
