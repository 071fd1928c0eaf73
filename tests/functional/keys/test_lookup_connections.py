"""The key lookup's pooled connection: on PostgreSQL the one SELECT runs outside a transaction (no BEGIN, no ROLLBACK),
and the connection goes back to the pool as it came, so the ORM's later writes on it are transactions as before."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.keys import verification
from app.keys.core import KeyCore
from app.keys.models import ApiKey
from tests.functional.keyhelpers import bearer, load_key, new_key
from tests.support import on_postgres

WHOAMI = "/api/v1/whoami"


def in_autocommit(dbapi_connection) -> bool:
    # psycopg's flag; sqlite3 (Python 3.11) has none: SQLAlchemy leaves its transactions to the driver.
    return getattr(dbapi_connection, "autocommit", False) is True


def test_every_pooled_connection_is_handed_out_with_transactions_on(app, client, user, monkeypatch):
    _, token = new_key(app, user)
    monkeypatch.setattr(KeyCore.of(app).key_cache, "max_age", 0)  # every request to the database: no cache
    handed_out: list[bool] = []
    with app.app_context():
        engine = db.engine

    def on_checkout(dbapi_connection, _record, _proxy) -> None:
        handed_out.append(in_autocommit(dbapi_connection))

    sa.event.listen(engine, "checkout", on_checkout)
    try:
        for _ in range(6):  # past psycopg's 5 runs, after which it prepares the statement
            assert client.get(WHOAMI, headers=bearer(token)).status_code == 200
    finally:
        sa.event.remove(engine, "checkout", on_checkout)
    assert len(handed_out) >= 6 and not any(handed_out)


def test_a_write_after_a_lookup_is_still_undone_by_a_rollback(app, user):
    key_id, token = new_key(app, user, name="before")
    with app.app_context():
        assert verification.verify(token).ok  # the lookup's connection goes back to the pool; the session takes it next
        db.session.execute(sa.update(ApiKey).where(ApiKey.id == key_id).values(name="changed"))
        db.session.rollback()
    assert load_key(app, key_id).name == "before"


@pytest.mark.skipif(not on_postgres(), reason="the lookup runs in a transaction on SQLite, where that is cheaper")
def test_on_postgresql_the_lookup_opens_no_transaction(app, user):
    _, token = new_key(app, user)
    statuses: list[str] = []
    with app.app_context():
        engine = db.engine

    def after(connection, _cursor, statement, *_args) -> None:
        if statement.lstrip().startswith("SELECT api_keys.id"):
            statuses.append(connection.connection.dbapi_connection.info.transaction_status.name)

    sa.event.listen(engine, "after_cursor_execute", after)
    try:
        with app.app_context():
            assert verification.verify(token).ok
    finally:
        sa.event.remove(engine, "after_cursor_execute", after)
    assert statuses == ["IDLE"]  # inside a transaction it would be INTRANS
