"""CSRF tokens: Flask-WTF's check on every request that could change something, exempt blueprints aside.

Flask-WTF's own hook (WTF_CSRF_CHECK_DEFAULT, off in app/config.py) looks up the blueprint and the view's exemption
before it looks at the method, on every request; most requests are GETs, or calls to the API, which it exempts.
check_csrf_token() asks the method first and then runs the same check, exemptions and all; app/request_guard.py calls
it in its place among the checks every request passes.
"""

from __future__ import annotations

from flask import Flask, current_app, request

from app.extensions import csrf


def init_csrf(app: Flask) -> None:
    """Bind Flask-WTF to the app (its tokens in forms and templates)."""
    csrf.init_app(app)


def check_csrf_token() -> None:
    """Raise CSRFError (400) for a POST, PUT, PATCH or DELETE (WTF_CSRF_METHODS) to a route that is not exempt,
    without a valid token."""
    config = current_app.config
    if config["WTF_CSRF_ENABLED"] and request.method in config["WTF_CSRF_METHODS"]:
        csrf.protect(apply_exemptions=True)
