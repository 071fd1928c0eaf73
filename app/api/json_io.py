"""JSON in and out for the API: reading a request body strictly, checking field types, and the key's JSON form.

Every refusal is an ApiError carrying the status, the error code and, where particular fields are at fault, a
message per field; the blueprint turns it into the one JSON error shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from flask import request

from app import dates
from app.keys.models import ApiKey

# Fields a key has that no request may set: they are the server's record of the key.
READ_ONLY = {"id", "start", "status", "created_at", "revoked_at", "revoked_reason", "suspended_until", "last_used_at",
             "last_used_ip", "usage_count", "previous_secret_expires_at", "owner", "user_id", "secret",
             "secret_hash", "display_start"}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, fields: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, dict(fields or {})


def invalid(fields: Mapping[str, str]) -> ApiError:
    return ApiError(422, "validation_failed", "Some fields are not valid: " + ", ".join(sorted(fields)) + ".", fields)


def json_body(allowed: Iterable[str], *, optional: bool = False) -> dict[str, Any]:
    """The request's JSON object, holding only `allowed` fields. An empty body counts as {} when `optional`."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if optional:
            return {}
        raise ApiError(400, "malformed_json", "Send a JSON object in the request body.")
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "Send the body as JSON with Content-Type: application/json.")
    body = request.get_json()  # app/request_body.py's strict parser: an object, or a BodyError (400 or 422)
    allowed = set(allowed)
    unknown = {name: ("Cannot be set: the server keeps this." if name in READ_ONLY else "Unknown field.")
               for name in body if name not in allowed}
    if unknown:
        raise ApiError(400, "unknown_fields", "Unknown or read-only fields: " + ", ".join(sorted(unknown)) + ".",
                       unknown)
    return body


# -- field checks: each returns the value or raises ApiError 422 naming the field --------------------------------

def text(body: Mapping[str, Any], name: str, *, required: bool = False, nullable: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise invalid({name: "Required."})
        if name in body and not nullable:
            raise invalid({name: "Must be text, not null."})
        return None
    if not isinstance(value, str):
        raise invalid({name: "Must be text."})
    return value


def text_list(body: Mapping[str, Any], name: str) -> list[str] | None:
    value = body.get(name)
    if value is None:
        if name in body:
            raise invalid({name: "Must be a list of text, not null."})
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise invalid({name: "Must be a list of text."})
    return value


def whole_number(value: Any, name: str, low: int, high: int) -> int:
    # bool is an int in Python but never a count in JSON.
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid({name: "Must be a whole number."})
    if not low <= value <= high:
        raise invalid({name: f"Must be between {low:,} and {high:,}."})
    return value


def optional_number(body: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    """A whole number, or None when absent or null."""
    value = body.get(name)
    return None if value is None else whole_number(value, name, low, high)


def boolean(body: Mapping[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is None:
        if name in body:
            raise invalid({name: "Must be true or false, not null."})
        return None
    if not isinstance(value, bool):
        raise invalid({name: "Must be true or false."})
    return value


def timestamp(body: Mapping[str, Any], name: str) -> datetime | None:
    """An RFC 3339 date-time with a zone, such as 2027-01-31T00:00:00Z."""
    value = text(body, name)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise invalid({name: "Must be a date-time such as 2027-01-31T00:00:00Z."}) from None
    if moment.tzinfo is None:
        raise invalid({name: "Give a time zone, such as 2027-01-31T00:00:00Z."})
    if not dates.in_range(moment):
        raise invalid({name: dates.OUT_OF_RANGE})
    return moment


def query_number(name: str, low: int, high: int, default: int | None = None) -> int | None:
    value = request.args.get(name)
    if value is None:
        return default
    if not (value.isascii() and value.strip().isdigit()):  # isdigit() alone accepts "²", which int() refuses
        raise invalid({name: "Must be a whole number."})
    return whole_number(int(value), name, low, high)


# -- out -------------------------------------------------------------------------------------------------------------

def _moment(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def key_json(key: ApiKey, now: datetime, warning_days: int) -> dict[str, Any]:
    """A key as the API shows it: every setting and fact, never its secret or digest."""
    return {
        "id": key.id,
        "name": key.name,
        "description": key.description,
        "start": key.display_start,
        "scopes": list(key.scopes),
        "status": key.badge(now, warning_days),
        "created_at": _moment(key.created_at),
        "expires_at": _moment(key.expires_at),
        "revoked_at": _moment(key.revoked_at),
        "revoked_reason": key.revoked_reason,
        "disabled": key.disabled,
        "suspended_until": _moment(key.suspended_until),
        "last_used_at": _moment(key.last_used_at),
        "last_used_ip": key.last_used_ip,
        "usage_count": key.usage_count,
        "allowed_ips": list(key.allowed_ips),
        "rate_limit": key.rate_limit,
        "remaining_uses": key.remaining_uses,
        "previous_secret_expires_at": _moment(key.previous_secret_expires_at),
    }
