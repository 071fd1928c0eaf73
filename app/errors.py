"""Error responses: an HTML page for browsers, the JSON error shape for /api/ and JSON clients.

The JSON shape is {"error": code, "message": text} plus "fields" when particular inputs are at fault.
"""

from __future__ import annotations

import re
import sys
import traceback
from pathlib import Path

from flask import Flask, current_app, g, jsonify, make_response, render_template, request
from flask_wtf.csrf import CSRFError
from markupsafe import escape
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException, InternalServerError

from app.counters import StoreUnavailable
from app.database import is_outage, roll_back
from app.extensions import db, login_manager
from app.keys.queries import KeyNotFound
from app.log_redaction import logged_path
from app.request_body import BodyError

RETRY_AFTER_SECONDS = 5

MESSAGES = {
    400: "The request could not be understood.",
    403: "You do not have access to this page.",
    404: "There is nothing here. Check the address, or go back to the start.",
    405: "This address does not accept that kind of request.",
    413: "The request is too large.",
    415: "This address does not accept a body of that type.",
    429: "Too many requests. Wait a moment and try again.",
    500: "Something went wrong on our side. It has been logged; please try again.",
    503: "Keyfob cannot reach its database right now. Please try again in a few seconds.",
}


# Addresses only programs call (the API, forward auth for reverse proxies): their errors are always JSON.
MACHINE_PATHS = ("/api/", "/forward-auth")


def wants_json() -> bool:
    if request.path.startswith(MACHINE_PATHS):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]


def error_code(status: int, name: str) -> str:
    return name.lower().replace(" ", "_").replace("'", "") if name else f"http_{status}"


def error_response(status: int, code: str, message: str, fields: dict | None = None, headers: dict | None = None):
    """The one error response: JSON for API clients, the error page for people."""
    if wants_json():
        body = {"error": code, "message": message}
        if fields:
            body["fields"] = fields
        response = jsonify(body)
    else:
        try:
            response = make_response(render_template("errors/error.html", status=status, message=message))
        except Exception:  # noqa: BLE001  (the error page itself failed: answer in plain HTML rather than not at all)
            log_unexpected(current_app, "the error page failed")
            response = make_response(f"<!doctype html><title>Keyfob</title><h1>{status}</h1><p>{escape(message)}</p>")
    response.status_code = status
    response.headers.update(headers or {})
    return response


APP_FOLDER = Path(__file__).resolve().parent
# Long runs of token characters are redacted from logged exception messages: an API key must never reach a log.
TOKEN_LIKE = re.compile(r"[A-Za-z0-9_\-]{24,}")


def describe(error: BaseException) -> str:
    """One line about an exception: its type, its message (tokens redacted, cut short) and where it was raised,
    in Keyfob's code and, when elsewhere, in the library that raised it."""
    frames = traceback.extract_tb(error.__traceback__)
    ours = [frame for frame in frames if frame.filename.startswith(str(APP_FOLDER))]

    def place(frame) -> str:
        path = Path(frame.filename)
        shown = path.relative_to(APP_FOLDER.parent) if path.is_relative_to(APP_FOLDER.parent) else path.name
        return f"{shown}:{frame.lineno} in {frame.name}"

    where = [place(frame) for frame in ours[-1:] + frames[-1:]]
    message = TOKEN_LIKE.sub("[redacted]", str(error))[:200]
    return f"{type(error).__name__}: {message} (at {' via '.join(dict.fromkeys(where)) or 'unknown'})"


def log_unexpected(app: Flask, what: str, error: BaseException | None = None) -> None:
    """Log an unexpected exception once, in one line with the request it broke (not 13 KB of traceback)."""
    error = error or sys.exc_info()[1]
    app.logger.error("%s: %s %s: %s", what, request.method, logged_path(request.path),
                     describe(error) if error else "")


def init_error_handlers(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        status = error.code or 500
        message = MESSAGES.get(status, error.description or "")
        response = error_response(status, error_code(status, error.name), message)
        # Keep headers the exception carries, such as Allow on 405 and Retry-After on 429.
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(InternalServerError)
    def _unexpected_error(error: InternalServerError):
        # Flask has logged the exception already (Keyfob.log_exception, one line); say no more than this.
        return error_response(500, "internal_error", MESSAGES[500])

    @app.errorhandler(KeyNotFound)
    def _no_such_key(error: KeyNotFound):
        # The API says which id; a page says what every 404 page says.
        return error_response(404, "not_found", str(error) if wants_json() else MESSAGES[404])

    @app.errorhandler(StoreUnavailable)
    def _store_unavailable(error: StoreUnavailable):
        return error_response(503, "service_unavailable", error.message,
                              headers={"Retry-After": str(error.retry_after_seconds)})

    @app.errorhandler(BodyError)
    def _body_error(error: BodyError):
        return error_response(error.status, error.code, error.message, error.fields)

    @app.errorhandler(CSRFError)
    def _csrf_error(error: CSRFError):
        return error_response(
            400, "csrf_failed",
            "This form has expired or did not come from Keyfob. Reload the page and try again.",
        )

    @app.errorhandler(SQLAlchemyError)
    def _database_error(error: SQLAlchemyError):
        roll_back(db.session)
        if is_outage(error):
            app.logger.warning("database unavailable: %s", error.__class__.__name__)
            # The page must not try to load the signed-in user from the database that just failed.
            g._login_user = login_manager.anonymous_user()
            return error_response(503, "service_unavailable", MESSAGES[503],
                                  headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        log_unexpected(app, "database error", error)
        return error_response(500, "internal_error", MESSAGES[500])
