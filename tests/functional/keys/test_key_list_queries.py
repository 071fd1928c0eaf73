"""The key list's SQL stays on indexes: its counts read no key rows, its renewal list needs no sort.

A user's key list counts the live keys (for "Page 1 of N") and the ended ones (for the folded list), and fetches the
keys to renew in expiry order. Through the (user_id, created_at) index each of those read every one of the user's
rows: 3 ms each at 10,000 keys on SQLite, which made that user's page 3.6 times as dear as a new user's
(docs/performance.md). The (user_id, revoked_at, expires_at) index answers the counts from the index alone and
hands the renewal list over in order.
"""

from __future__ import annotations

import pytest
from sqlalchemy import event

from app.extensions import db
from tests.functional.keyhelpers import new_key

INDEX = "ix_api_keys_user_id_revoked_at_expires_at"


def _statements_of(app, client, path: str) -> list[tuple[str, tuple]]:
    """The SQL statements (and their parameters) that one GET of `path` sends to the database."""
    with app.app_context():
        engine = db.engine
    seen: list[tuple[str, tuple]] = []

    def capture(connection, cursor, statement, parameters, context, executemany):
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        assert client.get(path).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    return seen


def test_the_key_list_counts_and_finds_keys_to_renew_through_the_owners_state_index(app, client, auth, user):
    with app.app_context():
        if db.engine.dialect.name != "sqlite":
            pytest.skip("SQLite's plan depends on the schema alone; PostgreSQL's on the table's statistics")
    new_key(app, user, name="renew me", days=5)
    new_key(app, user, name="live", days=90)
    auth.login()

    statements = [(sql, params) for sql, params in _statements_of(app, client, "/keys/") if "FROM api_keys" in sql]
    with app.app_context(), db.engine.connect() as connection:
        plans = {sql: " ".join(str(row) for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params))
                 for sql, params in statements}

    counts = [plan for sql, plan in plans.items() if "count(*)" in sql]
    renewal = [plan for sql, plan in plans.items() if "ORDER BY api_keys.expires_at" in sql]
    assert len(counts) == 2, plans  # the live keys' page and the ended keys' fold
    assert all(f"COVERING INDEX {INDEX}" in plan for plan in counts), counts
    assert len(renewal) == 1 and INDEX in renewal[0] and "TEMP B-TREE" not in renewal[0], renewal
    assert not any("SCAN api_keys" in plan for plan in plans.values()), plans
