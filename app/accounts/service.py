"""Account operations shared by the web forms and the CLI."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select

from app.accounts.core import accounts_core
from app.accounts.models import User, new_session_nonce
from app.accounts.passwords import PasswordHasher, password_problem
from app.audit import service as audit
from app.database import utcnow
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
    email = normalise_email(email)
    problem = password_problem(password, email)
    if problem:
        raise AccountError("password", problem)
    if db.session.scalar(select(User.id).where(User.email == email)) is not None:
        raise AccountError("email", "An account with this email address already exists.")
    user = User(email=email, password_hash=hasher().hash(password), is_admin=is_admin,
                email_confirmed_at=utcnow() if confirmed else None)
    db.session.add(user)
    db.session.commit()
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


def list_users() -> list[User]:
    return list(db.session.scalars(select(User).order_by(User.created_at, User.id)))


def count_users() -> int:
    return db.session.scalar(select(func.count(User.id))) or 0
