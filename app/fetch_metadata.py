"""Refuse cross-site requests that would change something on the pages people sign in to.

Browsers send `Sec-Fetch-Site` with every request (Fetch Metadata); a form or script on another site posting here
arrives with `Sec-Fetch-Site: cross-site`. The session cookie's SameSite=Lax and the CSRF token already stop such a
request; this third layer refuses it before either is needed, with a clear answer, whatever the browser does with
cookies and whatever token the request carries. Safe methods (GET, HEAD, OPTIONS) stay open: links from other sites
must work.

The JSON API is exempt: it is authenticated by an `Authorization: Bearer` key, never by a cookie, so a cross-site
request gains nothing the key does not already give, and browser apps on other origins may call it.
"""

from __future__ import annotations

from flask import request

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Blueprints whose routes read no cookie (the same ones CSRF protection exempts for that reason): the JSON API and
# forward auth for reverse proxies. They are no pages either: they read no form.
COOKIELESS_BLUEPRINTS = frozenset({"api", "proxy_auth"})
MESSAGE = ("Keyfob refused a request from another website: changes can only be made from Keyfob's own pages. "
           "Client apps use the API with an API key.")


def is_cross_site_change() -> bool:
    return (request.method not in SAFE_METHODS
            and request.headers.get("Sec-Fetch-Site", "").strip().lower() == "cross-site"
            and request.url_rule is not None  # an unknown address answers 404 as usual
            and request.blueprint not in COOKIELESS_BLUEPRINTS)
