"""Verifier credentials: issue (shown once), rotate, revoke, and authenticate a service that presents one.

An admin issues one per service (the admin pages or `flask verifiers create NAME`). Its plaintext exists only in the
answer that creates or rotates it; only an HMAC-SHA256 under KEY_PEPPER is stored, as for keys. It has its own prefix
(`<KEY_PREFIX>v_`) and its own table, so it is never accepted as an API key, nor a key as a verifier credential.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import bindparam, select

from app.audit import service as audit
from app.audit.service import Actor
from app.database import MAX_ID, commit, utcnow
from app.extensions import db
from app.keys import tokens
from app.keys.core import KeyCore, KeySettings, settings
from app.keys.models import VERIFIER_NAME_LENGTH, Verifier
from app.keys.verification import cached_for, cached_lookup

VERIFIER_MARK = "v"  # after KEY_PREFIX: kf -> kfv_...
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
DESCRIPTION_LENGTH = 500


class VerifierError(ValueError):
    """A verifier cannot be made or changed so; `field` names the input at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def credential_prefix(key_settings: KeySettings) -> str:
    """Verifier credentials start `<KEY_PREFIX>v_`: recognisable, and never parsed as a key of this deployment."""
    return key_settings.prefix + VERIFIER_MARK



def _clean_name(name: str | None) -> str:
    name = (name or "").strip().lower()
    if not name:
        raise VerifierError("name", "Name the service, such as billing-service.")
    if len(name) > VERIFIER_NAME_LENGTH or not NAME.match(name):
        raise VerifierError("name", f"Use at most {VERIFIER_NAME_LENGTH} lower-case letters, digits, dots, dashes and "
                                    "underscores, starting with a letter or digit.")
    if db.session.scalar(select(Verifier.id).where(Verifier.name == name)) is not None:
        raise VerifierError("name", f"There is already a verifier named {name}.")
    return name


def _new_secret(verifier: Verifier) -> str:
    key_settings = settings()
    token = tokens.generate(credential_prefix(key_settings))
    verifier.secret_hash = tokens.digest(key_settings.pepper, token)
    verifier.display_start = tokens.parse(token, credential_prefix(key_settings)).display_start
    return token


def create(name: str, *, actor: Actor, description: str = "") -> tuple[Verifier, str]:
    """A new verifier credential, and its plaintext, which is never available again."""
    description = (description or "").strip()
    if len(description) > DESCRIPTION_LENGTH:
        raise VerifierError("description", f"Use at most {DESCRIPTION_LENGTH} characters.")
    verifier = Verifier(name=_clean_name(name), description=description, created_at=utcnow())
    token = _new_secret(verifier)
    db.session.add(verifier)
    db.session.flush()
    audit.record("verifier.created", actor, detail=f"verifier:{verifier.id} {verifier.name}")
    commit(db.session)
    return verifier, token


def _require_active(verifier: Verifier) -> None:
    if verifier.revoked_at is not None:
        raise VerifierError("verifier", "This verifier is revoked; a revoked verifier stays revoked.")


def rotate(verifier: Verifier, *, actor: Actor) -> str:
    """A new secret for the verifier; the old one stops at once (services are switched by their operator)."""
    _require_active(verifier)
    old_start = verifier.display_start
    token = _new_secret(verifier)
    verifier.rotated_at = utcnow()
    audit.record("verifier.rotated", actor, detail=f"verifier:{verifier.id} {verifier.name}; replaces {old_start}")
    commit(db.session)
    return token


def revoke(verifier: Verifier, *, actor: Actor) -> None:
    """Stop the verifier for good: its service can check no key from the next request on."""
    _require_active(verifier)
    verifier.revoked_at = utcnow()
    audit.record("verifier.revoked", actor, detail=f"verifier:{verifier.id} {verifier.name}")
    commit(db.session)


@dataclass(frozen=True, slots=True)
class VerifierIdentity:
    """Who is asking, as the verification faces need it: the id (counts, audit) and the name (metrics)."""

    id: int
    name: str


_VERIFIERS = Verifier.__table__
_LOOKUP = select(_VERIFIERS.c.id, _VERIFIERS.c.name, _VERIFIERS.c.revoked_at).where(
    _VERIFIERS.c.secret_hash == bindparam("digest"))


def authenticate(token: str | None) -> VerifierIdentity | None:
    """The active verifier this credential belongs to, or None. A malformed one costs no query; a known one is read
    through the worker's lookup cache, like a key (a revoke reaches every worker before it answers)."""
    if token is None:
        return None
    core = KeyCore.current()
    prefix = credential_prefix(core.settings)
    digest, found = cached_for(core, core.verifier_cache, token, prefix)
    if found is not None:
        return found
    if tokens.parse(token, prefix) is None:
        return None
    return cached_lookup(core, core.verifier_cache, _LOOKUP, digest, _identity)


def _identity(row) -> VerifierIdentity | None:
    return None if row.revoked_at is not None else VerifierIdentity(row.id, row.name)


def find_verifier(name: str) -> Verifier | None:
    return db.session.scalar(select(Verifier).where(Verifier.name == name.strip().lower()))


def get_verifier(verifier_id: int) -> Verifier | None:
    return db.session.get(Verifier, verifier_id) if 0 < verifier_id <= MAX_ID else None


def list_verifiers() -> list[Verifier]:
    return list(db.session.scalars(select(Verifier).order_by(Verifier.revoked_at.is_not(None), Verifier.name)))
