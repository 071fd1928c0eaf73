"""The key operations for client apps: the dashboard's actions as JSON, each guarded by the scope it needs.

A key acts for its owner: it sees and changes only the owner's keys (another user's key id answers 404), and it
never grants more than it has (app/keys/grants.py: the rules, and what a field left out means); a grant refused is a
403 `insufficient_scope`.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime, timedelta

from flask import current_app, g, jsonify, request, url_for

from app.accounts.models import User
from app.actors import requesting_key
from app.api import bp
from app.api.decorator import require_api_key
from app.api.json_io import (
    ApiError,
    boolean,
    invalid,
    json_body,
    key_json,
    optional_number,
    query_number,
    text,
    text_list,
    timestamp,
    whole_number,
)
from app.audit.service import Actor
from app.database import utcnow
from app.errors import error_response
from app.keys import grants, policy, queries, service
from app.keys.core import settings
from app.keys.grants import Caller, GrantRefused
from app.keys.models import MAX_KEY_ID, ApiKey
from app.keys.policy import KeyInputError
from app.keys.scopes import UnknownScopeError, normalise_scopes
from app.keys.service import GRACE_PERIODS, KeyStateError, OwnerUnconfirmed

PATH_VARIABLE = re.compile(r"<(?:[^:>]+:)?(\w+)>")  # werkzeug's <int(max=...):key_id> as OpenAPI's {key_id}
LIST_STATUSES = (*queries.GROUPS, *queries.STATUSES, "all")
EDITABLE = ("name", "description", "scopes", "allowed_ips", "rate_limit", "disabled")
CREATE_FIELDS = ("name", "description", "scopes", "expires_at", "expires_in_days", "allowed_ips", "rate_limit",
                 "remaining_uses")


@bp.errorhandler(ApiError)
def _api_error(error: ApiError):
    return error_response(error.status, error.code, error.message, error.fields or None)


# The key core's refusals, as the API answers them wherever an operation meets one: a bad value is the request's
# mistake (422, naming the field), a key in the wrong state for the change a conflict (409).
@bp.errorhandler(KeyInputError)
def _core_refusal(error: KeyInputError):
    return _api_error(invalid({error.field: error.message}))


@bp.errorhandler(OwnerUnconfirmed)
def _owner_unconfirmed(error: OwnerUnconfirmed):
    # Not the request's mistake: the account may not have keys made until its address is confirmed.
    return _api_error(ApiError(403, "email_unconfirmed", error.message))


@bp.errorhandler(KeyStateError)
def _core_conflict(error: KeyStateError):
    return _api_error(ApiError(409, "conflict", str(error)))


@bp.errorhandler(GrantRefused)
def _grant_refused(error: GrantRefused):
    return _api_error(ApiError(403, "insufficient_scope", error.message))


# -- who is asking -------------------------------------------------------------------------------------------------

def _owner() -> User:
    if g.api_owner is None:  # the service key; any other key's owner is a proxy that loads the User
        raise ApiError(403, "no_owner", "The service key belongs to no user, so it has no keys to manage. "
                                        "Use a key issued to a user.")
    return g.api_owner._get_current_object()


def _actor() -> Actor:
    return requesting_key(g.api_key)


def _caller() -> Caller:
    return Caller.of(g.api_key)


def _shown(key: ApiKey, status: int = 200, **headers):
    response = jsonify(key_json(key, utcnow(), settings().warning_days))
    response.status_code = status
    response.headers.update(headers)
    return response


def _with_secret(key: ApiKey, secret: str, status: int, **headers):
    """The one answer that carries a plaintext key: never cached anywhere."""
    response = jsonify(key=key_json(key, utcnow(), settings().warning_days), secret=secret)
    response.status_code = status
    response.headers.update({"Cache-Control": "no-store", "Pragma": "no-cache", **headers})
    return response


def _check_scopes(scopes: list[str] | None) -> None:
    """Scopes the catalogue knows (else 422: a mistake, not an escalation) and the caller holds (else 403)."""
    if scopes is None:
        return
    try:
        normalise_scopes(scopes, settings().catalogue)
    except UnknownScopeError as error:
        raise invalid({"scopes": str(error)}) from None
    grants.check_scopes(_caller(), scopes)


def _networks(body: dict) -> list[str]:
    """The body's allowed_ips in canonical form, to compare with the caller's."""
    return list(policy.clean_networks(text_list(body, "allowed_ips") or []))


def _expiry_from(body: dict, now: datetime) -> tuple[datetime | None, bool]:
    """(expiry, whether the body chose it) from expires_at or expires_in_days; both at once is refused."""
    if "expires_at" in body and "expires_in_days" in body:
        raise invalid({"expires_at": "Give expires_at or expires_in_days, not both."})
    if body.get("expires_in_days") is not None:
        return now + timedelta(days=whole_number(body["expires_in_days"], "expires_in_days", 1, policy.MAX_DAYS)), True
    if "expires_at" in body:
        return timestamp(body, "expires_at"), True
    return None, False


# -- the operations --------------------------------------------------------------------------------------------------

def _cursor(key: ApiKey) -> str:
    return base64.urlsafe_b64encode(f"{key.created_at.isoformat()}|{key.id}".encode()).decode().rstrip("=")


def _after(cursor: str | None) -> tuple[datetime, int] | None:
    if cursor is None:
        return None
    try:
        created, _, key_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().partition("|")
        moment = datetime.fromisoformat(created)
        if moment.tzinfo is None:
            raise ValueError("no zone")
        if not 0 < int(key_id) <= MAX_KEY_ID:
            raise ValueError("no such id")
        return moment, int(key_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid({"cursor": "Not a cursor this API gave out; start again without one."}) from None


@bp.get("/api-keys")
@require_api_key("keys:read")
def list_keys():
    """The caller's owner's keys, newest first, a page at a time (follow next_cursor)."""
    owner = _owner()
    status = request.args.get("status", "live")
    if status not in LIST_STATUSES:
        raise invalid({"status": "Choose one of: " + ", ".join(LIST_STATUSES) + "."})
    search = request.args.get("q", "")
    if len(search) > 100:
        raise invalid({"q": "Use at most 100 characters."})
    now = utcnow()
    keys, more = queries.key_slice(
        owner.id, now=now, warning_days=settings().warning_days, status=status, search=search,
        expiring_within_days=query_number("expiring_within_days", 1, policy.MAX_DAYS),
        after=_after(request.args.get("cursor")), limit=query_number("limit", 1, 100, queries.PAGE_SIZE))
    return jsonify(data=[key_json(key, now, settings().warning_days) for key in keys],
                   next_cursor=_cursor(keys[-1]) if more else None)


@bp.post("/api-keys")
@require_api_key("keys:write")
def create_key():
    """Issue a key; its plaintext is in this answer and never again."""
    owner = _owner()
    body = json_body(CREATE_FIELDS)
    now = utcnow()
    name = text(body, "name", required=True)
    scopes = text_list(body, "scopes") or []
    expires_at, chosen = _expiry_from(body, now)
    caller = _caller()
    if not chosen:
        expires_at = grants.capped(caller, now + timedelta(days=settings().default_lifetime_days))
    restrictions = grants.inherited(caller)
    if "allowed_ips" in body:
        restrictions["allowed_ips"] = _networks(body)
    if "rate_limit" in body:
        restrictions["rate_limit"] = optional_number(body, "rate_limit", 1, policy.MAX_RATE_LIMIT)
    if "remaining_uses" in body:
        restrictions["remaining_uses"] = optional_number(body, "remaining_uses", 1, policy.MAX_REMAINING_USES)
    _check_scopes(scopes)
    grants.check_outlives(caller, expires_at)
    grants.check_restrictions(caller, **restrictions)
    key, secret = service.create(owner, name, scopes, expires_at, actor=_actor(), now=now,
                                 description=text(body, "description") or "", **restrictions)
    return _with_secret(key, secret, 201, Location=url_for("api.get_key", key_id=key.id))


@bp.get("/api-keys/expiring")
@require_api_key("keys:read")
def expiring_keys():
    """The renewal-warning list: keys expiring within `within_days` (RENEWAL_WARNING_DAYS by default), and those
    that expired recently (the same list as the dashboard's)."""
    owner = _owner()
    within = query_number("within_days", 1, policy.MAX_DAYS, settings().warning_days)
    now = utcnow()
    keys = queries.renewal_list(owner, now, within_days=within)
    return jsonify(data=[key_json(key, now, settings().warning_days) for key in keys])


@bp.get("/api-keys/<int:key_id>")
@require_api_key("keys:read")
def get_key(key_id: int):
    return _shown(queries.get_key(key_id, _owner()))


def _changes(body: dict, *, replace: bool) -> dict:
    """The service.update() arguments from a PATCH body (only what it names) or a PUT body (everything; a restriction
    left out takes the caller's own, as on create)."""
    changes = {}
    if replace or "name" in body:
        changes["name"] = text(body, "name", required=True)
    if replace or "description" in body:
        changes["description"] = text(body, "description") or ""
    if replace or "scopes" in body:
        changes["scopes"] = text_list(body, "scopes") or []
    if "allowed_ips" in body:
        changes["allowed_ips"] = _networks(body)
    if "rate_limit" in body:
        changes["rate_limit"] = optional_number(body, "rate_limit", 1, policy.MAX_RATE_LIMIT)
    if replace:
        inherited = grants.inherited(_caller())
        changes.setdefault("allowed_ips", inherited["allowed_ips"])
        changes.setdefault("rate_limit", inherited["rate_limit"])
    if replace or "disabled" in body:
        disabled = boolean(body, "disabled")
        changes["disabled"] = bool(disabled)
    return changes


def _update(key_id: int, *, replace: bool):
    key = queries.get_key(key_id, _owner())
    changes = _changes(json_body(EDITABLE), replace=replace)
    _check_scopes(changes.get("scopes"))
    grants.check_restrictions(_caller(), **{field: changes[field] for field in ("allowed_ips", "rate_limit")
                                            if field in changes})
    service.update(key, actor=_actor(), **changes)
    return _shown(key)


@bp.patch("/api-keys/<int:key_id>")
@require_api_key("keys:write")
def patch_key(key_id: int):
    """Change the fields the body names."""
    return _update(key_id, replace=False)


@bp.put("/api-keys/<int:key_id>")
@require_api_key("keys:write")
def put_key(key_id: int):
    """Replace every editable field: those left out go back to their defaults."""
    return _update(key_id, replace=True)


@bp.post("/api-keys/<int:key_id>/rotate")
@require_api_key("keys:write")
def rotate_key(key_id: int):
    """A new secret for the key; the old one keeps working for `grace`."""
    key = queries.get_key(key_id, _owner())
    body = json_body(("grace",), optional=True)
    grace = body.get("grace", "none")
    if not isinstance(grace, str) or grace not in GRACE_PERIODS:
        raise invalid({"grace": "Choose one of: " + ", ".join(GRACE_PERIODS) + "."})
    now = utcnow()
    caller = _caller()
    grants.check_rotatable(caller, key, now)
    secret = service.rotate(key, grace, actor=_actor(), now=now, ceiling=caller.expires_at)
    return _with_secret(key, secret, 200)


@bp.post("/api-keys/<int:key_id>/renew")
@require_api_key("keys:write")
def renew_key(key_id: int):
    """Move the expiry: to the one given, or to the key's original lifetime from now, within policy."""
    key = queries.get_key(key_id, _owner())
    body = json_body(("expires_at", "expires_in_days"), optional=True)
    now = utcnow()
    expires_at, chosen = _expiry_from(body, now)
    caller = _caller()
    if chosen:
        grants.check_outlives(caller, expires_at)
    else:
        expires_at = grants.capped(caller, service.renewal_expiry(key, now))
    service.renew(key, expires_at, actor=_actor(), now=now)
    return _shown(key)


def _revoke(key: ApiKey, body: dict):
    service.revoke(key, text(body, "reason") or "", actor=_actor())
    return _shown(key)


@bp.delete("/api-keys/<int:key_id>")
@require_api_key("keys:write")
def revoke_key(key_id: int):
    """Revoke the key for good, with an optional reason."""
    key = queries.get_key(key_id, _owner())
    return _revoke(key, json_body(("reason",), optional=True))


@bp.delete("/api-keys")
@require_api_key("keys:write")
def revoke_key_by_body():
    """Revoke the key whose id the body gives, as the product's seed documents: {"id": 7}."""
    body = json_body(("id", "reason"))
    if body.get("id") is None:
        raise invalid({"id": "Required."})
    return _revoke(queries.get_key(whole_number(body["id"], "id", 1, MAX_KEY_ID), _owner()), body)


@bp.get("/api-keys/<int:key_id>/usage")
@require_api_key("keys:read")
def key_usage(key_id: int):
    """Valid and failed requests per UTC day, oldest first, for the last `days` days."""
    key = queries.get_key(key_id, _owner())
    days = query_number("days", 1, 90, 30)
    usage = queries.daily_usage([key.id], days, utcnow().date())
    return jsonify(key_id=key.id, days=[{"day": day.day.isoformat(), "requests": day.requests,
                                         "failures": day.failures} for day in usage])


@bp.get("/scopes")
@require_api_key()
def scope_catalogue():
    """Each scope with what it means and the routes it unlocks, read from the routes' own decorators."""
    unlocked: dict[str, list[str]] = {name: [] for name in settings().catalogue}
    any_key: list[str] = []
    for rule in sorted(current_app.url_map.iter_rules(), key=lambda rule: rule.rule):
        view = current_app.view_functions[rule.endpoint]
        required = getattr(view, "required_scopes", None)
        if required is None:
            continue
        path = PATH_VARIABLE.sub(r"{\1}", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            route = f"{method} {path}"
            for scope in required:
                unlocked.setdefault(scope, []).append(route)
            if not required:
                any_key.append(route)
    catalogue = settings().catalogue
    return jsonify(scopes=[{"name": name, "description": catalogue.get(name, ""), "routes": routes}
                           for name, routes in unlocked.items()], any_key_routes=any_key)
