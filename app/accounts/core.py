"""The accounts core's collaborators, built once per app and found through one typed object (AccountsCore): the
password hasher and the sign-in and sign-up throttles."""

from __future__ import annotations

from dataclasses import dataclass

from app.accounts.passwords import PasswordHasher
from app.accounts.throttle import LoginThrottle, RegistrationThrottle
from app.extensions import AppPart


@dataclass(frozen=True)
class AccountsCore(AppPart):
    EXTENSION = "keyfob.accounts"

    hasher: PasswordHasher
    login_throttle: LoginThrottle
    second_step_throttle: LoginThrottle  # wrong codes at the second step of signing in (two-factor)
    registration_throttle: RegistrationThrottle


def accounts_core() -> AccountsCore:
    """The current app's accounts core."""
    return AccountsCore.current()
