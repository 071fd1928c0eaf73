"""Security headers on every response: pages, fragments, JSON, errors and static files alike."""

from __future__ import annotations

from flask import Flask, request

from app.assets import CDN_SCRIPTS


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
    every_response = [(name, name.lower(), value) for name, value in security_headers()]

    @app.after_request
    def _set_headers(response):
        headers = response.headers
        # One pass over the response's few headers, instead of a search per header (setdefault): this runs on
        # every request, and the views rarely set any of these.
        present = {name.lower() for name, _ in headers}
        headers.extend([(name, value) for name, lower, value in every_response if lower not in present])
        if request.is_secure and "strict-transport-security" not in present:
            headers.add(*HSTS)
        return response
