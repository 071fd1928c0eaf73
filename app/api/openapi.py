"""The OpenAPI 3.1 document of the JSON API, served to anyone at GET /api/v1/openapi.json (it holds no secret).

The document is built once from the tables below. Every error answer uses the one Error schema, narrowed per status
to the codes that status can carry, so a test (or a client's generator) can tell exactly what each refusal means.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from flask import current_app

from app.api import bp
from app.api.key_routes import LIST_STATUSES as LIST_FILTERS
from app.keys import policy, queries, service, tokens

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1.0.0"
BASE_PATH = "/api/v1"
MAX_DAYS = policy.MAX_DAYS
# The plaintext key, as create and rotate show it once: `<prefix>_<27 random><6 checksum>`, all base62.
KEY_PATTERN = f"^{tokens.PREFIX_PATTERN.pattern}_[0-9A-Za-z]{{{tokens.RANDOM_LENGTH + tokens.CHECKSUM_LENGTH}}}$"
# What lists and logs show instead: the prefix and the first random characters.
START_PATTERN = f"^{tokens.PREFIX_PATTERN.pattern}_[0-9A-Za-z]{{{tokens.DISPLAY_RANDOM_CHARS}}}$"
STATUSES = list(queries.STATUSES)
LIST_STATUSES = list(LIST_FILTERS)
GRACE_PERIODS = list(service.GRACE_PERIODS)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """The same schema, also allowing null (OpenAPI 3.1 is JSON Schema 2020-12: a list of types)."""
    return {**schema, "type": [schema["type"], "null"]}


def _object(properties: dict[str, Any], *, required: list[str] | None = None, description: str | None = None,
            **extra: Any) -> dict[str, Any]:
    """A closed object: a field the document does not list is a mistake on either side."""
    schema: dict[str, Any] = {"type": "object"}
    if description:
        schema["description"] = description
    schema["properties"] = properties
    if required:
        schema["required"] = required
    return {**schema, "additionalProperties": False, **extra}


DATE_TIME = {"type": "string", "format": "date-time"}
NAME = {"type": "string", "minLength": 1, "maxLength": 100, "description": "Up to 100 characters; blanks trimmed."}
DESCRIPTION = {"type": "string", "maxLength": 500, "default": ""}
SCOPE_LIST = {"type": "array", "items": {"type": "string"}, "default": [],
              "description": "Scope names from GET /scopes; a key can only grant scopes it holds itself."}
# Left out of a create or a PUT, a restriction takes the calling key's own (none for an unrestricted key): there is
# no one default to state, so the bodies' descriptions say it instead.
ALLOWED_IPS = {"type": "array", "items": {"type": "string"}, "maxItems": 100,
               "description": "IPv4 or IPv6 addresses or CIDR ranges the key may be used from; empty means any. Each "
                              "must lie within the calling key's own allowlist, if it has one."}
RATE_LIMIT = {"type": ["integer", "null"], "minimum": 1, "maximum": 1_000_000,
              "description": "Requests per minute; null for no limit. At most the calling key's own rate limit, if it "
                             "has one."}
REMAINING_USES = {"type": ["integer", "null"], "minimum": 1, "maximum": 2_000_000_000,
                  "description": "How many requests the key may make in all; null for no quota. At most the uses the "
                                 "calling key has left after this request, if it has a quota."}
EXPIRES_AT = {**DATE_TIME, "description": "RFC 3339 date-time with a zone, such as 2027-01-31T00:00:00Z; within "
                                          "the deployment's longest lifetime and no later than the caller's expiry."}
EXPIRES_IN_DAYS = {"type": "integer", "minimum": 1, "maximum": MAX_DAYS,
                   "description": "Expire this many days from now (instead of expires_at)."}
REASON = {"type": "string", "maxLength": 500, "description": "Why the key was revoked, kept in the audit log."}
KEY_ID = {"type": "integer", "format": "int64", "minimum": 1}
ONE_EXPIRY = {"not": {"required": ["expires_at", "expires_in_days"]}}
ROUTE = {"type": "string", "pattern": r"^(GET|POST|PUT|PATCH|DELETE) /", "examples": ["GET /api/v1/api-keys"]}

SCHEMAS: dict[str, dict[str, Any]] = {
    "ApiKey": _object({
        "id": KEY_ID,
        "name": {"type": "string"},
        "description": {"type": "string"},
        "start": {"type": "string", "pattern": START_PATTERN, "examples": ["kf_cVo3KB"],
                  "description": "The key's first characters, to recognise it by: never the secret."},
        "scopes": {"type": "array", "items": {"type": "string"}},
        "status": {"type": "string", "enum": STATUSES,
                   "description": "expiring: active, and expires within the renewal-warning days."},
        "created_at": DATE_TIME,
        "expires_at": _nullable(DATE_TIME),
        "revoked_at": _nullable(DATE_TIME),
        "revoked_reason": {"type": ["string", "null"]},
        "disabled": {"type": "boolean"},
        "suspended_until": _nullable(DATE_TIME),
        "last_used_at": _nullable(DATE_TIME),
        "last_used_ip": {"type": ["string", "null"]},
        "usage_count": {"type": "integer", "minimum": 0},
        "allowed_ips": {"type": "array", "items": {"type": "string"}},
        "rate_limit": {"type": ["integer", "null"], "minimum": 1},
        "remaining_uses": {"type": ["integer", "null"], "minimum": 0},
        "previous_secret_expires_at": _nullable({**DATE_TIME, "description": (
            "After a rotation with a grace period: when the old secret stops working.")}),
    }, required=["id", "name", "description", "start", "scopes", "status", "created_at", "expires_at", "revoked_at",
                 "revoked_reason", "disabled", "suspended_until", "last_used_at", "last_used_ip", "usage_count",
                 "allowed_ips", "rate_limit", "remaining_uses", "previous_secret_expires_at"],
        description="An API key's settings and record. Never its secret, nor anything derived from it."),
    "ApiKeyWithSecret": _object({
        "key": _ref("ApiKey"),
        "secret": {"type": "string", "pattern": KEY_PATTERN, "examples": ["kf_cVo3KBxmuhekLEeYolQfxno3mJc1jt9Dw"],
                   "description": "The key itself. Shown in this answer only: Keyfob keeps just a fingerprint."},
    }, required=["key", "secret"], description="A new or rotated key with its secret, shown once."),
    "ApiKeyList": _object({
        "data": {"type": "array", "items": _ref("ApiKey")},
        "next_cursor": {"type": ["string", "null"],
                        "description": "Pass as `cursor` for the next page; null on the last page."},
    }, required=["data", "next_cursor"]),
    "ExpiringKeys": _object({"data": {"type": "array", "items": _ref("ApiKey")}}, required=["data"]),
    "DayUsage": _object({
        "day": {"type": "string", "format": "date"},
        "requests": {"type": "integer", "minimum": 0, "description": "Valid requests that day (UTC)."},
        "failures": {"type": "integer", "minimum": 0, "description": "Refused requests that day (UTC)."},
    }, required=["day", "requests", "failures"]),
    "KeyUsage": _object({
        "key_id": KEY_ID,
        "days": {"type": "array", "items": _ref("DayUsage"), "description": "Oldest day first."},
    }, required=["key_id", "days"]),
    "Scope": _object({
        "name": {"type": "string"},
        "description": {"type": "string"},
        "routes": {"type": "array", "items": ROUTE, "description": "The API routes this scope unlocks."},
    }, required=["name", "description", "routes"]),
    "ScopeCatalogue": _object({
        "scopes": {"type": "array", "items": _ref("Scope")},
        "any_key_routes": {"type": "array", "items": ROUTE, "description": "Routes any valid key may call."},
    }, required=["scopes", "any_key_routes"]),
    "WhoAmI": _object({
        "user_id": {"type": ["integer", "null"], "description": "null for the deployment's service key."},
        "key_id": {"type": ["integer", "null"], "description": "null for the deployment's service key."},
        "key": {"type": "string", "description": "The key's display start."},
        "scopes": {"type": "array", "items": {"type": "string"}},
        "timestamp": DATE_TIME,
    }, required=["user_id", "key_id", "key", "scopes", "timestamp"]),
    "Error": _object({
        "error": {"type": "string", "description": "A stable code to act on, such as `invalid_token`."},
        "message": {"type": "string", "description": "What went wrong and what to do, for people."},
        "fields": {"type": "object", "additionalProperties": {"type": "string"},
                   "description": "The inputs at fault, each with what is wrong with it."},
    }, required=["error", "message"], description="Every refusal has this shape."),
    # Request bodies.
    "NewApiKey": _object({
        "name": NAME,
        "description": DESCRIPTION,
        "scopes": SCOPE_LIST,
        "expires_at": EXPIRES_AT,
        "expires_in_days": EXPIRES_IN_DAYS,
        "allowed_ips": ALLOWED_IPS,
        "rate_limit": RATE_LIMIT,
        "remaining_uses": REMAINING_USES,
    }, required=["name"], description=(
        f"A key to create. Without expires_at or expires_in_days it expires in {policy.DEFAULT_LIFETIME_DAYS} days "
        "(or with the caller, if sooner). Without allowed_ips, rate_limit or remaining_uses it takes the caller's own "
        "(none for an unrestricted caller)."),
        **ONE_EXPIRY),
    "ApiKeyChanges": _object({
        "name": NAME,
        "description": DESCRIPTION,
        "scopes": SCOPE_LIST,
        "allowed_ips": ALLOWED_IPS,
        "rate_limit": RATE_LIMIT,
        "disabled": {"type": "boolean", "description": "A disabled key is refused until enabled again."},
    }, description="The fields to change; the others keep their values."),
    "ApiKeyReplacement": _object({
        "name": NAME,
        "description": DESCRIPTION,
        "scopes": SCOPE_LIST,
        "allowed_ips": ALLOWED_IPS,
        "rate_limit": RATE_LIMIT,
        "disabled": {"type": "boolean", "default": False},
    }, required=["name"], description="Every editable field: those left out go back to their defaults, and "
                                      "allowed_ips and rate_limit to the calling key's own (none for an "
                                      "unrestricted caller)."),
    "Rotation": _object({
        "grace": {"type": "string", "enum": GRACE_PERIODS, "default": "none",
                  "description": "How long the old secret keeps working."},
    }),
    "Renewal": _object({"expires_at": EXPIRES_AT, "expires_in_days": EXPIRES_IN_DAYS},
                       description="The new expiry. With neither field: the key's original lifetime again from now, "
                                   f"and at least {policy.MIN_RENEWAL_DAYS} days or twice RENEWAL_WARNING_DAYS, "
                                   "whichever is longer (so the key leaves the renewal list), within policy and "
                                   "never past the caller's own expiry: the same renewal as the dashboard's.",
                       **ONE_EXPIRY),
    "Revocation": _object({"reason": REASON}),
    "OpenApiDocument": {"type": "object", "required": ["openapi", "info", "paths"],
                        "description": "An OpenAPI 3.1 document."},
    "RevocationById": _object({"id": KEY_ID, "reason": REASON}, required=["id"]),
    "VerifyRequest": _object({
        "key": {"type": "string", "maxLength": 10_000, "description": "The API key a client presented to the service."},
        "scopes": {**SCOPE_LIST, "description": "Scopes the service's route needs; the key must hold them all."},
        "client_ip": {"type": "string", "description": "The client's IP address, checked against the key's "
                                                      "allowlist (never the service's own address)."},
        "method": {"type": "string", "maxLength": 2000, "description": "The client's request method, for the record."},
        "path": {"type": "string", "maxLength": 2000, "description": "The client's request path, for the record."},
    }, required=["key"]),
    "VerifyResult": _object({
        "valid": {"type": "boolean"},
        "code": {"type": "string", "enum": ["VALID", "NOT_FOUND", "EXPIRED", "REVOKED", "DISABLED", "SUSPENDED",
                                            "INSUFFICIENT_SCOPE", "IP_NOT_ALLOWED", "RATE_LIMITED",
                                            "USAGE_EXCEEDED"]},
        "key": _object({
            "id": {"type": ["integer", "null"]}, "name": {"type": "string"},
            "start": {"type": "string", "description": "The key's display start."},
            "owner": _nullable(_object({"id": {"type": "integer"}, "email": {"type": "string"}},
                                       required=["id", "email"])),
            "scopes": {"type": "array", "items": {"type": "string"}}, "expires_at": _nullable(DATE_TIME),
        }, required=["id", "name", "start", "owner", "scopes", "expires_at"]),
        "rate_limit": _nullable(_object({"limit": {"type": "integer", "description": "Requests per window."},
                                         "window": {"type": "integer", "description": "Seconds."},
                                         "remaining": {"type": "integer"},
                                         "reset": {"type": "integer", "description": "Seconds."}},
                                        required=["limit", "window", "remaining", "reset"])),
        "remaining_uses": {"type": ["integer", "null"], "description": "Uses left after this check."},
        "missing_scopes": {"type": "array", "items": {"type": "string"}},
    }, required=["valid", "code"], description="The outcome of a completed check; `key`, `rate_limit` and "
                                               "`remaining_uses` only for a key that was found."),
}


def _header(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "schema": schema or {"type": "string"}}


HEADERS = {
    "RateLimit": _header('Requests left in the window and seconds until it resets, e.g. `"per-key";r=599;t=60`.'),
    "RateLimit-Policy": _header('The key\'s rate limit, e.g. `"per-key";q=600;w=60`.'),
    "Retry-After": _header("Seconds to wait before trying again.", {"type": "integer", "minimum": 0}),
    "WWW-Authenticate": _header('RFC 6750 challenge, e.g. `Bearer realm="keyfob", error="invalid_token"`.'),
    "Location": _header("The new key's address."),
    "Cache-Control": _header("`no-store`: an answer with a secret must never be cached.",
                             {"type": "string", "pattern": "no-store"}),
    "Allow": _header("The methods this address accepts."),
}


def _uses(name: str, required: bool = False) -> dict[str, Any]:
    """A response header: a reference to the shared one, or a copy of it marked required (a Reference Object
    cannot carry `required` beside its `$ref`)."""
    return {**HEADERS[name], "required": True} if required else {"$ref": f"#/components/headers/{name}"}


# status: (component name, description, error codes, headers as {name: required})
ERRORS: dict[int, tuple[str, str, list[str], dict[str, bool]]] = {
    400: ("BadRequest", "The request cannot be read: the body is not JSON (`malformed_json`), it has unknown or "
                        "read-only fields (`unknown_fields`, named in `fields`), an API key was put in the URL "
                        "(`key_in_url`), or a query parameter holds a NUL character (`nul_character`).",
          ["malformed_json", "unknown_fields", "key_in_url", "nul_character"], {}),
    401: ("Unauthorized", "No API key was sent (`missing_token`), or it is mistyped, unknown, expired, revoked, "
                          "disabled or suspended (`invalid_token`: one answer for all); for the verification API, "
                          "no valid verifier credential (`invalid_verifier`).",
          ["missing_token", "invalid_token", "invalid_verifier"], {"WWW-Authenticate": True}),
    403: ("Forbidden", "A valid key that may not do this: it lacks a scope (`insufficient_scope`, also when asked to "
                       "grant more than it holds, to outlive itself or to make a key less restricted than "
                       "itself), is used from an IP outside its allowlist (`ip_not_allowed`), has used up its quota "
                       "(`usage_exceeded`), or belongs to no user (`no_owner`); or its owner's address is still "
                       "to be confirmed, so no key can be made for them (`email_unconfirmed`).",
          ["insufficient_scope", "ip_not_allowed", "usage_exceeded", "no_owner", "email_unconfirmed"],
          {"WWW-Authenticate": False}),
    404: ("NotFound", "No such key among the caller's owner's keys (another user's key answers the same), or no "
                      "such address.", ["not_found"], {}),
    405: ("MethodNotAllowed", "This address does not accept that method.", ["method_not_allowed"], {"Allow": False}),
    409: ("Conflict", "The key's state forbids the change: a revoked key stays revoked.", ["conflict"], {}),
    415: ("UnsupportedMediaType", "The body is not sent as `application/json`.", ["unsupported_media_type"], {}),
    422: ("ValidationFailed", "Some inputs are not valid; `fields` says what is wrong with each.",
          ["validation_failed"], {}),
    429: ("RateLimited", "The key is over its rate limit.", ["rate_limited"],
          {"Retry-After": True, "RateLimit": True, "RateLimit-Policy": True}),
    503: ("ServiceUnavailable", "The database cannot be reached right now.", ["service_unavailable"],
          {"Retry-After": True}),
}


def _error_response(status: int) -> dict[str, Any]:
    _, description, codes, headers = ERRORS[status]
    narrowed: dict[str, Any] = {"properties": {"error": {"enum": codes}}}
    if status == 422:
        narrowed["required"] = ["fields"]
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"allOf": [_ref("Error"), narrowed]}}},
    }
    if headers:
        response["headers"] = {name: _uses(name, required) for name, required in headers.items()}
    return response


RESPONSES = {name: _error_response(status) for status, (name, *_) in ERRORS.items()}

PARAMETERS = {
    "KeyId": {"name": "key_id", "in": "path", "required": True, "description": "The key's id.", "schema": KEY_ID},
}

GUARDED_ERRORS = (400, 401, 403, 429, 503)
BODY_ERRORS = (400, 415, 422)


def _operation(operation_id: str, summary: str, *, tag: str, scope: str | None, ok: int, ok_description: str,
               ok_schema: str, ok_headers: dict[str, bool] | None = None, body: str | None = None,
               body_required: bool = True, errors: tuple[int, ...] = (), parameters: list | None = None,
               description: str = "") -> dict[str, Any]:
    """One operation. Guarded ones (scope is not None; "" means any valid key) get the refusals the key decorator
    can give; an operation with a body gets the refusals of reading it."""
    guarded = scope is not None
    statuses = set(errors) | {405}
    if guarded:
        statuses |= set(GUARDED_ERRORS)
    if body:
        statuses |= set(BODY_ERRORS)
    headers = {name: _uses(name, required) for name, required in (ok_headers or {}).items()}
    if guarded:
        headers |= {"RateLimit": _uses("RateLimit"), "RateLimit-Policy": _uses("RateLimit-Policy")}
    success: dict[str, Any] = {"description": ok_description,
                               "content": {"application/json": {"schema": _ref(ok_schema)}}}
    if headers:
        success["headers"] = headers
    needs = f"Needs the `{scope}` scope." if scope else "Any valid key may call it." if guarded else "Public."
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "description": f"{description} {needs}".strip(),
        "tags": [tag],
    }
    if parameters:
        operation["parameters"] = parameters
    if body:
        operation["requestBody"] = {"required": body_required,
                                    "content": {"application/json": {"schema": _ref(body)}}}
    operation["responses"] = {str(ok): success} | {
        str(status): {"$ref": f"#/components/responses/{ERRORS[status][0]}"} for status in sorted(statuses)}
    if not guarded:
        operation["security"] = []
    elif scope:
        # OpenAPI 3.1 lets a non-OAuth requirement list the roles it needs: here, the key's scope.
        operation["security"] = [{"bearerAuth": [scope]}]
    return operation


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


KEY_ID_PARAMETER = {"$ref": "#/components/parameters/KeyId"}
SECRET_HEADERS = {"Cache-Control": True}


def _key_change(operation_id: str, summary: str, *, ok_description: str, body: str, ok_schema: str = "ApiKey",
                **options: Any) -> dict[str, Any]:
    """An operation that changes one key: it needs `keys:write`, answers 404 for a key the caller's owner does not
    have and 409 for a revoked one."""
    return _operation(operation_id, summary, tag="API keys", scope="keys:write", ok=200, ok_schema=ok_schema,
                      ok_description=ok_description, body=body, errors=(404, 409), **options)


def _key_action(operation_id: str, summary: str, **options: Any) -> dict[str, Any]:
    """The path item of POST /api-keys/{key_id}/<action>, whose body is optional."""
    return {"parameters": [KEY_ID_PARAMETER],
            "post": _key_change(operation_id, summary, body_required=False, **options)}


PATHS: dict[str, dict[str, Any]] = {
    "/api-keys": {
        "get": _operation(
            "listKeys", "List your keys", tag="API keys", scope="keys:read", ok=200, ok_schema="ApiKeyList",
            ok_description="A page of the owner's keys, newest first.", errors=(422,),
            description="The keys of the caller's owner, a page at a time: follow `next_cursor`.",
            parameters=[
                _query("status", "Which keys: `live` (neither revoked nor expired), one status, `ended` (revoked or "
                                 "expired) or `all`.", {"type": "string", "enum": LIST_STATUSES, "default": "live"}),
                _query("q", "Only keys whose name contains this text.", {"type": "string", "maxLength": 100}),
                _query("expiring_within_days", "Only keys that expire within this many days.",
                       {"type": "integer", "minimum": 1, "maximum": MAX_DAYS}),
                _query("limit", "Keys per page.", {"type": "integer", "minimum": 1, "maximum": 100, "default": 25}),
                _query("cursor", "The `next_cursor` of the previous page.", {"type": "string"}),
            ]),
        "post": _operation(
            "createKey", "Create a key", tag="API keys", scope="keys:write", ok=201, ok_schema="ApiKeyWithSecret",
            ok_description="The new key, with its secret shown this once.", body="NewApiKey",
            ok_headers={"Location": True, **SECRET_HEADERS},
            description="The new key belongs to the caller's owner. It is never less restricted than the caller: "
                        "it can hold only scopes the caller holds, expire no later, have no higher `rate_limit`, "
                        "only networks inside the caller's `allowed_ips`, and no more `remaining_uses` than the "
                        "caller has left after this request (a key on its last use makes none). A value looser "
                        "than the caller's is refused with 403 `insufficient_scope`; a left-out expiry, "
                        "`allowed_ips`, `rate_limit` or `remaining_uses` takes the caller's own instead. Tightening "
                        "is always allowed."),
        "delete": _operation(
            "revokeKeyById", "Revoke a key named in the body", tag="API keys", scope="keys:write", ok=200,
            ok_schema="ApiKey", ok_description="The key, now revoked.", body="RevocationById", errors=(404, 409),
            description="The same as DELETE /api-keys/{key_id}, for clients that send the id in the body."),
    },
    "/api-keys/expiring": {
        "get": _operation(
            "listExpiringKeys", "Keys that need renewal", tag="API keys", scope="keys:read", ok=200,
            ok_schema="ExpiringKeys", ok_description="Soonest expiry first.", errors=(422,),
            description="The renewal-warning list, as on the dashboard: unrevoked keys expiring within `within_days`, "
                        f"and those that expired in the last {policy.EXPIRED_LISTED_DAYS} days.",
            parameters=[_query("within_days", "How far ahead to look; by default the deployment's "
                                              "RENEWAL_WARNING_DAYS.",
                               {"type": "integer", "minimum": 1, "maximum": MAX_DAYS})]),
    },
    "/api-keys/{key_id}": {
        "parameters": [KEY_ID_PARAMETER],
        "get": _operation(
            "getKey", "One key", tag="API keys", scope="keys:read", ok=200, ok_schema="ApiKey",
            ok_description="The key (never its secret).", errors=(404,)),
        "patch": _key_change("updateKey", "Change some of a key's settings", ok_description="The key as changed.",
                             body="ApiKeyChanges", description=(
                                 "Only the fields the body names change, and none may be looser than the calling "
                                 "key's own: no scope it lacks, no higher `rate_limit` (null is no limit), no "
                                 "network outside its `allowed_ips` (empty is anywhere); 403 `insufficient_scope` "
                                 "otherwise. A key may always tighten itself or another key.")),
        "put": _key_change("replaceKey", "Replace a key's settings", ok_description="The key as changed.",
                           body="ApiKeyReplacement", description=(
                               "Fields left out go back to their defaults; `allowed_ips` and `rate_limit` left out "
                               "take the calling key's own, as on create, so a PUT never loosens a key by omission. "
                               "As with PATCH, a value looser than the calling key's own is refused with 403 "
                               "`insufficient_scope`.")),
        "delete": _key_change("revokeKey", "Revoke a key", ok_description="The key, now revoked.", body="Revocation",
                              body_required=False, description="Revoked for good, old rotated secret included."),
    },
    "/api-keys/{key_id}/rotate": _key_action(
        "rotateKey", "Give a key a new secret", ok_schema="ApiKeyWithSecret",
        ok_description="The key with its new secret, shown this once.", ok_headers=SECRET_HEADERS, body="Rotation",
        description="Name, scopes and settings stay; the old secret keeps working for `grace`. The answer hands over a "
                    "working secret, so a key may rotate only a key at least as restricted as itself: holding no "
                    "scope it lacks, expiring no later, with no higher `rate_limit`, `allowed_ips` inside its own and "
                    "no more `remaining_uses` than it has left after this request (403 `insufficient_scope` "
                    "otherwise). A key may rotate itself."),
    "/api-keys/{key_id}/renew": _key_action(
        "renewKey", "Move a key's expiry", ok_description="The key with its new expiry.", body="Renewal",
        description="An expired key becomes usable again."),
    "/api-keys/{key_id}/usage": {
        "parameters": [KEY_ID_PARAMETER],
        "get": _operation(
            "getKeyUsage", "A key's requests per day", tag="API keys", scope="keys:read", ok=200,
            ok_schema="KeyUsage", ok_description="Valid and refused requests per UTC day.", errors=(404, 422),
            parameters=[_query("days", "How many days, up to today.",
                               {"type": "integer", "minimum": 1, "maximum": 90, "default": 30})]),
    },
    "/scopes": {
        "get": _operation(
            "listScopes", "The scope catalogue", tag="Scopes", scope="", ok=200, ok_schema="ScopeCatalogue",
            ok_description="Each scope, what it means and the routes it unlocks."),
    },
    "/whoami": {
        "get": _operation(
            "whoami", "Who the key acts for", tag="Caller", scope="", ok=200, ok_schema="WhoAmI",
            ok_description="The key's owner, display start and scopes."),
    },
    "/keys/verify": {
        "post": {**_operation(
            "verifyKey", "Check a key for one of your services", tag="Verification", scope=None, ok=200,
            ok_schema="VerifyResult", ok_description="The check was made: `valid` and `code` say its outcome.",
            body="VerifyRequest", errors=(401, 422, 503),
            description="For the team's own services and reverse proxies, with a verifier credential an admin issued "
                        "(never an API key). The same rules, counts, rate limits, quotas and audit as Keyfob's own "
                        "routes: a key verified here and used on Keyfob's API shares one rate limit and one quota. "
                        "A completed check answers 200 whatever its outcome. Needs a verifier credential."),
            "security": [{"verifierAuth": []}]},
    },
    "/openapi.json": {
        "get": _operation(
            "getOpenApiDocument", "This document", tag="Meta", scope=None, ok=200, ok_schema="OpenApiDocument",
            ok_description="The OpenAPI 3.1 document of this API."),
    },
}


def build_document() -> dict[str, Any]:
    """The whole document, as a fresh dict."""
    return json.loads(_document_json())


@cache
def _document_json() -> str:
    document = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Keyfob API",
            "version": API_VERSION,
            "summary": "Manage API keys over JSON, with an API key.",
            "description": (
                "Client apps manage their owner's keys exactly as people do on the dashboard. Send a key in the "
                "`Authorization: Bearer <key>` header, never in the URL. A key acts for its owner: another user's "
                "key answers 404. A key never grants more than it holds: a key it creates, changes or rotates is at "
                "least as restricted as itself in scopes, expiry, rate limit, IP allowlist and remaining uses. "
                "Every answer is JSON, and every refusal "
                "has the shape `{\"error\": code, \"message\": text, \"fields\": {name: text}}`."),
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "servers": [{"url": BASE_PATH}],
        "security": [{"bearerAuth": []}],
        "tags": [
            {"name": "API keys", "description": "The owner's keys: list, create, change, rotate, renew, revoke."},
            {"name": "Scopes", "description": "What each scope allows."},
            {"name": "Caller", "description": "The calling key itself."},
            {"name": "Verification", "description": "Services check keys, with a verifier credential."},
            {"name": "Meta", "description": "This document."},
        ],
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "responses": RESPONSES,
            "parameters": PARAMETERS,
            "headers": HEADERS,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "Keyfob API key",
                               "description": "An API key in `Authorization: Bearer <key>`."},
                "verifierAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "Keyfob verifier credential",
                                 "description": "A verifier credential (`<prefix>v_...`) in `Authorization: Bearer`, "
                                                "issued by an admin for one service."},
            },
        },
    }
    return json.dumps(document, indent=1)


@bp.get("/openapi.json")
def openapi_document():
    """Public: the document describes the API and holds no secret."""
    return current_app.response_class(_document_json(), mimetype="application/json")
