"""Refuse, before any view sees it, what no page or operation can read: a NUL character in any query parameter or
form field, and a body that is not a form posted to a page.

No field Keyfob reads may hold a NUL, and PostgreSQL cannot even compare text with one: a search for "a\\x00b" would
fail in the database instead of finding nothing. Refusing it once here covers every search box and filter, present
and future. (JSON bodies are checked by their parser: app/request_body.py.)

Pages take forms (their htmx requests post forms too); JSON, XML or text posted to one is refused with 415 rather
than read as an empty form. The API's operations say what they take themselves (app/api/json_io.py).
"""

from __future__ import annotations

from flask import Flask, request

from app.errors import error_response
from app.fetch_metadata import COOKIELESS_BLUEPRINTS
from app.forms import SUBMIT_METHODS

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
MESSAGE = "The request holds a NUL character, which no field accepts."


def _holds_nul(values) -> bool:
    return any("\x00" in name or any("\x00" in value for value in found) for name, found in values.lists())


def has_nul() -> bool:
    query = request.environ.get("QUERY_STRING", "")
    # Only %00 decodes to NUL, so the common case costs one substring search (the API's hot path).
    if ("%00" in query or "\x00" in query) and _holds_nul(request.args):
        return True
    if request.mimetype not in FORM_TYPES:
        return False
    # Keep the raw body for a view that reads it as data (the API answers a form body with 415, not 400).
    request.get_data(cache=True, parse_form_data=False)
    return _holds_nul(request.form)


def page_body_refused() -> str | None:
    """Why a page will not read this body (a message for the 415), or None."""
    if request.method not in SUBMIT_METHODS or request.url_rule is None or request.blueprint in COOKIELESS_BLUEPRINTS:
        return None  # the API checks its own bodies, forward auth reads none; an unknown address gets its 404 or 405
    if request.mimetype in FORM_TYPES or not request.get_data(cache=True, parse_form_data=False).strip():
        return None
    sent = request.mimetype or "a body with no Content-Type"
    return (f"This page takes a form (application/x-www-form-urlencoded or multipart/form-data), not {sent}. "
            "Programs use the JSON API at /api/v1.")


def init_request_guard(app: Flask) -> None:
    @app.before_request
    def _refuse_unreadable():
        if has_nul():
            return error_response(400, "nul_character", MESSAGE)
        refused = page_body_refused()
        if refused:
            return error_response(415, "unsupported_media_type", refused)
        return None
