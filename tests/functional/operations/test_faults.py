"""Faults: the database locked by another writer or failing a commit. Refused cleanly (503, or the friendly error
page), nothing half-written, no secret shown, and service back by itself as soon as the database is."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

import app.database
from app.extensions import db
from tests.functional.dashboard_helpers import KEY, create_form
from tests.functional.keyhelpers import add_user, bearer, count, new_key, rows
from tests.support import AuthActions

API = "/api/v1/api-keys"
ALL = ("keys:read", "keys:write", "read:data")


@contextmanager
def write_lock(url: str) -> Iterator[None]:
    """Another process in the middle of a write, for the duration of the block: SQLite's write lock on the whole file
    (BEGIN IMMEDIATE), or on PostgreSQL every table locked against writes. Readers go on in both (SQLite's WAL)."""
    if url.startswith("sqlite"):
        holder = sqlite3.connect(sa.make_url(url).database, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            tables = ", ".join(table.name for table in db.metadata.sorted_tables)
            connection.exec_driver_sql(f"LOCK TABLE {tables} IN EXCLUSIVE MODE")
            try:
                yield
            finally:
                connection.rollback()
    finally:
        engine.dispose()


@pytest.fixture
def apps(apps, monkeypatch):
    # A locked database is waited for this long before the request gives up (5 s in production).
    monkeypatch.setattr(app.database, "SQLITE_BUSY_TIMEOUT_MS", 300)
    monkeypatch.setattr(app.database, "POSTGRES_LOCK_TIMEOUT_MS", 300)
    return apps


def test_writes_wait_then_answer_503_and_reads_go_on(tmp_path, apps):
    application = apps()
    owner = add_user(application)
    _, token = new_key(application, owner, scopes=ALL)
    client = application.test_client()
    with write_lock(application.config["SQLALCHEMY_DATABASE_URI"]):
        refused = client.post(API, json={"name": "during the lock"}, headers=bearer(token))
        assert refused.status_code == 503
        assert refused.get_json()["error"] == "service_unavailable"
        assert int(refused.headers["Retry-After"]) > 0
        assert not KEY.search(refused.get_data(as_text=True))
        # WAL: readers are not blocked by a writer, so verification and reads carry on.
        assert client.get("/api/v1/whoami", headers=bearer(token)).status_code == 200
        assert client.get(API, headers=bearer(token)).status_code == 200
    assert count(application, "api_keys") == 1  # nothing half-made
    # Back at once, with no restart.
    assert client.post(API, json={"name": "after the lock"}, headers=bearer(token)).status_code == 201


def test_the_dashboard_shows_a_friendly_page_when_the_database_is_locked(tmp_path, apps):
    application = apps()
    client = application.test_client()
    AuthActions(client).register()
    with write_lock(application.config["SQLALCHEMY_DATABASE_URI"]):
        response = create_form(client, name="locked out")
        assert response.status_code == 503
        html = response.get_data(as_text=True)
        assert "cannot reach its database" in html and "<html" in html
        assert not KEY.search(html)
    assert count(application, "api_keys") == 0
    assert create_form(client, name="later").status_code == 200


@pytest.mark.parametrize("operation", ["create", "rotate", "revoke"])
def test_a_failed_commit_leaves_nothing_half_done_and_shows_no_secret(apps, monkeypatch, operation):
    application = apps()
    owner = add_user(application)
    _, token = new_key(application, owner, scopes=ALL, days=60)
    target, target_token = new_key(application, owner, name="target")
    client = application.test_client()
    before = rows(application, "SELECT * FROM api_keys ORDER BY id"), count(application, "audit_events")

    real_commit = db.session.commit

    def failing_commit():
        db.session.rollback()
        raise OperationalError("COMMIT", {}, Exception("database is locked"))

    monkeypatch.setattr(db.session, "commit", failing_commit)
    request = {"create": lambda: client.post(API, json={"name": "half"}, headers=bearer(token)),
               "rotate": lambda: client.post(f"{API}/{target}/rotate", headers=bearer(token)),
               "revoke": lambda: client.delete(f"{API}/{target}", headers=bearer(token))}[operation]
    response = request()
    monkeypatch.setattr(db.session, "commit", real_commit)

    assert response.status_code == 503
    assert not KEY.search(response.get_data(as_text=True))
    assert (rows(application, "SELECT * FROM api_keys ORDER BY id"), count(application, "audit_events")) == before
    assert client.get("/api/v1/whoami", headers=bearer(target_token)).status_code == 200
