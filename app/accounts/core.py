"""The accounts core's collaborators, built once per app and found through one typed object (AccountsCore): the
password hasher and the sign-in and sign-up throttles (address confirmation's among them)."""

from __future__ import annotations

from dataclasses import dataclass

from app.accounts.passwords import PasswordHasher
from app.accounts.throttle import AttemptThrottle, LoginThrottle, RegistrationThrottle
from app.extensions import AppPart


@dataclass(frozen=True)
class AccountsCore(AppPart):
    EXTENSION = "keyfob.accounts"

    hasher: PasswordHasher
    login_throttle: LoginThrottle
    second_step_throttle: LoginThrottle  # wrong codes at the second step of signing in (two-factor)
    registration_throttle: RegistrationThrottle
    confirmation_resends: AttemptThrottle  # per account (app/accounts/confirmation.py)
    sign_up_notices: AttemptThrottle  # per address
    # Password-reset requests per client IP (past it: 429), and reset mails per address (past it: the same answer,
    # nothing sent, so the throttle cannot tell whether the address has an account).
    password_resets_per_ip: AttemptThrottle
    password_resets_per_address: AttemptThrottle


def accounts_core() -> AccountsCore:
    """The current app's accounts core."""
    return AccountsCore.current()
