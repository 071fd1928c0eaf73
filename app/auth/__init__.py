"""The sign-in face: register, log in, log out, and the account page."""

from flask import Blueprint

bp = Blueprint("auth", __name__)

from app.auth import routes, two_factor  # noqa: E402,F401  (routes attach themselves to bp)
