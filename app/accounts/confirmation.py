"""Address confirmation at sign-up (EMAIL_CONFIRMATION): the account is made unconfirmed and a signed link is mailed
to the address; until its owner follows the link, the account cannot create keys (app/keys/service.py asks
`pending`).

Sign-up answers the same whether or not the address has an account, and does the same work (one password hash, one
mail): a taken address gets a notice instead of a link, so nobody learns from sign-up which addresses have accounts.
The mails to an address nobody has proved is theirs (the notice, a resent link) are throttled per address and per
account (app/accounts/throttle.py), so neither can be used to flood a mailbox.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.accounts import service
from app.accounts.core import accounts_core
from app.accounts.models import User
from app.accounts.signed_links import LinkError, load, sign
from app.database import utcnow
from app.extensions import db
from app.mail import outbox
from app.mail.core import MailCore

PURPOSE = "confirm-email"
LINK_LIFETIME = timedelta(days=3)
LINK_PATH = "/confirm-email/"
# No switch stops these mails (they answer the address's own sign-up); the account page is the nearest setting.
LOGIN_PATH, RESET_PATH = "/login", "/forgot-password"


def required() -> bool:
    """Whether this deployment asks new accounts to confirm their address (EMAIL_CONFIRMATION)."""
    return bool(current_app.config["EMAIL_CONFIRMATION"])


def pending(user: User) -> bool:
    """True while the user must still confirm their address before creating keys. With EMAIL_CONFIRMATION off,
    nothing is pending: accounts made before it was turned off are not held back by a rule no longer in force."""
    return required() and user.email_confirmed_at is None


def sign_up(email: str, password: str) -> str:
    """Sign-up with confirmation: a new address gets an unconfirmed account and a mail with its link; a taken one a
    notice to its owner (at most one an hour). Either way the password is hashed once and the answer is the same:
    the normalised address. Raises AccountError for a malformed address or a refused password. Commits."""
    email = service.normalise_email(email)
    if db.session.scalar(select(User.id).where(User.email == email)) is None:
        try:
            user = service.add_user(email, password, confirmed=False)
        except IntegrityError:  # the same address signed up at the same moment: now it is taken
            db.session.rollback()
        else:
            _queue_link(user)
            db.session.commit()
            return email
    else:
        service.hasher().hash(password)  # the work a new account costs, so the time taken does not tell either
    if not accounts_core().sign_up_notices.attempt(email):
        _queue_notice(email)
    db.session.commit()
    return email


def resend(user: User) -> int:
    """Mail a pending user a fresh link: 0 when queued, else the seconds until another may be (throttled per
    account). Raises StoreUnavailable while the counters cannot be reached. Commits."""
    wait = accounts_core().confirmation_resends.attempt(str(user.id))
    if wait:
        return wait
    _queue_link(user)
    db.session.commit()
    return 0


def link_user(token: str) -> User:
    """The account a confirmation link is for, or LinkError: malformed, forged, for another purpose, older than
    LINK_LIFETIME, or for an address the account no longer has."""
    payload = load(PURPOSE, token, max_age=LINK_LIFETIME.total_seconds())
    if not (isinstance(payload, list) and len(payload) == 2 and type(payload[0]) is int
            and isinstance(payload[1], str)):
        raise LinkError("The link is not valid.")
    user = db.session.get(User, payload[0]) if 0 < payload[0] < 2**31 else None
    if user is None or user.email != payload[1]:
        raise LinkError("This link is for an address the account no longer has. Log in and ask for a new link.")
    return user


def confirm(token: str, now: datetime | None = None) -> User:
    """Confirm the address a link is for (LinkError as link_user); following it again changes nothing. Commits."""
    user = link_user(token)
    if user.email_confirmed_at is None:
        user.email_confirmed_at = now or utcnow()
        db.session.commit()
    return user


def link_for(user: User) -> str:
    """The confirmation link for the user's current address."""
    return MailCore.current().base_url + LINK_PATH + sign(PURPOSE, [user.id, user.email])


def _queue_link(user: User) -> None:
    days = LINK_LIFETIME.days
    text = (f"Someone, we hope you, made a Keyfob account with this address. To confirm it is yours, open this "
            f"link within {days} days:\n\n{link_for(user)}\n\n"
            f"Until then the account cannot create API keys. If it was not you, ignore this mail: the account stays "
            f"unconfirmed.\n")
    outbox.queue(user.email, "Confirm your address for Keyfob", text,
                 reason="someone signed up at Keyfob with this address", settings_link=None)


def _queue_notice(email: str) -> None:
    base = MailCore.current().base_url
    text = ("Someone tried to make a Keyfob account with this address, which already has one. No account was made "
            "and nothing about yours changed.\n\n"
            f"If it was you, log in: {base}{LOGIN_PATH}\n"
            f"Forgot your password? Set a new one: {base}{RESET_PATH}\n\n"
            "If it was not you, there is nothing to do.\n")
    outbox.queue(email, "Someone tried to sign up to Keyfob with your address", text,
                 reason="someone tried to sign up at Keyfob with this address", settings_link=None)
