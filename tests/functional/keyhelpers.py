"""Helpers shared by the key-core functional tests: users, keys and raw rows."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from app.accounts import service as accounts
from app.accounts.models import User
from app.audit.service import Actor
from app.database import utcnow
from app.extensions import db
from app.keys import service
from app.keys.core import KeyCore
from app.keys.models import ApiKey
from tests.support import PASSWORD

PEPPER = "test-pepper-that-is-long-enough-for-production"  # app_config's KEY_PEPPER
WHOAMI = "/api/v1/whoami"


def add_user(app, email: str = "ada@example.com") -> int:
    with app.app_context():
        return accounts.create_user(email, PASSWORD).id


def new_key(app, user_id: int, *, name: str = "test key", scopes=("read:data",), days: float = 30, now=None,
            **options) -> tuple[int, str]:
    """A key made through the service, as (id, plaintext)."""
    now = now or utcnow()
    options.setdefault("expires_at", now + timedelta(days=days))
    with app.app_context():
        owner = db.session.get(User, user_id)
        key, token = service.create(owner, name, scopes, actor=Actor.cli(), now=now, **options)
        return key.id, token


def load_key(app, key_id: int) -> ApiKey:
    """A detached snapshot of the key's row as it is in the database now."""
    with app.app_context():
        key = db.session.get(ApiKey, key_id)
        db.session.expunge(key)
        return key


def act_on_key(app, key_id: int, action, *args, **kwargs):
    """Run a service function (revoke, rotate, ...) on the key, acting from the CLI."""
    with app.app_context():
        return action(db.session.get(ApiKey, key_id), *args, actor=Actor.cli(), **kwargs)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def flush(app) -> int:
    return KeyCore.of(app).usage.flush()


def rows(app, sql: str, **params) -> list[dict]:
    """The rows of raw SQL as dicts. PostgreSQL hands out timestamps in the server's zone (SQLite gives the UTC text
    it stored): they come back in UTC, as the app's models give them."""
    with app.app_context():
        return [{name: value.astimezone(UTC) if isinstance(value, datetime) and value.tzinfo else value
                 for name, value in row._mapping.items()} for row in db.session.execute(sa.text(sql), params)]


def audit_rows(app, event: str) -> list[dict]:
    return rows(app, "SELECT * FROM audit_events WHERE event = :event ORDER BY id", event=event)


def count(app, table: str) -> int:
    return rows(app, f"SELECT count(*) AS n FROM {table}")[0]["n"]  # noqa: S608 (table names are ours)


def daily_totals(app, key_id: int) -> tuple[int, int]:
    """(requests, failures) summed over every day of the key's rollup."""
    row = rows(app, "SELECT coalesce(sum(requests), 0) AS r, coalesce(sum(failures), 0) AS f "
                    "FROM daily_key_usage WHERE key_id = :key_id", key_id=key_id)[0]
    return row["r"], row["f"]


def all_stored_values(app, tables=("api_keys", "audit_events", "daily_key_usage", "alerts", "users")) -> list[str]:
    """Every value of every row of these tables, as text, for "is this secret stored anywhere?" checks."""
    values = []
    for table in tables:
        for row in rows(app, f"SELECT * FROM {table}"):  # noqa: S608
            values.extend(str(value) for value in row.values() if value is not None)
    return values


def expected_digest(token: str) -> str:
    return hmac.new(PEPPER.encode(), token.encode(), hashlib.sha256).hexdigest()
