"""The sign-in face: register, log in, log out, forgotten passwords, the account page, and the expiry calendar
feed."""

from flask import Blueprint

bp = Blueprint("auth", __name__)

from app.auth import (  # noqa: E402,F401  (routes attach themselves to bp)
    calendar,
    confirmation,
    notifications,
    passkeys,
    password_reset,
    routes,
    two_factor,
)
