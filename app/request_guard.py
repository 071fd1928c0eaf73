"""Refuse a NUL character in any query parameter or form field, before any view sees it.

No field Keyfob reads may hold a NUL, and PostgreSQL cannot even compare text with one: a search for "a\\x00b" would
fail in the database instead of finding nothing. Refusing it once here covers every search box and filter, present
and future. (JSON bodies are checked field by field: the key core refuses control characters in names, descriptions
and reasons, and every other JSON field is parsed or matched in Python.)
"""

from __future__ import annotations

from flask import Flask, request

from app.errors import error_response

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


def init_request_guard(app: Flask) -> None:
    @app.before_request
    def _refuse_nul():
        if has_nul():
            return error_response(400, "nul_character", MESSAGE)
        return None
