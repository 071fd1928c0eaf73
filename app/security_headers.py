"""Security headers on every response: pages, fragments, JSON, errors and static files alike (and the Vary header
htmx needs, in the same pass)."""

from __future__ import annotations

from flask import Flask, request
from werkzeug.datastructures import Headers

from app.assets import CDN_SCRIPTS
from app.htmx import VARY as HTMX_VARY


def content_security_policy() -> str:
    # Each CDN script by its full URL, not its origin: jsDelivr serves every npm package, and an origin-wide
    # source would let an injected tag load any of them.
    script_urls = " ".join(sorted({script.url for script in CDN_SCRIPTS}))
    return "; ".join((
        "default-src 'self'",
        f"script-src 'self' {script_urls}",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ))


def security_headers() -> list[tuple[str, str]]:
    """The headers every response carries, unless its view set one of them itself."""
    return [
        ("Content-Security-Policy", content_security_policy()),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "same-origin"),
        ("X-Frame-Options", "DENY"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
        ("Permissions-Policy", "camera=(), microphone=(), geolocation=(), interest-cohort=()"),
    ]


HSTS = ("Strict-Transport-Security", "max-age=63072000; includeSubDomains")


def init_security_headers(app: Flask) -> None:
    """Every response gets the security headers (those its view did not set itself), HSTS over HTTPS, and
    `Vary: HX-Request` (app/htmx.py), in one pass over its few headers: this runs on every request."""
    every_response = [(name, name.lower(), value) for name, value in security_headers()]
    # werkzeug checks a header's value each time one is added; these are checked once, here, and then appended to
    # the response's header list as they are (the list a Headers object keeps: ~8 µs a request less).
    Headers([(name, value) for name, _, value in every_response] + [HSTS, ("Vary", HTMX_VARY)])

    @app.after_request
    def _set_headers(response):
        headers = response.headers
        listed = headers._list
        present = {name.lower() for name, _ in listed}
        listed.extend([(name, value) for name, lower, value in every_response if lower not in present])
        if "vary" in present:
            response.vary.add(HTMX_VARY)
        else:
            listed.append(("Vary", HTMX_VARY))
        if "strict-transport-security" not in present and request.is_secure:
            listed.append(HSTS)
        return response
