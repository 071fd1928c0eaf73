"""The checks every request passes before its view, in one hook and in this order: a change from another site (403,
app/fetch_metadata.py), the CSRF token (400, app/csrf.py), and what no page or operation can read: a NUL character
in any query parameter or form field (400), a body that is not a form posted to a page (415).

Most requests (API reads, forward auth, health probes, page views) are a GET with no body and no %00 in the query:
none of these checks can refuse one, and the hook sees that from three values of the WSGI environ.

No field Keyfob reads may hold a NUL, and PostgreSQL cannot even compare text with one: a search for "a\\x00b" would
fail in the database instead of finding nothing. Refusing it once here covers every search box and filter, present
and future. (JSON bodies are checked by their parser: app/request_body.py.)

Pages take forms (their htmx requests post forms too); JSON, XML or text posted to one is refused with 415 rather
than read as an empty form. The API's operations say what they take themselves (app/api/json_io.py).
"""

from __future__ import annotations

from flask import Flask, request

from app.csrf import check_csrf_token
from app.errors import error_response
from app.fetch_metadata import COOKIELESS_BLUEPRINTS, SAFE_METHODS, is_cross_site_change
from app.fetch_metadata import MESSAGE as CROSS_SITE_MESSAGE
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
    # The shortcut below is sound only while no safe method is one that submits or needs a token.
    assert not SAFE_METHODS & (SUBMIT_METHODS | set(app.config["WTF_CSRF_METHODS"]))

    @app.before_request
    def _refuse_unreadable():
        environ = request.environ
        query = environ.get("QUERY_STRING", "")
        if (environ["REQUEST_METHOD"] in SAFE_METHODS and not environ.get("CONTENT_TYPE")
                and "%00" not in query and "\x00" not in query):
            return None
        # The API and forward auth read no cookie: no cross-site or CSRF check applies to them (both exempt them).
        if request.blueprint not in COOKIELESS_BLUEPRINTS:
            if is_cross_site_change():  # first: a cross-site change is refused for that reason, token or not
                return error_response(403, "cross_site_request", CROSS_SITE_MESSAGE)
            check_csrf_token()
        if has_nul():
            return error_response(400, "nul_character", MESSAGE)
        refused = page_body_refused()
        if refused:
            return error_response(415, "unsupported_media_type", refused)
        return None
