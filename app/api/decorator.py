"""`@require_api_key(...)`: guard any Flask route with an API key sent as `Authorization: Bearer <key>`.

Several scopes mean all of them: `@require_api_key("read:data", "write:data")` needs a key holding both. With no
scope, any valid key passes. On success the view finds the key in `g.api_key` (a `verification.VerifiedKey`: id,
user_id, name, display_start, scopes, ...) and its owner in `g.api_owner` (None for the static service key).
`g.api_owner` is a proxy that loads the User from the database the first time the view uses it, so a view that never
looks at the owner does not pay for it; `g.api_owner._get_current_object()` gives the User itself. Refusals follow
RFC 6750 with Keyfob's JSON error shape.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from flask import after_this_request, g, request
from werkzeug.local import LocalProxy

from app.bearer import bearer_token
from app.errors import error_response
from app.keys import verification
from app.keys.ratelimit import RateLimitState
from app.keys.verification import Outcome
from app.metrics import count_verification

# The Python client's decorator for services (static/clients/keyfob_client.py) gives these same refusals, messages
# and headers; tests/functional/verification/test_python_client.py compares the two on a running Keyfob.
REALM = 'Bearer realm="keyfob"'
# Names under which clients tend to put a key in a URL, where proxies, logs and browser history would keep it.
KEY_QUERY_PARAMETERS = ("api_key", "apikey", "key", "access_token", "token")
INVALID_KEY_MESSAGE = "The API key is not valid: it may be mistyped, expired, revoked, disabled or suspended."
INVALID = {Outcome.MALFORMED, Outcome.NOT_FOUND, Outcome.EXPIRED, Outcome.REVOKED, Outcome.DISABLED,
           Outcome.SUSPENDED}
_OWNER = "_keyfob_api_owner"
_MISSING = object()


def _load_owner():
    """The owner of the request's key, loaded on first use and kept in `g` for the rest of the request."""
    owner = g.get(_OWNER, _MISSING)
    if owner is _MISSING:
        owner = g.api_key.owner
        setattr(g, _OWNER, owner)
    return owner


# One proxy for every request: it resolves through `g`, so it always means the current request's owner.
api_owner = LocalProxy(_load_owner)


def rate_limit_headers(state: RateLimitState) -> dict[str, str]:
    """The IETF RateLimit and RateLimit-Policy fields (draft-ietf-httpapi-ratelimit-headers)."""
    return {
        "RateLimit-Policy": f'"per-key";q={state.limit};w={state.window}',
        "RateLimit": f'"per-key";r={state.remaining};t={state.reset}',
    }


def refusal(result: verification.Verification):
    """The response for a failed verification."""
    if result.outcome in INVALID:
        return error_response(401, "invalid_token", INVALID_KEY_MESSAGE, headers={
            "WWW-Authenticate": f'{REALM}, error="invalid_token", error_description="{INVALID_KEY_MESSAGE}"'})
    if result.outcome is Outcome.INSUFFICIENT_SCOPE:
        needed = " ".join(result.missing_scopes)
        return error_response(403, "insufficient_scope", f"This key lacks the scope this needs: {needed}.",
                              headers={"WWW-Authenticate": f'{REALM}, error="insufficient_scope", scope="{needed}"'})
    if result.outcome is Outcome.IP_NOT_ALLOWED:
        return error_response(403, "ip_not_allowed", "This key may not be used from your IP address.")
    if result.outcome is Outcome.USAGE_EXCEEDED:
        return error_response(403, "usage_exceeded", "This key has used up its allowed number of requests.")
    assert result.outcome is Outcome.RATE_LIMITED and result.rate_limit is not None
    headers = {"Retry-After": str(result.rate_limit.reset), **rate_limit_headers(result.rate_limit)}
    return error_response(429, "rate_limited",
                          f"This key is limited to {result.rate_limit.limit} requests per minute. "
                          f"Try again in {result.rate_limit.reset} s.", headers=headers)


def key_in_query() -> bool:
    """A parameter named like a key, or any value that is a well-formed key, whatever its name (?foo=kf_...)."""
    args = request.args
    return any(name in args for name in KEY_QUERY_PARAMETERS) or any(
        verification.looks_like_a_key(value) for values in args.listvalues() for value in values)


def require_api_key(*scopes: str) -> Callable:
    """Guard a view: the request must carry a valid key holding every scope in `scopes`."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def guarded(*args, **kwargs):
            environ = request.environ
            # Parsing the query string costs a few µs, so only when there is one.
            if environ.get("QUERY_STRING") and key_in_query():
                return error_response(400, "key_in_url", "Never put an API key in a URL; send it in the "
                                                         "Authorization header: Authorization: Bearer <key>.")
            token = bearer_token()
            if token is None:
                return error_response(401, "missing_token", "Send your API key in the Authorization header: "
                                                            "Authorization: Bearer <key>.",
                                      headers={"WWW-Authenticate": REALM})
            # The raw header, not request.user_agent: it is only written to the audit log of a refusal.
            result = verification.verify(token, scopes, environ.get("REMOTE_ADDR"), environ.get("HTTP_USER_AGENT"))
            count_verification(result.outcome)
            if not result.ok:
                return refusal(result)
            g.api_key = result.key
            g.api_owner = None if result.key.user_id is None else api_owner
            if result.rate_limit is not None:
                headers = rate_limit_headers(result.rate_limit)

                @after_this_request
                def _add_rate_limit_headers(response):
                    response.headers.update(headers)
                    return response

            return view(*args, **kwargs)

        guarded.required_scopes = scopes  # lets the API list which routes each scope unlocks
        return guarded

    return decorator
