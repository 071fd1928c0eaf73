"""htmx requests, told apart in one place, and the Vary header that keeps caches from mixing fragments and pages."""

from __future__ import annotations

from flask import request

# The same URL answers a page or a fragment depending on HX-Request: every response says so, so that no cache hands a
# fragment to a page view (app/security_headers.py adds it with the other headers every response carries).
VARY = "HX-Request"


def from_htmx() -> bool:
    """True when htmx sent the request at all (boosted or not): JavaScript is on, so hx-confirm has asked."""
    return request.headers.get("HX-Request") == "true"


def is_htmx() -> bool:
    """True when htmx asked for a fragment: not a history restore, and not a boosted link or form, which want the
    whole page (htmx swaps its body)."""
    headers = request.headers
    return (headers.get("HX-Request") == "true" and headers.get("HX-History-Restore-Request") != "true"
            and headers.get("HX-Boosted") != "true")
