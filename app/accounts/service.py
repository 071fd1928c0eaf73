"""Account operations shared by the web forms and the CLI."""

from __future__ import annotations

import hmac
import secrets

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select

from app.accounts import signed_links
from app.accounts.core import accounts_core
from app.accounts.models import User, new_session_nonce
from app.accounts.passwords import PasswordHasher, password_problem
from app.audit import service as audit
from app.database import MAX_ID, utcnow
from app.extensions import db


class AccountError(ValueError):
    """A request about an account that cannot be carried out; `field` names the input at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def hasher() -> PasswordHasher:
    return accounts_core().hasher


def normalise_email(email: str) -> str:
    """The canonical form we store and look up: trimmed, syntax-checked, and lower-cased whole.

    Lower-casing the local part is not what RFC 5321 says, but no real provider treats case as significant,
    and two accounts differing only in case would be a support nightmare.
    """
    try:
        checked = validate_email(email.strip(), check_deliverability=False)
    except EmailNotValidError as error:
        raise AccountError("email", str(error)) from None
    return checked.normalized.lower()


def find_user(email: str) -> User | None:
    try:
        email = normalise_email(email)
    except AccountError:
        return None
    return db.session.scalar(select(User).where(User.email == email))


def create_user(email: str, password: str, *, is_admin: bool = False, confirmed: bool = True) -> User:
    """Create an account, or raise AccountError naming the field at fault. Commits. An unconfirmed account
    (`confirmed=False`: sign-up with EMAIL_CONFIRMATION on) cannot create keys until its owner follows the mail's
    link."""
    user = add_user(email, password, is_admin=is_admin, confirmed=confirmed)
    db.session.commit()
    return user


def add_user(email: str, password: str, *, is_admin: bool = False, confirmed: bool = True) -> User:
    """create_user() without the commit: the account is added and flushed (it has its id) in the caller's
    transaction, so that what comes with it (a confirmation mail) is written with it or not at all."""
    email = normalise_email(email)
    problem = password_problem(password, email)
    if problem:
        raise AccountError("password", problem)
    if db.session.scalar(select(User.id).where(User.email == email)) is not None:
        raise AccountError("email", "An account with this email address already exists.")
    user = User(email=email, password_hash=hasher().hash(password), is_admin=is_admin,
                email_confirmed_at=utcnow() if confirmed else None)
    db.session.add(user)
    db.session.flush()
    return user


def authenticate(email: str, password: str) -> User | None:
    """The active user with this email and password, or None. Runs the password hash exactly once either way.

    On success it re-hashes the password when the deployment's Argon2 parameters have changed since it was stored.
    The login time is recorded by record_login, once every step of signing in has passed.
    """
    user = find_user(email)
    stored = user.password_hash if user is not None and user.is_active else None
    if not hasher().verify(stored, password):
        return None
    assert user is not None  # verify() is never true without a stored hash
    if hasher().needs_rehash(user.password_hash):
        user.password_hash = hasher().hash(password)
        db.session.commit()
    return user


def record_login(user: User) -> None:
    """Note that the user has just signed in (after the password, and the second step when they have one). Commits."""
    user.last_login_at = utcnow()
    db.session.commit()


def end_sessions(user: User) -> None:
    """Invalidate every session cookie issued to this user so far. Commits."""
    user.session_nonce = new_session_nonce()
    db.session.commit()


def _check_not_removing_admin(user: User, actor) -> None:
    """Nobody demotes or deactivates themselves (another admin can), and the last active admin stays one: either
    could leave no one able to run the admin pages."""
    if actor.user_id is not None and actor.user_id == user.id:
        raise AccountError("user", "You cannot demote or deactivate yourself; another admin can.")
    if user.is_admin and user.is_active and db.session.scalar(
            select(func.count()).select_from(User).where(User.is_admin.is_(True), User.is_active.is_(True),
                                                         User.id != user.id)) == 0:
        raise AccountError("user", f"{user.email} is the last active admin: promote someone else first.")


def set_admin(user: User, is_admin: bool, *, actor) -> None:
    """Promote or demote (never yourself, never the last active admin), audited. Commits."""
    if user.is_admin == is_admin:
        return
    if not is_admin:
        _check_not_removing_admin(user, actor)
    audit.record("user.promoted" if is_admin else "user.demoted", actor, detail=f"user:{user.id} {user.email}")
    user.is_admin = is_admin
    db.session.commit()


def set_active(user: User, active: bool, *, actor) -> None:
    """Deactivate (sessions end and every key stops at once: verify() checks the owner; never yourself, never the
    last active admin) or reactivate, audited. Commits."""
    if user.is_active == active:
        return
    if not active:
        _check_not_removing_admin(user, actor)
    user.is_active = active
    if not active:
        user.session_nonce = new_session_nonce()
    audit.record("user.reactivated" if active else "user.deactivated", actor, detail=f"user:{user.id} {user.email}")
    db.session.commit()


# The mails an owner may switch off (User columns), and what the audit calls each.
NOTIFICATIONS = {"notify_expiry": "expiry reminders", "notify_suspension": "suspensions",
                 "notify_new_network": "new networks", "notify_admin_action": "admin actions"}


def set_notifications(user: User, switches: dict[str, bool], *, actor) -> list[str]:
    """Turn the owner's mails on or off: `switches` maps some of NOTIFICATIONS' columns to on/off (an unknown name
    raises AccountError). Audited when anything changed; returns what changed. Commits."""
    unknown = set(switches) - set(NOTIFICATIONS)
    if unknown:
        raise AccountError("notifications", f"Unknown notification setting: {', '.join(sorted(unknown))}.")
    changed = [name for name, on in switches.items() if getattr(user, name) != bool(on)]
    if not changed:
        return []
    for name in changed:
        setattr(user, name, bool(switches[name]))
    audit.record("user.notifications_changed", actor, detail=f"user:{user.id} " + ", ".join(
        f"{NOTIFICATIONS[name]} {'on' if switches[name] else 'off'}" for name in changed))
    db.session.commit()
    return changed


def list_users() -> list[User]:
    return list(db.session.scalars(select(User).order_by(User.created_at, User.id)))


def count_users() -> int:
    return db.session.scalar(select(func.count(User.id))) or 0


# -- the expiry calendar's secret URL ------------------------------------------------------------------------------

CALENDAR_LINK = "calendar"  # the signed_links purpose of the feed's token


def calendar_url_token(user: User) -> str | None:
    """The token of the user's expiry calendar URL (/calendar/<token>.ics), or None before they made one. It holds
    the user's id and calendar_nonce, signed; it never expires: it works until the user resets it."""
    if user.calendar_nonce is None:
        return None
    return signed_links.sign(CALENDAR_LINK, [user.id, user.calendar_nonce], timed=False)  # a URL that stays put


def user_for_calendar_token(token: str) -> User | None:
    """The active user whose current calendar URL holds this token, or None for any other token: malformed, forged,
    signed for another purpose, replaced by a reset, or of a deactivated user (all alike to the caller)."""
    try:
        payload = signed_links.load(CALENDAR_LINK, token, timed=False)
    except signed_links.LinkError:
        return None
    if not (isinstance(payload, list) and len(payload) == 2 and type(payload[0]) is int
            and 0 < payload[0] <= MAX_ID and isinstance(payload[1], str)):
        return None
    user = db.session.get(User, payload[0])
    if user is None or not user.is_active or user.calendar_nonce is None:
        return None
    return user if hmac.compare_digest(user.calendar_nonce.encode(), payload[1].encode()) else None


def reset_calendar_link(user: User, *, actor) -> str:
    """Give the user a new calendar URL, which ends the old one at once (its nonce is gone), audited; returns the
    new token. Commits."""
    created = user.calendar_nonce is None
    user.calendar_nonce = secrets.token_urlsafe(16)
    audit.record("user.calendar_link_created" if created else "user.calendar_link_reset", actor,
                 detail=f"user:{user.id} {user.email}")
    db.session.commit()
    token = calendar_url_token(user)
    assert token is not None  # the nonce was just set
    return token
