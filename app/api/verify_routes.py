"""POST /api/v1/keys/verify: the team's services ask whether a key is good, with the same rules, counts, limits and
audit as Keyfob's own routes (it is the same verify()).

The service authenticates with its verifier credential (`Authorization: Bearer <KEY_PREFIX>v_...`); without a valid
one the answer is 401 and says nothing about the key. A completed check answers 200 whatever the outcome, as Unkey's
verifyKey does: `valid`, a `code`, and for a key that was found what a service needs to act on it.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime

from flask import jsonify

from app.api import bp
from app.api.json_io import invalid, json_body, text, text_list
from app.bearer import bearer_token
from app.errors import error_response
from app.keys import verification, verifiers
from app.keys.core import settings
from app.keys.scopes import UnknownScopeError, normalise_scopes
from app.keys.verification import Outcome, Verification
from app.metrics import count_verification

VERIFIER_REALM = 'Bearer realm="keyfob-verifiers"'
BODY_FIELDS = ("key", "scopes", "client_ip", "method", "path")
# The key core's outcomes as the API names them. A malformed key is simply not found: the answer must not help anyone
# tell a mistyped key from a made-up one.
CODES = {Outcome.VALID: "VALID", Outcome.MALFORMED: "NOT_FOUND", Outcome.NOT_FOUND: "NOT_FOUND",
         Outcome.EXPIRED: "EXPIRED", Outcome.REVOKED: "REVOKED", Outcome.DISABLED: "DISABLED",
         Outcome.SUSPENDED: "SUSPENDED", Outcome.INSUFFICIENT_SCOPE: "INSUFFICIENT_SCOPE",
         Outcome.IP_NOT_ALLOWED: "IP_NOT_ALLOWED", Outcome.RATE_LIMITED: "RATE_LIMITED",
         Outcome.USAGE_EXCEEDED: "USAGE_EXCEEDED"}


def authenticated_verifier() -> verifiers.VerifierIdentity | None:
    """The verifier whose credential the request carries, or None."""
    return verifiers.authenticate(bearer_token())


def refuse_verifier():
    return error_response(401, "invalid_verifier", "Send a verifier credential: Authorization: Bearer <credential>. "
                                                   "An admin issues one per service.",
                          headers={"WWW-Authenticate": VERIFIER_REALM})


def _moment(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def check_json(result: Verification) -> dict:
    """A check's outcome as the verification API answers it."""
    body: dict = {"valid": result.ok, "code": CODES[result.outcome]}
    key = result.key
    if key is None or body["code"] == "NOT_FOUND":
        return body
    left = key.remaining_uses
    if left is not None and result.ok:
        left -= 1  # verify() read the quota before this check took its use
    state = result.rate_limit
    body["key"] = {
        "id": key.id, "name": getattr(key, "name", key.display_start), "start": key.display_start,
        "owner": None if key.user_id is None else {"id": key.user_id, "email": key.owner_email},
        "scopes": list(key.scopes), "expires_at": _moment(getattr(key, "expires_at", None)),
    }
    body["rate_limit"] = None if state is None else {"limit": state.limit, "window": state.window,
                                                       "remaining": state.remaining, "reset": state.reset}
    body["remaining_uses"] = left
    if result.missing_scopes:
        body["missing_scopes"] = list(result.missing_scopes)
    return body


def _client_ip(body: dict) -> str | None:
    value = text(body, "client_ip")
    if value is None:
        return None
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise invalid({"client_ip": "Give the client's IP address, such as 203.0.113.7 or 2001:db8::7."}) from None


@bp.post("/keys/verify")
def verify_key():
    """Check a key for one of the team's services."""
    verifier = authenticated_verifier()
    if verifier is None:
        return refuse_verifier()
    body = json_body(BODY_FIELDS)
    key = text(body, "key", required=True)
    scopes = text_list(body, "scopes") or []
    try:
        normalise_scopes(scopes, settings().catalogue)
    except UnknownScopeError as error:
        raise invalid({"scopes": str(error)}) from None
    client_ip = _client_ip(body)
    method, path = text(body, "method"), text(body, "path")
    for name, value in (("method", method), ("path", path)):
        if len(value or "") > 2000:
            raise invalid({name: "Use at most 2,000 characters."})
    result = verification.verify(key, scopes, client_ip, None, verifier_id=verifier.id,
                                 method=method.upper() if method else None, path=path)
    count_verification(result.outcome, via=verifier.name)
    return jsonify(check_json(result))
