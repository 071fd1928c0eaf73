"""Helpers the tests share: the test configuration, an app built by the real migrations, and form drivers."""

from __future__ import annotations

import re

from flask_migrate import upgrade

from app import create_app

# OWASP's minimum Argon2id cost keeps the suite quick while staying a real, valid configuration.
FAST_ARGON2 = {"PASSWORD_HASH_MEMORY_KIB": 19456, "PASSWORD_HASH_TIME_COST": 2, "PASSWORD_HASH_PARALLELISM": 1}
PASSWORD = "a sturdy passphrase"


def app_config(tmp_path, **overrides) -> dict:
    return {
        "KEYFOB_ENV": "testing",
        "SECRET_KEY": "test-secret-key-that-is-long-enough-for-anything",
        "KEY_PEPPER": "test-pepper-that-is-long-enough-for-production",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'keyfob.db'}",
        "KEYFOB_INSTANCE_PATH": str(tmp_path / "instance"),
        **FAST_ARGON2,
        **overrides,
    }




def make_app(tmp_path, **overrides):
    """An app on a fresh database built by the real migrations, as production builds it."""
    app = create_app(app_config(tmp_path, **overrides))
    with app.app_context():
        upgrade()
    return app


CSRF_INPUT = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def csrf_token_from(html: str) -> str:
    match = CSRF_INPUT.search(html)
    assert match, "page has no CSRF token"
    return match.group(1)


class AuthActions:
    """Drives the real forms, CSRF token included, as a browser would."""

    def __init__(self, client) -> None:
        self._client = client

    def token(self, path: str = "/login") -> str:
        return csrf_token_from(self._client.get(path).get_data(as_text=True))

    def register(self, email: str = "ada@example.com", password: str = PASSWORD, confirm: str | None = None,
                 **extra):
        return self._client.post("/register", data={
            "csrf_token": self.token("/register"), "email": email, "password": password,
            "confirm": password if confirm is None else confirm, **extra,
        })

    def login(self, email: str = "ada@example.com", password: str = PASSWORD, **extra):
        return self._client.post("/login", data={
            "csrf_token": self.token("/login"), "email": email, "password": password, **extra,
        })

    def logout(self):
        return self._client.post("/logout", data={"csrf_token": self.token("/account")})


class CountingHasher:
    """Wraps the app's argon2 hasher and counts every hash computation."""

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, 0

    def hash(self, password, *, salt=None):
        self.calls += 1
        return self.inner.hash(password, salt=salt)

    def verify(self, stored, password):
        self.calls += 1
        return self.inner.verify(stored, password)

    def check_needs_rehash(self, stored):
        return self.inner.check_needs_rehash(stored)


def count_hashing(app) -> CountingHasher:
    """Swap a counter around the app's Argon2 hasher; its .calls counts every hash computed from now on."""
    hasher = app.extensions["keyfob.password_hasher"]
    hasher._argon2 = CountingHasher(hasher._argon2)
    return hasher._argon2
