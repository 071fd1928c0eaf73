"""Helpers the tests share: the test configuration, an app built by the real migrations, and form drivers.

The suite runs on SQLite (a file per test) or, when TEST_DATABASE_URL names a PostgreSQL server, on PostgreSQL: each
test folder then gets its own database there, copied from a template the migrations built once per session, and
dropped after the test (tests/conftest.py). `make test` runs both; tests/pg_cluster.py starts the server.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask_migrate import upgrade

from app import create_app
from app.accounts.core import AccountsCore
from app.config import SETTINGS
from app.extensions import db
from app.keys.core import KeyCore
from app.mail.core import MailCore
from tests.pg_databases import PostgresDatabases

# OWASP's minimum Argon2id cost keeps the suite quick while staying a real, valid configuration.
FAST_ARGON2 = {"PASSWORD_HASH_MEMORY_KIB": 19456, "PASSWORD_HASH_TIME_COST": 2, "PASSWORD_HASH_PARALLELISM": 1}
PASSWORD = "a sturdy passphrase"


def _normalised_url(url: str) -> str:
    """The URL as the app reads DATABASE_URL (postgresql:// means psycopg 3)."""
    return next(setting for setting in SETTINGS if setting.name == "DATABASE_URL").parse(url)


def _build_template(url: str) -> None:
    """Migrate the empty database at url, as make_app() would, and let go of it (a template must have no sessions)."""
    instance = tempfile.mkdtemp(prefix="keyfob-template-")
    try:
        app = create_app(_base_config(Path(instance), url))
        with app.app_context():
            upgrade()
            db.session.remove()
            db.engine.dispose()
        KeyCore.of(app).close()
        MailCore.of(app).close()
    finally:
        shutil.rmtree(instance, ignore_errors=True)


def _postgres_databases(url: str) -> PostgresDatabases:
    parsed = sa.make_url(_normalised_url(url))
    if parsed.get_backend_name() != "postgresql":
        raise pytest.UsageError(f"TEST_DATABASE_URL must be a PostgreSQL URL, not {parsed.get_backend_name()}")
    return PostgresDatabases(parsed, _build_template)


POSTGRES = _postgres_databases(os.environ["TEST_DATABASE_URL"]) if os.environ.get("TEST_DATABASE_URL") else None


def on_postgres() -> bool:
    """True in the PostgreSQL run of the suite (TEST_DATABASE_URL is set)."""
    return POSTGRES is not None


def sqlite_only(reason: str):
    """Mark a test that is about SQLite itself; the PostgreSQL run skips it, saying why."""
    return pytest.mark.skipif(on_postgres(), reason=f"SQLite only: {reason}")


def database_url(folder) -> str:
    """The test database that belongs to this folder: the SQLite file in it, or its own PostgreSQL database.
    Everything given the same folder shares one database, as the processes of one deployment would."""
    if POSTGRES is not None:
        return POSTGRES.for_folder(folder)
    return f"sqlite:///{Path(folder) / 'keyfob.db'}"


def unreachable_database_url(tmp_path) -> str:
    """A database of the run's kind that cannot be reached: a file in a folder that does not exist (SQLite cannot
    create it), or a PostgreSQL server whose socket folder does not exist."""
    missing = Path(tmp_path) / "no-such-dir"
    if POSTGRES is not None:
        return f"postgresql+psycopg://keyfob@/keyfob?host={missing}&connect_timeout=2"
    return f"sqlite:///{missing / 'keyfob.db'}"


def query_plan(sql: str, **params) -> str:
    """The database's plan for a query as one string, in which an index shows by name when the plan uses it: SQLite's
    EXPLAIN QUERY PLAN, or PostgreSQL's EXPLAIN once ANALYZE has given the planner the table's statistics, as
    autovacuum would on a server that has been running. Call it inside an app context."""
    if db.engine.dialect.name == "postgresql":
        db.session.execute(sa.text("ANALYZE"))
        return " ".join(str(row) for row in db.session.execute(sa.text(f"EXPLAIN {sql}"), params))
    return " ".join(str(row) for row in db.session.execute(sa.text(f"EXPLAIN QUERY PLAN {sql}"), params))


def _base_config(tmp_path, database: str) -> dict:
    return {
        "KEYFOB_ENV": "testing",
        "SECRET_KEY": "test-secret-key-that-is-long-enough-for-anything",
        "KEY_PEPPER": "test-pepper-that-is-long-enough-for-production",
        "DATABASE_URL": database,
        "KEYFOB_INSTANCE_PATH": str(tmp_path / "instance"),
        # Tests sign many people up from 127.0.0.1; tests/functional/accounts/test_registration.py tests the real
        # bound.
        "REGISTRATION_THROTTLE_PER_IP": "1000 per hour",
        # Most tests sign admins in with a password alone; tests/functional/accounts/test_two_factor_policy.py turns
        # the production default (on) back on and proves every admin route asks for a second factor first.
        "TWO_FACTOR_FOR_ADMINS": "false",
        **FAST_ARGON2,
    }


def app_config(tmp_path, **overrides) -> dict:
    database = overrides["DATABASE_URL"] if "DATABASE_URL" in overrides else database_url(tmp_path)
    return {**_base_config(tmp_path, database), **overrides}


def make_app(tmp_path, **overrides):
    """An app on a fresh database built by the real migrations, as production builds it."""
    config = app_config(tmp_path, **overrides)
    _from_migrated_copy(config["DATABASE_URL"])
    app = create_app(config)
    with app.app_context():
        upgrade()  # the real migrations: on a copy (below) they find it at head already
    return app


_MIGRATED_SQLITE: list[Path] = []  # this process's SQLite database built by the migrations, made on first use


def _from_migrated_copy(url: str | None) -> None:
    """A new SQLite test database starts as a copy of one the migrations built once in this process, as the
    PostgreSQL run copies a template (tests/pg_databases.py): migrating from nothing for each of some thousands of
    apps cost about a minute and a half of every `make test`. Any other database is left alone."""
    if not url or not url.startswith("sqlite:///"):
        return
    target = Path(url.removeprefix("sqlite:///"))
    if target.exists() or not target.parent.is_dir():
        return
    if not _MIGRATED_SQLITE:
        folder = Path(tempfile.mkdtemp(prefix="keyfob-migrated-"))
        template = create_app(app_config(folder, DATABASE_URL=f"sqlite:///{folder / 'migrated.db'}"))
        with template.app_context():
            upgrade()
        close_app(template)  # the last connection closed: the WAL is folded into the file
        _MIGRATED_SQLITE.append(folder / "migrated.db")
    shutil.copyfile(_MIGRATED_SQLITE[0], target)


# The background flusher would race the tests' own flush() calls; an hour means "only when a test flushes".
QUIET = {"USAGE_FLUSH_SECONDS": "3600"}


def close_app(app) -> None:
    """Stop the app's usage flusher, its change listener and mail sender, and let go of its database connections."""
    KeyCore.of(app).close()
    MailCore.of(app).close()
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


class AppFactory:
    """The one way the tests build apps (the `apps` fixture; `app` is `apps()`): each on a migrated database,
    quiet (usage is written only when a test flushes), with the test's settings on top, and all closed at the end.
    Two apps with the same `name` share one database, as two processes would; `migrate=False` builds one on a
    database that cannot be migrated (one that cannot be reached)."""

    def __init__(self, tmp_path) -> None:
        self._tmp_path = Path(tmp_path)
        self._apps: list = []

    def __call__(self, name: str = "main", *, migrate: bool = True, **overrides):
        folder = self._tmp_path / name
        folder.mkdir(exist_ok=True)
        settings = {**QUIET, **overrides}
        app = make_app(folder, **settings) if migrate else create_app(app_config(folder, **settings))
        self._apps.append(app)
        return app

    def close(self) -> None:
        for app in self._apps:
            close_app(app)


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
    hasher = AccountsCore.of(app).hasher
    hasher._argon2 = CountingHasher(hasher._argon2)
    return hasher._argon2
