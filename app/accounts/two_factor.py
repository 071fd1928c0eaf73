"""Two-factor sign-in's core: authenticator codes (TOTP, RFC 6238) and single-use recovery codes.

The TOTP secret is stored encrypted (AES-256-GCM, the user id as associated data, so a ciphertext copied onto another
account does not decrypt) under a key derived from KEY_PEPPER with HKDF-SHA256: a stolen database alone gives no
authenticator away. Each accepted code moves users.totp_last_step forward with a conditional UPDATE, so a code (or an
older one) is never accepted twice, even by two requests racing with it. Recovery codes carry 60 random bits each:
an HMAC-SHA256 under a pepper-derived key stores them safely (nothing to brute-force offline without the pepper) and
is fast, which a slow password hash would only make costly to check. Every change is audited and mailed to the owner.

No request here: the sign-in pages, the account page, the admin pages and the CLI call these functions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import pyotp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import delete, func, or_, select, update

from app.accounts.core import accounts_core
from app.accounts.models import Passkey, RecoveryCode, User
from app.audit import service as audit
from app.database import utcnow
from app.extensions import AppPart, db
from app.mail import outbox

PERIOD = 30  # seconds a code lasts (RFC 6238's default, and what every authenticator app assumes)
DIGITS = 6
RECOVERY_CODE_COUNT = 10
RECOVERY_CODE_LENGTH = 12  # characters of base32: 60 random bits
MAX_CODE_INPUT = 64  # longer input is no code of ours: refused before any work
STORED_FORMAT = "v1"  # how the secret is sealed, so that another way can follow
ISSUER = "Keyfob"
# Security mails about sign-in cannot be switched off (queued with no settings link: the footer says so).
MAIL_REASON = "it is about signing in to your account"

_TOTP_CODE = re.compile(r"[0-9]{6}")
_RECOVERY_CODE = re.compile(r"[a-z2-7]{12}")
_SEPARATORS = re.compile(r"[\s-]+")


class TwoFactorError(ValueError):
    """A two-factor request that cannot be carried out; `field` names the input at fault, `message` says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _derived_key(pepper: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(pepper)


@dataclass(frozen=True)
class TwoFactorSettings(AppPart):
    """The keys derived from KEY_PEPPER, the issuer authenticator apps show, and who must use a second factor."""

    EXTENSION = "keyfob.two_factor"

    secret_key: bytes  # AES-256-GCM key of the stored TOTP secrets
    recovery_key: bytes  # HMAC key of the stored recovery codes
    issuer: str
    for_admins: bool
    for_everyone: bool

    @classmethod
    def from_config(cls, config: Any) -> TwoFactorSettings:
        pepper = config["KEY_PEPPER"].encode()
        base_url = config.get("PUBLIC_BASE_URL")
        return cls(secret_key=_derived_key(pepper, b"keyfob totp secret"),
                   recovery_key=_derived_key(pepper, b"keyfob recovery code"),
                   issuer=(urlsplit(base_url).hostname if base_url else None) or ISSUER,
                   for_admins=config["TWO_FACTOR_FOR_ADMINS"], for_everyone=config["TWO_FACTOR_FOR_EVERYONE"])


def settings() -> TwoFactorSettings:
    return TwoFactorSettings.current()


# -- pure parts ------------------------------------------------------------------------------------------------------

def new_secret() -> str:
    """A fresh TOTP secret: 160 random bits as 32 base32 characters (RFC 4226's recommended length)."""
    return pyotp.random_base32()


def grouped(secret: str) -> str:
    """The secret as people copy it into an app by hand: groups of four."""
    return " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))


def encrypt_secret(key: bytes, secret: str, user_id: int) -> str:
    """The secret as stored: "v1:" and base64 of a random nonce and the AES-GCM ciphertext, bound to the user id."""
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(key).encrypt(nonce, secret.encode(), _associated(user_id))
    return f"{STORED_FORMAT}:" + base64.urlsafe_b64encode(nonce + sealed).decode()


def decrypt_secret(key: bytes, stored: str, user_id: int) -> str:
    """The secret back; TwoFactorError when it was not sealed with this key for this user (or is damaged)."""
    version, _, body = stored.partition(":")
    try:
        if version != STORED_FORMAT:
            raise ValueError(version)
        raw = base64.urlsafe_b64decode(body.encode())
        return AESGCM(key).decrypt(raw[:12], raw[12:], _associated(user_id)).decode()
    except (ValueError, InvalidTag):
        raise TwoFactorError("code", "The authenticator's secret cannot be read: was KEY_PEPPER changed? "
                                     "An admin can reset your second factor.") from None


def _associated(user_id: int) -> bytes:
    return f"keyfob user {user_id}".encode()


@dataclass(frozen=True)
class Code:
    kind: str  # "totp" or "recovery"
    value: str


def parse_code(text: str | None) -> Code:
    """What someone typed, as an authenticator code (six ASCII digits) or a recovery code (twelve base32 letters and
    digits, any case, with or without spaces or hyphens); TwoFactorError for anything else. Digits of other scripts
    are refused, not read: no authenticator shows them."""
    text = (text or "")[:MAX_CODE_INPUT + 1]
    if len(text) > MAX_CODE_INPUT:
        raise TwoFactorError("code", "That is far too long to be a code.")
    compact = _SEPARATORS.sub("", text).lower()
    if not compact:
        raise TwoFactorError("code", "Enter the code from your authenticator app.")
    if _TOTP_CODE.fullmatch(compact):
        return Code("totp", compact)
    if _RECOVERY_CODE.fullmatch(compact):
        return Code("recovery", compact)
    raise TwoFactorError("code", "Enter the 6 digits your authenticator app shows, or one of your recovery codes.")


def otpauth_uri(secret: str, email: str, issuer: str) -> str:
    """The otpauth:// URI authenticator apps read from the QR code."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD).provisioning_uri(name=email, issuer_name=issuer)


def time_step(now: datetime) -> int:
    return int(now.timestamp()) // PERIOD


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step (now's, or one either side for clock drift: valid_window=1) whose code this is, else None."""
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD)
    current = time_step(now)
    found = None
    for step in (current - 1, current, current + 1):
        # Every candidate is compared (constant time each), so the answer's timing says nothing about which matched.
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    return found


def recovery_code_hash(key: bytes, code: str) -> str:
    return hmac.new(key, code.encode(), hashlib.sha256).hexdigest()


def new_recovery_code() -> str:
    return "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz234567") for _ in range(RECOVERY_CODE_LENGTH))


def shown_recovery_code(code: str) -> str:
    return "-".join(code[i:i + 4] for i in range(0, len(code), 4))


# -- the account's state ---------------------------------------------------------------------------------------------

def is_enabled(user: User) -> bool:
    """Whether the authenticator app (TOTP) is on."""
    return user.totp_enabled_at is not None


def has_second_factor(user: User) -> bool:
    """Whether signing in asks this user for a second step: an authenticator app, or a passkey
    (app/accounts/passkeys.py), or both."""
    return is_enabled(user) or db.session.scalar(select(Passkey.id).where(Passkey.user_id == user.id).limit(1)) \
        is not None


def is_required(user: User) -> bool:
    """Whether the policy asks this user for a second factor (TWO_FACTOR_FOR_ADMINS, TWO_FACTOR_FOR_EVERYONE)."""
    policy = settings()
    return policy.for_everyone or (user.is_admin and policy.for_admins)


def must_enrol(user: User) -> bool:
    """The policy asks for a second factor this user has not set up: they are sent to set it up first."""
    return is_required(user) and not has_second_factor(user)


def recovery_codes_left(user: User) -> int:
    return db.session.scalar(select(func.count(RecoveryCode.id)).where(
        RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))) or 0


# -- checking a code -------------------------------------------------------------------------------------------------

def _accept_step(user_id: int, step: int) -> bool:
    """Record `step` as the last one accepted, unless it (or a later one) already was: one UPDATE, so of two requests
    racing with the same code exactly one passes (PostgreSQL locks the row; SQLite allows one writer)."""
    result = db.session.execute(
        update(User).where(User.id == user_id, or_(User.totp_last_step.is_(None), User.totp_last_step < step))
        .values(totp_last_step=step).execution_options(synchronize_session=False))
    return result.rowcount == 1


def verify_code(user: User, code: str, now: datetime | None = None) -> bool:
    """Whether `code` (six digits) is the user's current authenticator code and has not been accepted before. An
    accepted code's step is recorded in the current transaction (the caller commits)."""
    if not is_enabled(user) or user.totp_secret is None:
        return False
    secret = decrypt_secret(settings().secret_key, user.totp_secret, user.id)
    step = matching_step(secret, code, now or utcnow())
    if step is None or not _accept_step(user.id, step):
        return False
    db.session.expire(user, ["totp_last_step"])
    return True


def _spend_recovery_code(user: User, code: str, now: datetime) -> bool:
    """Mark the unused recovery code as used, in one conditional UPDATE (so it is spent once); False if none is."""
    result = db.session.execute(
        update(RecoveryCode).where(RecoveryCode.user_id == user.id,
                                   RecoveryCode.code_hash == recovery_code_hash(settings().recovery_key, code),
                                   RecoveryCode.used_at.is_(None))
        .values(used_at=now).execution_options(synchronize_session=False))
    return result.rowcount == 1


def _check(user: User, typed: str | None, now: datetime, actor) -> str:
    """Check a code or recovery code of an enrolled user (in the current transaction): the kind that passed, or
    TwoFactorError. A spent recovery code is audited and mailed here, whatever the caller does next."""
    code = parse_code(typed)
    if code.kind == "totp":
        if verify_code(user, code.value, now):
            return "code"
        raise TwoFactorError("code", "That code is not right, or it has been used already. Wait for the next one.")
    if not _spend_recovery_code(user, code.value, now):
        raise TwoFactorError("code", "That recovery code is not right, or it has been used already.")
    left = recovery_codes_left(user)
    audit.record("user.recovery_code_used", actor, detail=f"user:{user.id} {user.email} ({left} left)")
    mail_owner(user, "A recovery code of your Keyfob account was used",
          f"One of the recovery codes of {user.email} was just used in place of a code from your authenticator app. "
          f"You have {left} left.\n\nIf this was not you, change your password and make a new set of recovery codes "
          f"on your account page at once.")
    return "recovery"


def _checked(user: User, typed: str | None, now: datetime, actor) -> str:
    """_check, with a refusal audited ("user.two_factor_failed") and committed on its own before TwoFactorError is
    raised: whatever else the caller meant to write is dropped with it."""
    try:
        return _check(user, typed, now, actor)
    except TwoFactorError as error:
        db.session.rollback()
        audit.record("user.two_factor_failed", actor, detail=f"user:{user.id} {user.email}: {error.message}")
        db.session.commit()
        raise


def pass_second_step(user: User, typed: str | None, *, actor, now: datetime | None = None) -> str:
    """The second step of signing in: the kind of code that passed ("code" or "recovery"), or TwoFactorError (the
    refusal audited). Commits either way."""
    kind = _checked(user, typed, now or utcnow(), actor)
    db.session.commit()
    return kind


# -- enrolment, removal, recovery codes, reset -----------------------------------------------------------------------

def _issue_recovery_codes(user: User, now: datetime) -> list[str]:
    """Replace the user's recovery codes with ten new ones (in the current transaction); the plaintexts, shown once."""
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = [new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    key = settings().recovery_key
    db.session.add_all(RecoveryCode(user_id=user.id, code_hash=recovery_code_hash(key, code), created_at=now)
                       for code in codes)
    return [shown_recovery_code(code) for code in codes]


def enable(user: User, secret: str, typed: str | None, *, actor, now: datetime | None = None) -> list[str]:
    """Switch the authenticator on once `typed` proves the app holds `secret`: stores it encrypted, makes ten
    recovery codes (returned, to be shown once), audits and mails. TwoFactorError for a wrong code. Commits."""
    now = now or utcnow()
    if is_enabled(user):
        raise TwoFactorError("code", "Two-factor sign-in is already on. Switch it off first to use another app.")
    code = parse_code(typed)
    step = matching_step(secret, code.value, now) if code.kind == "totp" else None
    if step is None:
        raise TwoFactorError("code", "That code does not match. Check the app shows Keyfob's new entry, and that "
                                     "your device's clock is right.")
    user.totp_secret = encrypt_secret(settings().secret_key, secret, user.id)
    user.totp_enabled_at = now
    user.totp_last_step = step  # the confirming code cannot sign in as well
    codes = _issue_recovery_codes(user, now)
    audit.record("user.two_factor_enabled", actor, detail=f"user:{user.id} {user.email}")
    mail_owner(user, "Two-factor sign-in is on for your Keyfob account",
          f"An authenticator app was just set up as the second step of signing in to Keyfob as {user.email}, with "
          f"ten recovery codes.\n\nIf this was not you, someone has your password: change it, and ask an admin to "
          f"reset your second factor.")
    db.session.commit()
    return codes


def _clear(user: User) -> None:
    user.totp_secret = None
    user.totp_enabled_at = None
    user.totp_last_step = None
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))


def disable(user: User, password: str | None, typed: str | None, *, actor, now: datetime | None = None) -> None:
    """Switch two-factor sign-in off: needs the password and a current code (or a recovery code, for someone who
    has lost the app). Audited and mailed; TwoFactorError naming the field at fault. Commits."""
    now = now or utcnow()
    if not is_enabled(user):
        raise TwoFactorError("code", "Two-factor sign-in is not on.")
    if not accounts_core().hasher.verify(user.password_hash, password or ""):
        raise TwoFactorError("password", "The password is not right.")
    _checked(user, typed, now, actor)
    _clear(user)
    audit.record("user.two_factor_disabled", actor, detail=f"user:{user.id} {user.email}")
    if has_second_factor(user):  # passkeys stay: sign-in still has its second step
        mail_owner(user, "Authenticator codes are off for your Keyfob account",
                   f"Authenticator-app codes were just switched off for {user.email}; your passkeys still guard "
                   f"sign-in.\n\nIf this was not you, change your password and check your account page.")
    else:
        mail_owner(user, "Two-factor sign-in is off for your Keyfob account",
                   f"Two-factor sign-in was just switched off for {user.email}: your password alone signs you in "
                   f"now.\n\nIf this was not you, change your password and switch it on again from your account "
                   f"page.")
    db.session.commit()


def prove_password_or_code(user: User, proof: str | None, now: datetime) -> None:
    """Check that `proof` is the user's password or a current authenticator code (a code's step is then spent, in
    the current transaction); TwoFactorError("proof") otherwise."""
    proof = (proof or "")[:1024]
    compact = _SEPARATORS.sub("", proof)
    if _TOTP_CODE.fullmatch(compact) and is_enabled(user):  # no password is six digits (passwords.MIN_LENGTH)
        if not verify_code(user, compact, now):
            db.session.rollback()
            raise TwoFactorError("proof", "That code is not right, or it has been used already.")
    elif not accounts_core().hasher.verify(user.password_hash, proof):
        raise TwoFactorError("proof", "That is neither your password nor a current code.")


def renew_recovery_codes(user: User, proof: str | None, *, actor, now: datetime | None = None) -> list[str]:
    """A new set of ten recovery codes (the old set stops working), once `proof` is the password or a current
    code. Audited and mailed; returns the codes to show once. TwoFactorError. Commits."""
    now = now or utcnow()
    if not is_enabled(user):
        raise TwoFactorError("proof", "Two-factor sign-in is not on.")
    prove_password_or_code(user, proof, now)
    codes = _issue_recovery_codes(user, now)
    audit.record("user.recovery_codes_renewed", actor, detail=f"user:{user.id} {user.email}")
    mail_owner(user, "New recovery codes for your Keyfob account",
          f"A new set of ten recovery codes was just made for {user.email}; the earlier codes no longer work.\n\n"
          f"If this was not you, change your password at once.")
    db.session.commit()
    return codes


def reset(user: User, *, actor) -> None:
    """An admin's (or the CLI's) reset: the user's authenticator, recovery codes and passkeys are removed, so they
    sign in with the password alone (and set a factor up again when the policy asks). Nobody resets their own this way:
    switching it off needs the factor. Audited ("user.two_factor_reset") and mailed. TwoFactorError. Commits."""
    if actor.user_id is not None and actor.user_id == user.id:
        raise TwoFactorError("user", "You cannot reset your own second factor here: switch it off from your "
                                     "account page (it needs a code), or ask another admin.")
    if not has_second_factor(user):
        raise TwoFactorError("user", f"{user.email} has no second factor to reset.")
    _clear(user)
    db.session.execute(delete(Passkey).where(Passkey.user_id == user.id))
    audit.record("user.two_factor_reset", actor, detail=f"user:{user.id} {user.email}")
    mail_owner(user, "Your Keyfob second factor was reset",
          f"An administrator reset the second factor of {user.email}: your password alone signs you in now, and "
          f"your recovery codes and passkeys no longer work. Set up an authenticator or a passkey again from your "
          f"account page.\n\n"
          f"If you did not ask for this, tell your administrator.")
    db.session.commit()


def mail_owner(user: User, subject: str, text: str) -> None:
    """Tell the owner (in the current transaction, when mail is on)."""
    outbox.queue(user.email, subject, text, reason=MAIL_REASON, settings_link=None)
