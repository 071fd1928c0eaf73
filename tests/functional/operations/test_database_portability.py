"""What the suite's PostgreSQL run found: inputs that worked on SQLite and failed on PostgreSQL, kept as tests.

Each test runs on both databases; on SQLite it guards the same behaviour from the other side.
"""

from __future__ import annotations

import base64

import pytest

from app.accounts import service as accounts
from app.audit.models import Alert
from app.database import MAX_ID, POSTGRES_LOCK_TIMEOUT_MS, SQLITE_BUSY_TIMEOUT_MS, engine_options
from app.extensions import db
from tests.functional.keyhelpers import bearer, new_key
from tests.support import PASSWORD, AuthActions, csrf_token_from

# Integer ids are 32 bits on PostgreSQL: one past that, and one past the 64 bits of SQLite.
TOO_LARGE = [MAX_ID + 1, 2**63]


@pytest.fixture
def admin(app, client):
    """Ada, an admin, signed in on `client`; grace's key and an open alert. Returns grace's key id."""
    with app.app_context():
        accounts.create_user("ada@example.com", PASSWORD, is_admin=True)
        grace = accounts.create_user("grace@example.com", PASSWORD).id
    key_id, _ = new_key(app, grace)
    with app.app_context():
        db.session.add(Alert(kind="revoked_key_used", key_id=key_id, ip="192.0.2.1", message="a revoked key"))
        db.session.commit()
    assert AuthActions(client).login().status_code == 302
    return key_id


def _post(client, path: str):
    token = csrf_token_from(client.get("/account").get_data(as_text=True))
    return client.post(path, data={"csrf_token": token})


@pytest.mark.parametrize("number", TOO_LARGE)
def test_an_id_past_the_integer_columns_is_not_found_on_every_page(client, admin, number):
    assert client.get(f"/keys/{number}").status_code == 404
    assert client.get(f"/admin/keys/{number}").status_code == 404
    assert _post(client, f"/admin/keys/{number}/disable").status_code == 404
    assert _post(client, f"/admin/alerts/{number}/acknowledge").status_code == 404
    assert _post(client, f"/admin/users/{number}/promote").status_code == 404


@pytest.mark.parametrize("number", TOO_LARGE)
def test_an_audit_filter_on_a_key_id_past_the_integer_columns_finds_nothing(client, admin, number):
    assert client.get("/admin/audit", query_string={"key": str(number)}).status_code == 200
    export = client.get("/admin/audit.csv", query_string={"key": str(number)})
    assert export.status_code == 200
    assert export.get_data(as_text=True).splitlines()[1:] == []  # the header alone
    found = client.get("/admin/audit.csv", query_string={"key": str(admin)}).get_data(as_text=True)
    assert "key.created" in found


def test_a_page_number_past_any_row_is_an_empty_page_not_an_overflow(client, admin):
    for page in (MAX_ID + 1, 10**20):
        assert client.get("/admin/audit", query_string={"page": str(page)}).status_code == 200


@pytest.mark.parametrize("number", TOO_LARGE)
def test_an_api_key_id_past_the_integer_columns_is_not_found(app, number):
    with app.app_context():
        owner = accounts.create_user("ada@example.com", PASSWORD).id
    _, token = new_key(app, owner, scopes=("keys:read", "keys:write"))
    client = app.test_client()
    assert client.get(f"/api/v1/api-keys/{number}", headers=bearer(token)).status_code == 404
    assert client.get(f"/api/v1/api-keys/{number}/usage", headers=bearer(token)).status_code == 404
    # A cursor the API never gave out, naming such an id, is refused like any other forged cursor.
    cursor = base64.urlsafe_b64encode(f"2026-01-01T00:00:00+00:00|{number}".encode()).decode().rstrip("=")
    response = client.get("/api/v1/api-keys", query_string={"cursor": cursor}, headers=bearer(token))
    assert response.status_code == 422
    assert "cursor" in response.get_json()["fields"]


def test_postgresql_waits_for_a_lock_as_long_as_sqlite_does_and_keeps_the_urls_own_options():
    # Without a lock_timeout a write behind another session's lock held its request (and worker) for as long as that
    # session liked; SQLite gives up after its busy timeout. tests/functional/operations/test_faults.py shows the 503.
    options = engine_options("postgresql+psycopg://keyfob@db/keyfob?options=-c%20statement_timeout%3D9000")
    assert options["connect_args"]["options"] == (
        f"-c statement_timeout=9000 -c lock_timeout={POSTGRES_LOCK_TIMEOUT_MS}")
    assert POSTGRES_LOCK_TIMEOUT_MS == SQLITE_BUSY_TIMEOUT_MS
    assert "options" not in engine_options("sqlite:///keyfob.db").get("connect_args", {})
