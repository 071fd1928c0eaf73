"""The expiry calendar's pages: the feed at its secret URL, and the account page's piece that shows and resets it.

The feed is read by calendar apps, which have no session: the token in the URL is the only credential, so the view
reads no cookie and starts no session, and every token that does not open a feed (malformed, forged, signed for
something else, reset, or a deactivated user's) gets the same 404. The URL is a secret, so the answer that shows it
is never cached, and logs write its path without the token (app/log_redaction.py).
"""

from __future__ import annotations

from flask import Response, after_this_request, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from app.accounts import service
from app.actors import signed_in_person
from app.auth import bp
from app.database import utcnow
from app.htmx import is_htmx
from app.keys.calendar import CONTENT_TYPE, expiry_calendar

FEED_CACHE_CONTROL = "private, max-age=300"
NOT_FOUND = ("This calendar link does not work: it was reset, or it was never a Keyfob calendar link. "
             "Your current link is on your Keyfob account page.\n")


def _site_url() -> str:
    """Where links start: PUBLIC_BASE_URL when it is set (as in mail), else the address this request came to."""
    return current_app.config["PUBLIC_BASE_URL"] or request.host_url.rstrip("/")


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.app_template_global()
def calendar_feed_url() -> str | None:
    """The signed-in person's calendar URL for a page to show (None before they make one). The answer that shows it
    is sent with `Cache-Control: no-store`, whichever view drew the page: the URL is a secret."""
    token = service.calendar_url_token(current_user)
    if token is None:
        return None
    after_this_request(_no_store)
    return _site_url() + url_for("auth.calendar_feed", token=token)


@bp.get("/calendar/<token>.ics")
def calendar_feed(token: str):
    user = service.user_for_calendar_token(token)
    if user is None:
        return _no_store(Response(NOT_FOUND, 404, content_type="text/plain; charset=utf-8"))
    body = expiry_calendar(user, utcnow(), _site_url())
    response = Response(body, content_type=CONTENT_TYPE)
    # Private: the feed must not sit in a shared cache. Five minutes spares calendar apps that honour HTTP caching
    # (most poll hourly anyway) and still shows a renewal soon; a reset ends the URL at once on this side.
    response.headers["Cache-Control"] = FEED_CACHE_CONTROL
    return response


@bp.post("/account/calendar")
@login_required
def reset_calendar_link():
    created = current_user.calendar_nonce is None
    service.reset_calendar_link(current_user, actor=signed_in_person())
    flash("Your calendar link is ready: subscribe to it in your calendar app." if created else
          "You have a new calendar link. The old one stopped working; subscribe to the new one.", "success")
    if is_htmx():  # the fragment, and the message out of band
        return render_template("account/_calendar.html") + render_template("_flashes.html", oob=True)
    return redirect(url_for("auth.account"))
