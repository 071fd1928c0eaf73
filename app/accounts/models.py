"""The User account."""

from __future__ import annotations

import secrets
from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import BigInteger, ForeignKey, LargeBinary, String, false, true
from sqlalchemy.orm import Mapped, mapped_column

from app.database import UTCDateTime, utcnow
from app.extensions import db


def new_session_nonce() -> str:
    return secrets.token_urlsafe(16)


class User(UserMixin, db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stored normalised (see accounts.service.normalise_email), so the unique index is case-insensitive in effect.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(default=False, server_default=false())
    is_active: Mapped[bool] = mapped_column(default=True, server_default=true())
    # Part of the session's user id: changing it (at logout) makes every earlier session cookie worthless,
    # which a signed client-side cookie cannot otherwise promise.
    session_nonce: Mapped[str] = mapped_column(String(32), default=new_session_nonce)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # None until the owner follows the link mailed at sign-up (when EMAIL_CONFIRMATION is on): until then the
    # account cannot create keys. Accounts made by an admin or the CLI, or before confirmation existed, are set.
    email_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Signed into the one password-reset link that may work now; a newer link or a use replaces it (None: none).
    reset_nonce: Mapped[str | None] = mapped_column(String(32))
    # Signed into the secret URL of the expiry calendar feed; resetting the URL replaces it (None: no feed yet).
    calendar_nonce: Mapped[str | None] = mapped_column(String(32))
    # Which mails the owner wants (the account page's notification settings); each mail links to its switch.
    notify_expiry: Mapped[bool] = mapped_column(default=True, server_default=true())
    notify_suspension: Mapped[bool] = mapped_column(default=True, server_default=true())
    notify_new_network: Mapped[bool] = mapped_column(default=True, server_default=true())
    notify_admin_action: Mapped[bool] = mapped_column(default=True, server_default=true())
    # Two-factor sign-in (app/accounts/two_factor.py): the authenticator's TOTP secret, AES-GCM encrypted under a key
    # derived from KEY_PEPPER with the user id as associated data; when it was switched on (None: off); and the last
    # 30-second time step a code was accepted for, so that no code is accepted twice.
    totp_secret: Mapped[str | None] = mapped_column(String(128))
    totp_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger())

    def get_id(self) -> str:
        return f"{self.id}:{self.session_nonce}"

    def __repr__(self) -> str:
        return f"<User {self.id} {self.email}>"


class RecoveryCode(db.Model):
    """One of the ten single-use codes that pass the second step without the authenticator: only its HMAC-SHA256 is
    kept, and used_at is set (once, by a conditional update) when it is spent."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Passkey(db.Model):
    """A WebAuthn credential (a passkey) that passes the second step of signing in (app/accounts/passkeys.py): its
    id and COSE public key as the authenticator gave them at registration, the signature counter last seen (0 for
    authenticators that keep none), and a name its owner chose."""

    __tablename__ = "passkeys"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # The credential id, base64url without padding (as WebAuthn's JSON carries it): at most 1023 bytes raw.
    credential_id: Mapped[str] = mapped_column(String(1366), unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    name: Mapped[str] = mapped_column(String(64))
    transports: Mapped[str] = mapped_column(String(128), default="")  # comma-separated hints: "internal,hybrid"
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Moved forward by each accepted assertion, with a conditional update: a challenge issued before it is stale.
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
