"""htmx requests, told apart in one place, and the Vary header that keeps caches from mixing fragments and pages."""

from __future__ import annotations

from flask import Flask, request


def from_htmx() -> bool:
    """True when htmx sent the request at all (boosted or not): JavaScript is on, so hx-confirm has asked."""
    return request.headers.get("HX-Request") == "true"


def is_htmx() -> bool:
    """True when htmx asked for a fragment: not a history restore, and not a boosted link or form, which want the
    whole page (htmx swaps its body)."""
    headers = request.headers
    return (headers.get("HX-Request") == "true" and headers.get("HX-History-Restore-Request") != "true"
            and headers.get("HX-Boosted") != "true")


def init_htmx(app: Flask) -> None:
    @app.after_request
    def _vary_on_htmx(response):
        # The same URL answers a page or a fragment depending on HX-Request. Most responses have no Vary yet: set
        # it as it is, without parsing and rewriting a header set (response.vary) on every request.
        if "Vary" in response.headers:
            response.vary.add("HX-Request")
        else:
            response.headers["Vary"] = "HX-Request"
        return response
