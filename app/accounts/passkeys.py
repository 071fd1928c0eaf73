"""Passkeys (WebAuthn credentials) as a second factor: registering one, passing the second step of signing in with
one, and removing one.

The ceremonies are verified by py_webauthn (PyPI `webauthn`): client data, origin, relying-party id hash, flags,
attestation ("none" asked for: Keyfob trusts the account, not the make of authenticator) and signatures. The
relying party is PUBLIC_BASE_URL's host and its origin (relying_party()); without one a browser accepts, passkeys are
off and the account page says why.

A challenge lives in the (signed, client-side) session, so popping it there cannot make it single use against a
replayed cookie: each accepted assertion moves its passkey's last_used_at forward with a conditional UPDATE that
needs the challenge to be younger than it, so an answer to the same (or any older) challenge is never accepted again,
even by two requests racing with it. A signature counter that does not go up (when the authenticator keeps one) is
refused and audited as a possible cloned authenticator.

No request here: the views of app/auth/passkeys.py hold the challenge in the session and call these functions.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import webauthn
from sqlalchemy import func, or_, select, update
from webauthn.helpers import bytes_to_base64url, parse_authentication_credential_json
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from app.accounts import two_factor
from app.accounts.models import Passkey, User
from app.audit import service as audit
from app.database import utcnow
from app.extensions import AppPart, db

RP_NAME = "Keyfob"
MAX_PASSKEYS = 20  # per account: enough for every device someone owns, and a bound on allowCredentials
MAX_CREDENTIAL_CHARS = 64 * 1024  # a credential's JSON is a few kB; longer is no credential
NAME_LENGTH = 64
CHALLENGE_LIFETIME = timedelta(minutes=5)  # as long as the pending sign-in it belongs to
TIMEOUT_MS = 120_000  # how long the browser waits for the authenticator
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_USED = "That passkey answer was used already: try again."
_TRANSPORTS = {transport.value for transport in AuthenticatorTransport}


class PasskeyError(ValueError):
    """A passkey request that cannot be carried out; `field` names the input at fault, `message` says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def relying_party(base_url: str | None) -> tuple[str, str] | str:
    """The relying-party id (the host) and origin (scheme://host[:port]) of PUBLIC_BASE_URL, or why a browser would
    refuse WebAuthn there (no URL, an IP address, plain HTTP off localhost)."""
    if not base_url:
        return "PUBLIC_BASE_URL is not set: passkeys are bound to the name people reach Keyfob at."
    parts = urlsplit(base_url)
    host = (parts.hostname or "").lower()
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return f"PUBLIC_BASE_URL names an IP address ({host}): browsers allow passkeys only on a domain name."
    local = host == "localhost" or host.endswith(".localhost")
    if parts.scheme != "https" and not local:
        return "PUBLIC_BASE_URL is not https: browsers allow passkeys only over HTTPS (or on localhost)."
    origin = f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")
    return host, origin


@dataclass(frozen=True)
class PasskeySettings(AppPart):
    """The relying party passkeys are bound to, or why there is none (then passkeys are off)."""

    EXTENSION = "keyfob.passkeys"

    rp_id: str | None
    origin: str | None
    unavailable: str | None

    @classmethod
    def from_config(cls, config: Any) -> PasskeySettings:
        found = relying_party(config.get("PUBLIC_BASE_URL"))
        if isinstance(found, str):
            return cls(rp_id=None, origin=None, unavailable=found)
        return cls(rp_id=found[0], origin=found[1], unavailable=None)


def settings() -> PasskeySettings:
    return PasskeySettings.current()


def available() -> bool:
    return settings().unavailable is None


def _relying_party() -> PasskeySettings:
    found = settings()
    if found.unavailable is not None:
        raise PasskeyError("credential", f"Passkeys are off on this Keyfob. {found.unavailable}")
    return found


# -- the account's passkeys ------------------------------------------------------------------------------------------

def passkeys_of(user: User) -> list[Passkey]:
    return list(db.session.scalars(select(Passkey).where(Passkey.user_id == user.id).order_by(Passkey.id)))


def count(user: User) -> int:
    return db.session.scalar(select(func.count(Passkey.id)).where(Passkey.user_id == user.id)) or 0


def _descriptors(user: User) -> list[PublicKeyCredentialDescriptor]:
    return [PublicKeyCredentialDescriptor(
                id=webauthn.base64url_to_bytes(passkey.credential_id),
                transports=[AuthenticatorTransport(t) for t in passkey.transports.split(",") if t in _TRANSPORTS])
            for passkey in passkeys_of(user)]


def user_handle(user: User) -> bytes:
    """The WebAuthn user handle: the account id's 8 bytes, no personal data (the spec asks for none)."""
    return user.id.to_bytes(8, "big")


def clean_name(text: str | None) -> str:
    """A passkey's name as stored: trimmed, 1 to 64 characters, no control characters; PasskeyError otherwise."""
    name = (text or "").strip()
    if not name:
        raise PasskeyError("name", "Give the passkey a name, such as the device it is on.")
    if len(name) > NAME_LENGTH:
        raise PasskeyError("name", f"Keep the name to {NAME_LENGTH} characters.")
    if _CONTROL.search(name):
        raise PasskeyError("name", "The name cannot hold control characters.")
    return name


def _credential_text(text: str | None) -> str:
    text = text or ""
    if not text.strip():
        raise PasskeyError("credential", "No passkey answer came with the form: using a passkey needs JavaScript.")
    if len(text) > MAX_CREDENTIAL_CHARS:
        raise PasskeyError("credential", "That is far too long to be a passkey's answer.")
    return text


# -- registering one -------------------------------------------------------------------------------------------------

def registration_options(user: User) -> tuple[str, bytes]:
    """The options for navigator.credentials.create() (JSON) and their challenge, to keep until the answer comes."""
    party = _relying_party()
    if count(user) >= MAX_PASSKEYS:
        raise PasskeyError("name", f"An account holds at most {MAX_PASSKEYS} passkeys: remove one first.")
    options = webauthn.generate_registration_options(
        rp_id=party.rp_id, rp_name=RP_NAME, user_id=user_handle(user), user_name=user.email,
        user_display_name=user.email, timeout=TIMEOUT_MS, exclude_credentials=_descriptors(user),
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED, user_verification=UserVerificationRequirement.PREFERRED))
    return webauthn.options_to_json(options), options.challenge


def register(user: User, name: str | None, credential: str | None, challenge: bytes | None, *, actor,
             now: datetime | None = None) -> Passkey:
    """Keep the passkey the browser created for `challenge`: verified, named, audited ("user.passkey_added") and
    mailed. PasskeyError naming the field at fault. Commits."""
    now = now or utcnow()
    party = _relying_party()
    name = clean_name(name)
    text = _credential_text(credential)
    if challenge is None:
        raise PasskeyError("credential", "This passkey request has expired: try again.")
    if count(user) >= MAX_PASSKEYS:
        raise PasskeyError("name", f"An account holds at most {MAX_PASSKEYS} passkeys: remove one first.")
    try:
        verified = webauthn.verify_registration_response(
            credential=text, expected_challenge=challenge, expected_rp_id=party.rp_id,
            expected_origin=party.origin)
        transports = json.loads(text).get("response", {}).get("transports") or []
    except (WebAuthnException, ValueError, TypeError, KeyError, IndexError, AttributeError) as error:
        raise PasskeyError("credential", f"The passkey could not be verified: {_reason(error)}") from None
    credential_id = bytes_to_base64url(verified.credential_id)
    if db.session.scalar(select(Passkey.id).where(Passkey.credential_id == credential_id)) is not None:
        raise PasskeyError("credential", "That passkey is registered already.")
    passkey = Passkey(user_id=user.id, credential_id=credential_id, public_key=verified.credential_public_key,
                      sign_count=verified.sign_count, name=name, created_at=now,
                      transports=",".join(t for t in transports if isinstance(t, str) and t in _TRANSPORTS)[:128])
    db.session.add(passkey)
    audit.record("user.passkey_added", actor, detail=f"user:{user.id} {user.email} passkey {name!r}")
    two_factor.mail_owner(user, "A passkey was added to your Keyfob account",
                          f"A passkey named {name!r} was just registered as a second step of signing in to Keyfob "
                          f"as {user.email}.\n\nIf this was not you, someone has your password: change it, remove "
                          f"the passkey from your account page, or ask an admin to reset your second factor.")
    db.session.commit()
    return passkey


def _reason(error: Exception) -> str:
    """What went wrong, in a sentence, without echoing long input back."""
    text = str(error).split(". See __cause__")[0].strip() or "the answer is malformed"
    return text[:200].rstrip(".") + "."


# -- the second step of signing in -----------------------------------------------------------------------------------

def authentication_options(user: User) -> tuple[str, bytes]:
    """The options for navigator.credentials.get() (JSON, listing the user's passkeys only) and their challenge."""
    party = _relying_party()
    descriptors = _descriptors(user)
    if not descriptors:
        raise PasskeyError("credential", "This account has no passkey.")
    options = webauthn.generate_authentication_options(
        rp_id=party.rp_id, timeout=TIMEOUT_MS, allow_credentials=descriptors,
        user_verification=UserVerificationRequirement.PREFERRED)
    return webauthn.options_to_json(options), options.challenge


def _verify_assertion(user: User, text: str, challenge: bytes, issued: datetime, now: datetime, actor) -> Passkey:
    party = _relying_party()
    if now - issued > CHALLENGE_LIFETIME or issued > now:
        raise PasskeyError("credential", "This passkey request has expired: try again.")
    try:
        credential_id = parse_authentication_credential_json(text).id
    except (WebAuthnException, ValueError, TypeError) as error:
        raise PasskeyError("credential", f"The passkey's answer is malformed: {_reason(error)}") from None
    passkey = db.session.scalar(select(Passkey).where(Passkey.user_id == user.id,
                                                      Passkey.credential_id == credential_id))
    if passkey is None:
        raise PasskeyError("credential", "That passkey is not one of this account's.")
    try:
        # The counter is checked below, after the signature: only a real authenticator's answer says "clone".
        verified = webauthn.verify_authentication_response(
            credential=text, expected_challenge=challenge, expected_rp_id=party.rp_id, expected_origin=party.origin,
            credential_public_key=passkey.public_key, credential_current_sign_count=0)
    except (WebAuthnException, ValueError, TypeError, KeyError, IndexError) as error:
        raise PasskeyError("credential", f"The passkey could not be verified: {_reason(error)}") from None
    if passkey.last_used_at is not None and issued <= passkey.last_used_at:
        raise PasskeyError("credential", _USED)
    new_count = verified.new_sign_count
    if (new_count or passkey.sign_count) and new_count <= passkey.sign_count:
        raise PasskeyError("clone", f"The passkey {passkey.name!r} answered with a signature counter that did not go "
                                    f"up ({new_count}, last {passkey.sign_count}): it may have been copied. It was "
                                    f"not accepted.")
    moved = db.session.execute(
        update(Passkey).where(Passkey.id == passkey.id, Passkey.sign_count == passkey.sign_count,
                              or_(Passkey.last_used_at.is_(None), Passkey.last_used_at < issued))
        .values(sign_count=new_count, last_used_at=now).execution_options(synchronize_session=False))
    if moved.rowcount != 1:
        raise PasskeyError("credential", _USED)
    db.session.expire(passkey)
    return passkey


def pass_second_step(user: User, credential: str | None, challenge: bytes | None, issued: datetime | None, *,
                     actor, now: datetime | None = None) -> Passkey:
    """The second step of signing in with a passkey: the passkey that passed, or PasskeyError. A refusal is audited
    ("user.two_factor_failed"; a counter that did not go up as "user.passkey_clone_suspected") and committed on its
    own. Commits either way."""
    now = now or utcnow()
    try:
        text = _credential_text(credential)
        if challenge is None or issued is None:
            raise PasskeyError("credential", "This passkey request has expired: try again.")
        passkey = _verify_assertion(user, text, challenge, issued, now, actor)
    except PasskeyError as error:
        db.session.rollback()
        event = "user.passkey_clone_suspected" if error.field == "clone" else "user.two_factor_failed"
        audit.record(event, actor, detail=f"user:{user.id} {user.email}: passkey: {error.message}")
        db.session.commit()
        raise
    db.session.commit()
    return passkey


# -- removing one, and a reset ---------------------------------------------------------------------------------------

def remove(user: User, passkey_id: int, proof: str | None, *, actor, now: datetime | None = None) -> str:
    """Remove one of the user's passkeys once `proof` is the password or a current authenticator code: its name.
    Audited ("user.passkey_removed") and mailed. PasskeyError. Commits."""
    passkey = db.session.scalar(select(Passkey).where(Passkey.id == passkey_id, Passkey.user_id == user.id))
    if passkey is None:
        raise PasskeyError("passkey", "That passkey is not one of yours (or was removed already).")
    try:
        two_factor.prove_password_or_code(user, proof, now or utcnow())
    except two_factor.TwoFactorError as error:
        raise PasskeyError("proof", error.message) from None
    name = passkey.name
    db.session.delete(passkey)
    audit.record("user.passkey_removed", actor, detail=f"user:{user.id} {user.email} passkey {name!r}")
    two_factor.mail_owner(user, "A passkey was removed from your Keyfob account",
                          f"The passkey named {name!r} was just removed from {user.email}: it no longer signs you "
                          f"in.\n\nIf this was not you, change your password at once.")
    db.session.commit()
    return name

