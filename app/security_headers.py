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


def init_security_headers(app: Flask) -> None:
    policy = content_security_policy()

    @app.after_request
    def _set_headers(response):
        headers = response.headers
        headers.setdefault("Content-Security-Policy", policy)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=(), interest-cohort=()")
        if request.is_secure:
            headers.setdefault("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
        return response
