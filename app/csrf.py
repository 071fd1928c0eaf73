"""CSRF tokens: Flask-WTF's check on every request that could change something, exempt blueprints aside.

Flask-WTF's own hook (WTF_CSRF_CHECK_DEFAULT, off in app/config.py) looks up the blueprint and the view's exemption
before it looks at the method, on every request; most requests are GETs, or calls to the API, which it exempts.
This hook asks the method first and then runs the same check, exemptions and all.
"""

from __future__ import annotations

from flask import Flask, request

from app.extensions import csrf


def init_csrf(app: Flask) -> None:
    """Bind Flask-WTF to the app and check the token on every POST, PUT, PATCH and DELETE (WTF_CSRF_METHODS)."""
    csrf.init_app(app)
    config = app.config

    @app.before_request
    def _check_csrf_token():
        if config["WTF_CSRF_ENABLED"] and request.method in config["WTF_CSRF_METHODS"]:
            csrf.protect(apply_exemptions=True)
