"""Forgotten passwords: a mailed link, signed and single-use, valid for 30 minutes, to choose a new password.

The link's token signs [user id, reset_nonce]. Asking again replaces the user's reset_nonce, and using the link
clears it, so exactly one link works at a time and each works once. The request answers the same whether or not the
address has an account (the caller shows one page for both); only the IP throttle is visible, and it says nothing
about the address.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select, update

from app.accounts import signed_links
from app.accounts.core import accounts_core
from app.accounts.models import User, new_session_nonce
from app.accounts.passwords import password_problem
from app.accounts.service import AccountError, hasher, normalise_email
from app.audit import service as audit
from app.audit.service import Actor
from app.database import utcnow
from app.extensions import db
from app.mail import outbox
from app.mail.core import MailCore

PURPOSE = "password-reset"
LINK_LIFETIME = timedelta(minutes=30)
RESET_PATH = "/reset-password"
# Nothing can turn reset mails off: one goes out only when someone asks, a few an hour at most per address. The
# footer links to the account page, where the owner's other mails are switched.
REASON = "someone asked for a password reset for this address"


class ResetThrottled(Exception):
    """This client IP has asked for too many reset mails; `retry_after` seconds until it may ask again."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many password-reset requests; retry in {retry_after} s")
        self.retry_after = retry_after


class ResetLinkError(ValueError):
    """A reset link that cannot be used: `malformed` when it is not one of ours at all (garbage, forged, cut short,
    made for another purpose), else expired, used already, or replaced by a newer one."""

    def __init__(self, *, malformed: bool) -> None:
        super().__init__("The link is not a valid password-reset link." if malformed
                         else "The link has expired or was already used.")
        self.malformed = malformed


def by_mail_possible() -> bool:
    """False when this Keyfob sends no mail (production without MAIL_URL): no reset link can reach anyone."""
    return MailCore.current().sender is not None


def reset_link(base_url: str, token: str) -> str:
    """The link a reset mail holds. The token rides in the query string, which the access log never writes
    (gunicorn.conf.py logs the path alone); the page moves it into the session at once (app/auth/password_reset.py)."""
    return f"{base_url}{RESET_PATH}?token={token}"


def reset_mail(email: str, link: str, ip: str, now: datetime) -> tuple[str, str]:
    """The subject and plain text of a reset mail: why it came, the link, and what to do if it was not you."""
    minutes = int(LINK_LIFETIME.total_seconds() // 60)
    text = (f"Someone, probably you, asked to reset the password of the Keyfob account {email}\n"
            f"on {now:%Y-%m-%d at %H:%M} UTC, from the IP address {ip}.\n\n"
            f"To choose a new password, open this link within {minutes} minutes (until "
            f"{now + LINK_LIFETIME:%H:%M} UTC):\n\n{link}\n\n"
            "The link works once. Asking again sends a new link, and this one stops working. Choosing a new\n"
            "password signs you out everywhere else.\n\n"
            "If it was not you, ignore this mail: your password stays as it is, and nobody can change it\n"
            "without this link. No setting turns these mails off, as one goes out only when asked for, and\n"
            "only a few an hour.\n")
    return "Reset your Keyfob password", text


def request_reset(email: str, ip: str, user_agent: str | None = None, now: datetime | None = None) -> None:
    """Mail a reset link to the active account with this address, unless the address has had its share of reset
    mails for now; otherwise do nothing, silently. ResetThrottled when this IP has asked too often, AccountError
    for an address that is not one. Commits."""
    address = normalise_email(email)
    core = accounts_core()
    wait = core.password_resets_per_ip.attempt(ip)
    if wait:
        raise ResetThrottled(wait)
    if core.password_resets_per_address.attempt(address):
        return
    user = db.session.scalar(select(User).where(User.email == address))
    if user is None or not user.is_active:
        return
    now = now or utcnow()
    user.reset_nonce = secrets.token_urlsafe(16)
    link = reset_link(MailCore.current().base_url, signed_links.sign(PURPOSE, [user.id, user.reset_nonce]))
    subject, text = reset_mail(user.email, link, ip, now)
    outbox.queue(user.email, subject, text, reason=REASON, settings_link=None)
    audit.record("user.password_reset_requested", Actor.user(user, ip, user_agent),
                 detail=f"user:{user.id} {user.email}")
    db.session.commit()


def _link_payload(token: str) -> tuple[int, str]:
    try:
        payload = signed_links.load(PURPOSE, token, max_age=LINK_LIFETIME.total_seconds())
    except signed_links.LinkError as error:
        raise ResetLinkError(malformed=not error.expired) from None
    # Signed by us, so of our making; checked all the same, as a bad shape must never become a 500.
    if (not isinstance(payload, list) or len(payload) != 2 or type(payload[0]) is not int
            or not isinstance(payload[1], str)):
        raise ResetLinkError(malformed=True)
    return payload[0], payload[1]


def user_for_link(token: str) -> User:
    """The active user this reset link is for, or ResetLinkError: malformed, expired, used, or replaced."""
    user_id, nonce = _link_payload(token)
    user = db.session.get(User, user_id)
    if user is None or not user.is_active or user.reset_nonce is None \
            or not hmac.compare_digest(user.reset_nonce.encode(), nonce.encode()):
        raise ResetLinkError(malformed=False)
    return user


def reset_password(token: str, password: str, ip: str | None = None, user_agent: str | None = None) -> User:
    """Set a new password with a reset link, once: the link stops working, every session of the user ends, the
    login throttle forgets the account's failures, and the change is audited. ResetLinkError for a link that
    cannot be used, AccountError for a password the rules refuse. Commits."""
    user = user_for_link(token)
    problem = password_problem(password, user.email)
    if problem:
        raise AccountError("password", problem)
    password_hash = hasher().hash(password)
    # Before any write: with the counter store down this raises (503) and nothing has changed.
    accounts_core().login_throttle.record_success(user.email)
    # Only while the nonce is still the link's: of two uses at once, one wins and the other finds it gone.
    won = db.session.execute(
        update(User).where(User.id == user.id, User.reset_nonce == user.reset_nonce)
        .values(password_hash=password_hash, reset_nonce=None, session_nonce=new_session_nonce())
        .returning(User.id)).scalar()
    if won is None:
        db.session.rollback()
        raise ResetLinkError(malformed=False)
    audit.record("user.password_reset", Actor.user(user, ip, user_agent), detail=f"user:{user.id} {user.email}")
    db.session.commit()
    db.session.refresh(user)
    return user
