"""The signed session cookie, as Flask keeps it, without the per-request work a request without a session needs.

Flask's SecureCookieSessionInterface builds its signing serializer on every request and reads seven cookie settings
in save_session, even when no cookie came in and nothing was stored: most requests (the API, forward auth, health
probes) carry no session at all. This interface answers those at once and builds the serializer once per secret key
(and fallbacks) per app; what it stores, signs and sends is Flask's.
"""

from __future__ import annotations

from flask import Flask
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer


class KeyfobSessionInterface(SecureCookieSessionInterface):
    """Flask's cookie session: a request without the cookie opens an empty session without touching the serializer,
    and an empty session nothing changed is saved without reading the cookie settings."""

    def __init__(self) -> None:
        self._keys: tuple | None = None
        self._serializer: URLSafeTimedSerializer | None = None

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        # Built again whenever the keys change (a test setting another SECRET_KEY on its app).
        keys = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        if keys != self._keys:
            self._keys, self._serializer = keys, super().get_signing_serializer(app)
        return self._serializer

    def open_session(self, app: Flask, request) -> SecureCookieSession | None:
        # No Cookie header at all (the API, forward auth, probes): nothing to parse.
        if app.secret_key and ("HTTP_COOKIE" not in request.environ
                               or not request.cookies.get(self.get_cookie_name(app))):
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session, response) -> None:
        if not session and not session.modified:
            # What Flask does with an empty session nothing changed (no cookie to set or delete), without reading
            # the cookie's seven settings first: a response that read the session varies on Cookie.
            if session.accessed:
                response.vary.add("Cookie")
            return
        super().save_session(app, session, response)
