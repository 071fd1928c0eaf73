"""The sign-in between its two steps: who passed the password, and what ends it.

After a right password, a user with a second factor is not signed in: the session holds a pending sign-in (the user
id, their session nonce, when it started and where they were going) for five minutes. Any second-step method (the
authenticator code of app/auth/two_factor.py, a passkey of app/auth/passkeys.py) reads it with pending_user() and ends
it with complete_sign_in(), the one place a session begins after the password.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import timedelta

from flask import flash, redirect, request, session, url_for
from flask_login import current_user, login_user

from app.accounts import service
from app.accounts import two_factor as core
from app.accounts.core import accounts_core
from app.accounts.models import User
from app.auth.redirects import safe_next
from app.database import utcnow
from app.extensions import db

PENDING = "second_step"
LIFETIME = timedelta(minutes=5)


def after_password(user: User, next_page: str | None):
    """What a right password leads to: the second step when the user has a factor, else the signed-in session."""
    if not core.has_second_factor(user):
        return complete_sign_in(user, next_page)
    # A fresh session here too: nothing from before carries over into the one the second step will begin.
    session.clear()
    session[PENDING] = {"user": user.id, "nonce": user.session_nonce, "started": utcnow().timestamp(),
                        "next": safe_next(next_page) or ""}
    return redirect(url_for("auth.second_step"))


def pending_user() -> tuple[User | None, bool]:
    """The user whose sign-in waits for its second step, and whether it has expired (then the user is None too).
    A pending sign-in of a user since deactivated or signed out everywhere (their nonce changed) is no sign-in."""
    pending = session.get(PENDING)
    if not isinstance(pending, dict):
        return None, False
    user_id, nonce, started = pending.get("user"), pending.get("nonce"), pending.get("started")
    if not isinstance(user_id, int) or not isinstance(nonce, str) or not isinstance(started, float | int):
        return None, False
    if utcnow().timestamp() - started > LIFETIME.total_seconds():
        return None, True
    user = db.session.get(User, user_id)
    if user is None or not user.is_active or not hmac.compare_digest(user.session_nonce, nonce) \
            or not core.has_second_factor(user):
        return None, False
    return user, False


def end_pending() -> None:
    session.pop(PENDING, None)


def waiting_sign_in():
    """(user, None) for the user whose sign-in waits for its second step; else (None, where to send them): home
    when signed in already, the login page (saying why) when no sign-in waits or it took too long."""
    if current_user.is_authenticated:
        return None, redirect(url_for("auth.index"))
    user, expired = pending_user()
    if user is None:
        end_pending()
        flash("Signing in took more than five minutes: log in again." if expired else "Log in first.", "info")
        return None, redirect(url_for("auth.login"))
    return user, None


@dataclass(frozen=True)
class StepAttempt:
    """One try at the second step, whatever the method (a code, a passkey): all count in one throttle, per account
    and per IP, apart from the password's."""

    account: str
    ip: str

    @classmethod
    def of(cls, user: User) -> StepAttempt:
        return cls(str(user.id), request.remote_addr or "unknown")

    def wait(self) -> int:
        """Seconds until another try is allowed; 0 now."""
        return accounts_core().second_step_throttle.retry_after(self.account, self.ip)

    def failed(self) -> None:
        accounts_core().second_step_throttle.record_failure(self.account, self.ip)

    def passed(self) -> None:
        accounts_core().second_step_throttle.record_success(self.account)


def begin_session(user: User) -> None:
    """Sign the user in on a fresh session: nothing from before (a planted value, an old CSRF token, a pending
    step) carries over."""
    session.clear()
    login_user(user)


def complete_sign_in(user: User, next_page: str | None = None):
    """Begin the user's session (every step has passed) and send them where they were going."""
    if next_page is None:
        next_page = (session.get(PENDING) or {}).get("next")
    begin_session(user)
    service.record_login(user)
    return redirect(safe_next(next_page) or url_for("auth.index"))


def enrolment_required():
    """For the before_request of the pages the policy guards (admin pages, and every page of the dashboard when
    everyone must): a redirect to set a second factor up, keeping where they were going, or None."""
    if current_user.is_authenticated and core.must_enrol(current_user):
        flash("Set up two-factor sign-in first: this Keyfob asks it of your account.", "info")
        # A form's address cannot be opened again with a GET: after a post they come back to the page they start on.
        going = request.full_path.rstrip("?") if request.method == "GET" else None
        return redirect(url_for("auth.two_factor_enrol", next=going))
    return None
