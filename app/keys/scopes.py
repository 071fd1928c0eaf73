"""The scope catalogue: built-in scopes for managing keys, plus the deployment's own."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping

BUILT_IN = {
    "keys:read": "See your API keys, their settings and usage",
    "keys:write": "Create, change, rotate and revoke your API keys",
}
SCOPE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9:._-]{0,63}")


class UnknownScopeError(ValueError):
    def __init__(self, unknown: Iterable[str]) -> None:
        self.unknown = sorted(unknown)
        super().__init__(f"Unknown scope{'s' if len(self.unknown) > 1 else ''}: {', '.join(self.unknown)}")


def parse_catalogue(value: str | Mapping[str, str]) -> dict[str, str]:
    """The built-in scopes plus `value` (a JSON object or a mapping of name to description)."""
    extra = json.loads(value) if isinstance(value, str) else dict(value)
    if not isinstance(extra, dict):
        raise ValueError("must be a JSON object of scope name to description")
    for name, description in extra.items():
        if not SCOPE_NAME.fullmatch(str(name)) or not isinstance(description, str):
            raise ValueError(f"has a bad entry {name!r}: names are letters, digits and :._- ; descriptions text")
    return {**BUILT_IN, **extra}


def normalise_scopes(requested: Iterable[str], catalogue: Mapping[str, str]) -> tuple[str, ...]:
    """Sorted unique scopes, or UnknownScopeError naming the ones the catalogue lacks."""
    scopes = {scope.strip() for scope in requested if scope and scope.strip()}
    unknown = scopes - set(catalogue)
    if unknown:
        raise UnknownScopeError(unknown)
    return tuple(sorted(scopes))


def to_text(scopes: Iterable[str]) -> str:
    """Stored as OAuth's space-separated scope string (RFC 6749 section 3.3)."""
    return " ".join(sorted(set(scopes)))


def from_text(text: str | None) -> tuple[str, ...]:
    return tuple(text.split()) if text else ()
