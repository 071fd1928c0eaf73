"""API key records, their daily usage rollup, and verifier credentials (the services that check keys)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import BigInteger, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.accounts.models import User
from app.database import MAX_ID, UTCDateTime, utcnow
from app.extensions import db
from app.keys import scopes as scope_text

# The largest key id the id column holds (32 bits on PostgreSQL); a larger one (from a URL, say) names no key.
MAX_KEY_ID = MAX_ID


class ApiKey(db.Model):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(500), default="", server_default="")
    # OAuth-style space-separated scope names (see app.keys.scopes); `scopes` gives them as a tuple.
    scope_text: Mapped[str] = mapped_column("scopes", String(2000), default="", server_default="")
    # HMAC-SHA256 digests; the plaintext key is never stored. The previous digest stays valid until
    # previous_secret_expires_at after a rotation with a grace period.
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    previous_secret_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    display_start: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_reason: Mapped[str | None] = mapped_column(String(500))
    disabled: Mapped[bool] = mapped_column(default=False, server_default=false())
    suspended_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_ip: Mapped[str | None] = mapped_column(String(45))
    usage_count: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Networks in CIDR form, one per line; empty means any address.
    allowed_ip_text: Mapped[str] = mapped_column("allowed_ips", Text, default="", server_default="")
    rate_limit: Mapped[int | None] = mapped_column(Integer)  # requests per minute
    remaining_uses: Mapped[int | None] = mapped_column(Integer)

    owner: Mapped[User] = relationship(lazy="joined", innerjoin=True)

    # A person's key list, and the admin's list of everyone's, are read newest first a page at a time. The owner's
    # (revoked_at, expires_at) index counts a person's live and ended keys without reading their rows, and finds the
    # keys to renew in expiry order (docs/performance.md: the dashboard of a user with 10,000 keys).
    __table_args__ = (Index("ix_api_keys_user_id_created_at", "user_id", "created_at"),
                      Index("ix_api_keys_created_at", "created_at"),
                      Index("ix_api_keys_user_id_revoked_at_expires_at", "user_id", "revoked_at", "expires_at"))

    @property
    def scopes(self) -> tuple[str, ...]:
        return scope_text.from_text(self.scope_text)

    @property
    def allowed_ips(self) -> tuple[str, ...]:
        return tuple(self.allowed_ip_text.split()) if self.allowed_ip_text else ()

    def status(self, now: datetime) -> str:
        """One word for the UI and filters: revoked, expired, disabled, suspended or active."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        if self.disabled:
            return "disabled"
        if self.suspended_until is not None and self.suspended_until > now:
            return "suspended"
        return "active"

    def badge(self, now: datetime, warning_days: int) -> str:
        """status(), with "expiring" for an active key that expires within `warning_days`."""
        status = self.status(now)
        if status == "active" and self.expires_at is not None and self.expires_at <= now + timedelta(days=warning_days):
            return "expiring"
        return status

    def __repr__(self) -> str:
        return f"<ApiKey {self.id} {self.display_start}>"


class DailyKeyUsage(db.Model):
    """Requests and failed verifications per key per UTC day, for charts."""

    __tablename__ = "daily_key_usage"

    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    failures: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")

    __table_args__ = (Index("ix_daily_key_usage_day", "day"),)


class KeyVerifierUsage(db.Model):
    """Which services checked a key, per verifier: what the key's owner sees of where it is used."""

    __tablename__ = "key_verifier_usage"

    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True)
    verifier_id: Mapped[int] = mapped_column(ForeignKey("verifiers.id", ondelete="CASCADE"), primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    failures: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class KeyRecentRequest(db.Model):
    """The last few requests a service checked a key for (the method and path a proxy or a service passed), so its
    owner sees what the key is used for. The usage buffer keeps at most RECENT_REQUESTS_KEPT per key."""

    __tablename__ = "key_recent_requests"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    verifier_id: Mapped[int] = mapped_column(ForeignKey("verifiers.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    method: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(String(500))
    outcome: Mapped[str] = mapped_column(String(20))

    __table_args__ = (Index("ix_key_recent_requests_key_id_at", "key_id", "at"),)


RECENT_REQUESTS_KEPT = 20


class KeyReminder(db.Model):
    """An expiry reminder sent to a key's owner: one per key, threshold and expiry date, so a renewed key (a new
    expires_at) gets its reminders again and no other run ever sends the same one twice."""

    __tablename__ = "key_reminders"

    id: Mapped[int] = mapped_column(primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    threshold: Mapped[str] = mapped_column(String(16))  # "30d", "7d", "1d" or "expired"
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (UniqueConstraint("key_id", "threshold", "expires_at",
                                       name="uq_key_reminders_key_id_threshold_expires_at"),)
class KeyNetwork(db.Model):
    """An IP network (an IPv4 /24 or an IPv6 /64) a key has been used from, so that the owner can be told about the
    first use from a new one; alerted_at is when that mail went out (at most one per key per hour)."""

    __tablename__ = "key_networks"

    id: Mapped[int] = mapped_column(primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    network: Mapped[str] = mapped_column(String(43))  # "203.0.113.0/24", "2001:db8:1:2::/64"
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    alerted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (UniqueConstraint("key_id", "network", name="uq_key_networks_key_id_network"),)


VERIFIER_NAME_LENGTH = 64


class Verifier(db.Model):
    """A service allowed to ask Keyfob whether a key is good, and nothing else. Like a key, only an HMAC-SHA256 of
    its secret is stored; unlike a key, it is never accepted as one (another prefix, another table)."""

    __tablename__ = "verifiers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(VERIFIER_NAME_LENGTH), unique=True)
    description: Mapped[str] = mapped_column(String(500), default="", server_default="")
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    display_start: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    usage_count: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")

    @property
    def active(self) -> bool:
        return self.revoked_at is None
