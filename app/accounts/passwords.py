"""Password policy (NIST SP 800-63B / OWASP ASVS) and Argon2id hashing."""

from __future__ import annotations

import gzip
import secrets
import unicodedata
from functools import cache
from pathlib import Path

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 8
RECOMMENDED_LENGTH = 12
MAX_LENGTH = 256
COMMON_PASSWORDS = Path(__file__).with_name("data") / "common-passwords.txt.gz"


def normalise(password: str) -> str:
    """NFKC, as NIST advises, so the same password typed on two keyboards hashes the same."""
    return unicodedata.normalize("NFKC", password)


@cache
def common_passwords() -> frozenset[str]:
    with gzip.open(COMMON_PASSWORDS, "rt", encoding="utf-8") as handle:
        return frozenset(line.strip() for line in handle if line.strip())


def password_problem(password: str, email: str | None = None) -> str | None:
    """Why this password may not be used, or None. No composition rules: length and a blocklist."""
    password = normalise(password)
    if len(password) < MIN_LENGTH:
        return f"Use at least {MIN_LENGTH} characters ({RECOMMENDED_LENGTH} or more is better)."
    if len(password) > MAX_LENGTH:
        return f"Use at most {MAX_LENGTH} characters."
    lowered = password.lower()
    if lowered in common_passwords():
        return "This password is one of the most common passwords; choose one that is harder to guess."
    if email and lowered in {email.lower(), email.split("@", 1)[0].lower()}:
        return "Do not use your email address as your password."
    return None


class PasswordHasher:
    """Argon2id with the deployment's parameters.

    verify() runs the hash function exactly once whether or not the account exists (a dummy hash stands in),
    so a wrong email and a wrong password cost the same and cannot be told apart by timing.
    """

    def __init__(self, time_cost: int, memory_cost: int, parallelism: int) -> None:
        self._argon2 = argon2.PasswordHasher(
            time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism, type=argon2.Type.ID
        )
        self._dummy_hash = self._argon2.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return self._argon2.hash(normalise(password))

    def verify(self, stored_hash: str | None, password: str) -> bool:
        try:
            return self._argon2.verify(stored_hash or self._dummy_hash, normalise(password)) and bool(stored_hash)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._argon2.check_needs_rehash(stored_hash)
