"""@require_api_key over HTTP: every verification outcome and its response, headers, limits and failure modes."""

from __future__ import annotations

import re
from dataclasses import FrozenInstanceError
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from flask import g
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.accounts.models import User
from app.api.decorator import require_api_key
from app.database import utcnow
from app.extensions import db
from app.keys import service, tokens, verification
from app.keys.models import ApiKey
from tests.functional.keyhelpers import (
    WHOAMI,
    act_on_key,
    add_user,
    audit_rows,
    bearer,
    flush,
    load_key,
    new_key,
    rows,
)
from tests.support import AppFactory, on_postgres, unreachable_database_url

REALM = 'Bearer realm="keyfob"'
WRITE = "/api/v1/test/write"
READ_WRITE = "/api/v1/test/read-write"
OWNER = "/api/v1/test/owner"


def _echo():
    return {"key": g.api_key.display_start, "owner": g.api_owner.id if g.api_owner else None}


def _owner():
    """Uses g.api_owner the ways a view would: attributes (twice), truth, isinstance and the object itself."""
    if g.api_owner is None:
        return {"owner": None}
    return {"email": g.api_owner.email, "id": g.api_owner.id, "truthy": bool(g.api_owner),
            "is_user": isinstance(g.api_owner, User),
            "object": type(g.api_owner._get_current_object()).__name__}


def with_test_routes(app):
    """Extra guarded routes, registered before the app's first request."""
    app.add_url_rule(WRITE, endpoint="test_write", view_func=require_api_key("write:data")(_echo))
    app.add_url_rule(READ_WRITE, endpoint="test_read_write",
                     view_func=require_api_key("read:data", "write:data")(_echo))
    app.add_url_rule(OWNER, endpoint="test_owner", view_func=require_api_key()(_owner))
    return app


@pytest.fixture
def app(app):
    return with_test_routes(app)


# -- no key, or a key in the wrong place ---------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [{}, {"Authorization": "Basic xyz"}, {"Authorization": "Bearer"},
                                     {"Authorization": "Bearer    "}, {"Authorization": "Token kf_abc"}])
def test_no_bearer_token_is_401_missing_token(client, headers):
    response = client.get(WHOAMI, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == REALM
    body = response.get_json()
    assert body["error"] == "missing_token" and "Authorization: Bearer" in body["message"]
    assert set(body) == {"error", "message"}


def test_other_query_parameters_are_no_reason_to_refuse(app, client, user):
    _, token = new_key(app, user)
    response = client.get(WHOAMI, query_string={"page": "2", "keys": "all"}, headers=bearer(token))
    assert response.status_code == 200
    response = client.get(WHOAMI, query_string={"page": "2", "token": "x"}, headers=bearer(token))
    assert response.status_code == 400


@pytest.mark.parametrize("parameter", ["api_key", "access_token", "apikey", "key", "token"])
def test_a_key_in_the_url_is_refused_even_with_a_valid_header(app, client, user, parameter):
    _, token = new_key(app, user)
    response = client.get(WHOAMI, query_string={parameter: token}, headers=bearer(token))
    assert response.status_code == 400
    assert response.get_json()["error"] == "key_in_url"
    assert client.get(WHOAMI, headers=bearer(token)).status_code == 200


# -- invalid keys all look the same --------------------------------------------------------------------------------

def test_every_kind_of_invalid_key_gets_the_same_401(app, client, user):
    now = utcnow()
    valid_id, valid = new_key(app, user)
    malformed = valid[:-1] + ("A" if valid[-1] != "A" else "B")  # checksum no longer matches
    _, expired = new_key(app, user, now=now - 40 * timedelta(days=1), days=30)
    revoked_id, revoked = new_key(app, user)
    act_on_key(app, revoked_id, service.revoke)
    disabled_id, disabled = new_key(app, user)
    act_on_key(app, disabled_id, service.disable)
    suspended_id, suspended = new_key(app, user)
    with app.app_context():
        db.session.execute(sa.update(ApiKey).where(ApiKey.id == suspended_id)
                           .values(suspended_until=now + timedelta(hours=1)))
        db.session.commit()
    other = add_user(app, "grace@example.com")
    _, orphaned = new_key(app, other)

    assert client.get(WHOAMI, headers=bearer(valid)).status_code == 200
    assert client.get(WHOAMI, headers=bearer(orphaned)).status_code == 200
    with app.app_context():
        db.session.execute(sa.text("UPDATE users SET is_active = false WHERE id = :id"), {"id": other})
        db.session.commit()

    presented = {"malformed": malformed, "not_found": tokens.generate("kf"), "expired": expired,
                 "revoked": revoked, "disabled": disabled, "suspended": suspended,
                 "disabled: owner deactivated": orphaned}
    responses = {outcome: client.get(WHOAMI, headers=bearer(token)) for outcome, token in presented.items()}
    assert {response.status_code for response in responses.values()} == {401}
    assert len({response.get_data() for response in responses.values()}) == 1
    assert len({response.headers["WWW-Authenticate"] for response in responses.values()}) == 1
    response = responses["malformed"]
    assert response.get_json()["error"] == "invalid_token"
    assert response.headers["WWW-Authenticate"].startswith(REALM + ", ")
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    # Each one was refused for the reason intended (the audit log tells them apart, the client cannot).
    flush(app)
    assert sorted(row["detail"] for row in audit_rows(app, "key.verify_failed")) == sorted(presented)
    assert load_key(app, valid_id).usage_count == 1


# -- scopes --------------------------------------------------------------------------------------------------------

def test_a_missing_scope_is_403_insufficient_scope(app, client, user):
    _, reader = new_key(app, user, scopes=["read:data"])
    assert client.get(WHOAMI, headers=bearer(reader)).status_code == 200
    response = client.get(WRITE, headers=bearer(reader))
    assert response.status_code == 403
    assert response.get_json()["error"] == "insufficient_scope"
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith(REALM) and 'error="insufficient_scope"' in challenge
    assert 'scope="write:data"' in challenge


def test_several_scopes_mean_all_of_them(app, client, user):
    _, reader = new_key(app, user, scopes=["read:data"])
    _, writer = new_key(app, user, scopes=["write:data"])
    _, both = new_key(app, user, scopes=["read:data", "write:data"])
    assert client.get(WRITE, headers=bearer(writer)).status_code == 200
    for token, missing in ((reader, "write:data"), (writer, "read:data")):
        response = client.get(READ_WRITE, headers=bearer(token))
        assert response.status_code == 403
        assert f'scope="{missing}"' in response.headers["WWW-Authenticate"]
    response = client.get(READ_WRITE, headers=bearer(both))
    assert response.status_code == 200
    assert response.get_json() == {"key": both[:9], "owner": user}


# -- where the request comes from ----------------------------------------------------------------------------------

def test_ip_allowlist(app, client, user):
    _, token = new_key(app, user, allowed_ips=["10.0.0.0/8", "2001:db8::/32"])
    for address in ("192.0.2.1", "11.0.0.1", "2001:db9::1"):
        response = client.get(WHOAMI, headers=bearer(token), environ_base={"REMOTE_ADDR": address})
        assert response.status_code == 403, address
        assert response.get_json()["error"] == "ip_not_allowed"
    for address in ("10.0.0.1", "10.255.1.2", "2001:db8::42", "::ffff:10.1.2.3"):
        response = client.get(WHOAMI, headers=bearer(token), environ_base={"REMOTE_ADDR": address})
        assert response.status_code == 200, address


def test_an_ipv4_mapped_allowlist_entry_admits_that_address(app, client, user):
    _, token = new_key(app, user, allowed_ips=["::ffff:10.1.2.3"])
    for address in ("::ffff:10.1.2.3", "10.1.2.3"):
        response = client.get(WHOAMI, headers=bearer(token), environ_base={"REMOTE_ADDR": address})
        assert response.status_code == 200, address


@pytest.mark.parametrize(("proxies", "remote", "forwarded", "status"), [
    ("1", "192.0.2.1", "10.0.0.5", 200),               # the proxy's header is believed
    ("1", "192.0.2.1", None, 403),
    ("1", "192.0.2.1", "10.0.0.5, 192.0.2.9", 403),    # only the hop the proxy added counts, not a forged one
    ("0", "192.0.2.1", "10.0.0.5", 403),               # no proxy: a client's header is ignored
    ("0", "10.0.0.5", "192.0.2.1", 200),
])
def test_x_forwarded_for_only_behind_trusted_proxies(apps, proxies, remote, forwarded, status):
    app = apps(TRUSTED_PROXIES=proxies)
    _, token = new_key(app, add_user(app), allowed_ips=["10.0.0.0/8"])
    headers = bearer(token) | ({"X-Forwarded-For": forwarded} if forwarded else {})
    response = app.test_client().get(WHOAMI, headers=headers, environ_base={"REMOTE_ADDR": remote})
    assert response.status_code == status


# -- rate limits, suspension, use quotas ---------------------------------------------------------------------------

def test_rate_limit_answers_429_with_retry_after_and_ratelimit_headers(app, client, user):
    _, token = new_key(app, user, rate_limit=3)
    for remaining in (2, 1, 0):
        response = client.get(WHOAMI, headers=bearer(token))
        assert response.status_code == 200
        assert response.headers["RateLimit-Policy"] == '"per-key";q=3;w=60'
        assert re.fullmatch(rf'"per-key";r={remaining};t=\d+', response.headers["RateLimit"])
    response = client.get(WHOAMI, headers=bearer(token))
    assert response.status_code == 429
    assert response.get_json()["error"] == "rate_limited"
    assert 0 < int(response.headers["Retry-After"]) <= 60
    assert response.headers["RateLimit-Policy"] == '"per-key";q=3;w=60'
    assert re.fullmatch(r'"per-key";r=0;t=[1-9]\d*', response.headers["RateLimit"])
    _, unlimited = new_key(app, user)
    response = client.get(WHOAMI, headers=bearer(unlimited))
    assert response.status_code == 200 and "RateLimit" not in response.headers


def test_a_key_that_keeps_exceeding_its_limit_is_suspended(apps):
    app = apps(KEY_SUSPEND_AFTER="2 per 1 minute", KEY_SUSPENSION_SECONDS="600")
    key_id, token = new_key(app, add_user(app), rate_limit=1)
    client = app.test_client()
    before = utcnow()
    statuses = [client.get(WHOAMI, headers=bearer(token), environ_base={"REMOTE_ADDR": "192.0.2.8"}).status_code
                for _ in range(4)]
    after = utcnow()
    assert statuses == [200, 429, 429, 429]

    key = load_key(app, key_id)
    assert key.suspended_until is not None
    assert before + timedelta(seconds=600) <= key.suspended_until <= after + timedelta(seconds=600)
    response = client.get(WHOAMI, headers=bearer(token))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]

    [alert] = rows(app, "SELECT * FROM alerts")
    assert (alert["kind"], alert["key_id"], alert["ip"]) == ("rate_limit_suspension", key_id, "192.0.2.8")
    [suspended] = audit_rows(app, "key.suspended")
    assert suspended["key_id"] == key_id and "suspended until" in suspended["detail"]


def test_remaining_uses_run_out(app, client, user):
    key_id, token = new_key(app, user, remaining_uses=2)
    assert [client.get(WHOAMI, headers=bearer(token)).status_code for _ in range(2)] == [200, 200]
    response = client.get(WHOAMI, headers=bearer(token))
    assert response.status_code == 403
    assert response.get_json()["error"] == "usage_exceeded"
    assert load_key(app, key_id).remaining_uses == 0


# -- what a valid key gets -----------------------------------------------------------------------------------------

def test_whoami_says_who_the_key_acts_for(app, client, user):
    key_id, token = new_key(app, user, scopes=["write:data", "read:data"])
    before = utcnow()
    response = client.get(WHOAMI, headers=bearer(token))
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"user_id", "key_id", "key", "scopes", "timestamp"}
    assert (body["user_id"], body["key_id"], body["key"]) == (user, key_id, token[:9])
    assert body["scopes"] == ["read:data", "write:data"]
    stamp = datetime.fromisoformat(body["timestamp"])
    assert stamp.tzinfo is not None and before <= stamp <= utcnow()


def test_the_static_service_key(apps):
    app = with_test_routes(apps(SERVICE_API_KEY="s" * 40, SERVICE_API_KEY_SCOPES="read:data"))
    client = app.test_client()
    response = client.get(WHOAMI, headers=bearer("s" * 40))
    assert response.status_code == 200
    body = response.get_json()
    assert (body["key_id"], body["user_id"], body["scopes"]) == (None, None, ["read:data"])
    response = client.get(WRITE, headers=bearer("s" * 40))
    assert response.status_code == 403
    assert 'scope="write:data"' in response.headers["WWW-Authenticate"]
    assert client.get(WHOAMI, headers=bearer("s" * 39 + "t")).status_code == 401


def test_a_revoke_applies_to_the_very_next_request(app, client, user):
    key_id, token = new_key(app, user)
    assert client.get(WHOAMI, headers=bearer(token)).status_code == 200
    act_on_key(app, key_id, service.revoke, "compromised")
    assert client.get(WHOAMI, headers=bearer(token)).status_code == 401


def _set_key_columns(app, key_id, **values):
    with app.app_context():
        db.session.execute(sa.update(ApiKey).where(ApiKey.id == key_id).values(**values))
        db.session.commit()


@pytest.mark.parametrize("change", ["revoke", "disable", "expire", "suspend", "deactivate owner"])
def test_a_change_made_by_another_process_applies_to_the_next_request(apps, change):
    serving, other = apps("shared"), apps("shared")  # two apps on one database file, as two processes
    user = add_user(serving)
    key_id, token = new_key(serving, user)
    client = serving.test_client()
    assert [client.get(WHOAMI, headers=bearer(token)).status_code for _ in range(3)] == [200] * 3
    past, future = utcnow() - timedelta(seconds=1), utcnow() + timedelta(hours=1)
    if change == "revoke":
        act_on_key(other, key_id, service.revoke)
    elif change == "disable":
        act_on_key(other, key_id, service.disable)
    elif change == "expire":
        _set_key_columns(other, key_id, expires_at=past)
    elif change == "suspend":
        _set_key_columns(other, key_id, suspended_until=future)
    else:
        with other.app_context():
            db.session.execute(sa.text("UPDATE users SET is_active = false WHERE id = :id"), {"id": user})
            db.session.commit()
    assert client.get(WHOAMI, headers=bearer(token)).status_code == 401
    if change == "disable":
        act_on_key(other, key_id, service.enable)
        assert client.get(WHOAMI, headers=bearer(token)).status_code == 200


def test_verify_returns_a_frozen_record_of_the_key(app, user):
    now = utcnow()
    key_id, token = new_key(app, user, name="billing sync", scopes=["write:data", "read:data"], now=now,
                            allowed_ips=["10.0.0.0/8", "2001:db8::/32"], rate_limit=600, remaining_uses=5)
    with app.app_context():
        result = verification.verify(token, ["read:data"], client_ip="10.1.2.3", now=now)
    assert result.ok
    key = result.key
    assert isinstance(key, verification.VerifiedKey)
    assert (key.id, key.user_id, key.name, key.display_start) == (key_id, user, "billing sync", token[:9])
    assert key.scopes == ("read:data", "write:data")
    assert key.allowed_ips == ("10.0.0.0/8", "2001:db8::/32")
    assert key.expires_at == now + timedelta(days=30) and key.expires_at.tzinfo is not None
    assert (key.rate_limit, key.remaining_uses) == (600, 5)  # the quota as read, before this use
    assert load_key(app, key_id).remaining_uses == 4
    with pytest.raises(FrozenInstanceError):
        key.scopes = ("keys:write",)


# -- cost and robustness -------------------------------------------------------------------------------------------

def _queries_during(app, request):
    queries = []

    def count(*args):
        queries.append(args[2])

    with app.app_context():
        sa.event.listen(db.engine, "before_cursor_execute", count)
        try:
            response = request()
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", count)
    return response, queries


def test_a_key_with_a_bad_checksum_costs_no_database_query(app, client, user):
    _, token = new_key(app, user)
    broken = token[:-1] + ("A" if token[-1] != "A" else "B")
    response, queries = _queries_during(app, lambda: client.get(WHOAMI, headers=bearer(broken)))
    assert response.status_code == 401
    assert queries == []
    # The counter does see the lookup of a well-formed key.
    response, queries = _queries_during(app, lambda: client.get(WHOAMI, headers=bearer(tokens.generate("kf"))))
    assert response.status_code == 401
    assert len(queries) >= 1


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory):
    app = AppFactory(tmp_path_factory.mktemp("fuzz"))
    built = app()
    yield built.test_client()
    app.close()


LATIN1_PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_categories=("Cc",))
BEARERISH = st.from_regex(r"(?i)(bearer|basic|token)? {0,3}(kf|sk|KF)?_?[0-9A-Za-z_=.+/-]{0,40}", fullmatch=True)


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.one_of(st.text(LATIN1_PRINTABLE, max_size=80), BEARERISH))
def test_no_authorization_header_value_causes_a_server_error(fuzz_client, value):
    response = fuzz_client.get(WHOAMI, headers={"Authorization": value})
    assert response.status_code == 401  # no key in the app, and none in the URL: whatever the header, no valid key
    body = response.get_json()
    assert isinstance(body, dict)
    assert response.status_code == 200 or body["error"] in {"missing_token", "invalid_token"}


LOOKUP_SQL = "FROM api_keys JOIN users"


def test_verifying_a_valid_key_costs_one_query(app, user):
    _, token = new_key(app, user)
    with app.app_context():
        result, queries = _queries_during(app, lambda: verification.verify(token))
    assert result.ok
    assert len(queries) == 1 and LOOKUP_SQL in queries[0]


def test_whoami_costs_one_query_and_never_loads_the_owner(app, client, user):
    _, token = new_key(app, user)
    response, queries = _queries_during(app, lambda: client.get(WHOAMI, headers=bearer(token)))
    assert response.status_code == 200
    assert len(queries) == 1 and LOOKUP_SQL in queries[0]


def test_g_api_owner_is_the_owner_loaded_once_when_a_view_uses_it(app, client, user):
    _, token = new_key(app, user)
    response, queries = _queries_during(app, lambda: client.get(OWNER, headers=bearer(token)))
    assert response.status_code == 200
    assert response.get_json() == {"email": "ada@example.com", "id": user, "truthy": True, "is_user": True,
                                   "object": "User"}
    assert len(queries) == 2
    assert LOOKUP_SQL in queries[0] and "FROM users" in queries[1] and "api_keys" not in queries[1]
    # The next request loads the owner afresh: nothing is kept between requests.
    with app.app_context():
        db.session.execute(sa.text("UPDATE users SET email = 'ada@example.org' WHERE id = :id"), {"id": user})
        db.session.commit()
    assert client.get(OWNER, headers=bearer(token)).get_json()["email"] == "ada@example.org"


def test_the_service_key_has_no_owner_and_costs_no_query(apps):
    app = with_test_routes(apps(SERVICE_API_KEY="s" * 40))
    response, queries = _queries_during(app, lambda: app.test_client().get(OWNER, headers=bearer("s" * 40)))
    assert response.status_code == 200
    assert response.get_json() == {"owner": None}
    assert queries == []


# What each driver says when the database is briefly out of reach.
BLIP = "server closed the connection unexpectedly" if on_postgres() else "database is locked"


class _FlakyDriver:
    """Makes the database driver raise `message` for the next `failures` key lookups, counting every attempt."""

    def __init__(self, dialect, failures: int, message: str) -> None:
        self.failures, self.message, self.attempts = failures, message, 0
        self._execute, self._dbapi = dialect.do_execute, dialect.loaded_dbapi

    def __call__(self, cursor, statement, parameters, context=None):
        if LOOKUP_SQL not in statement:
            return self._execute(cursor, statement, parameters, context)
        self.attempts += 1
        if self.attempts <= self.failures:
            raise self._dbapi.OperationalError(self.message)  # sqlite3's or psycopg's, as the driver would
        return self._execute(cursor, statement, parameters, context)


@pytest.fixture
def flaky(app, monkeypatch):
    sleeps: list[float] = []
    monkeypatch.setattr(verification.time, "sleep", sleeps.append)

    def install(failures: int, message: str = BLIP) -> tuple[_FlakyDriver, list[float]]:
        with app.app_context():
            dialect = db.engine.dialect
        driver = _FlakyDriver(dialect, failures, message)
        monkeypatch.setattr(dialect, "do_execute", driver)
        return driver, sleeps

    return install


def test_a_database_blip_during_the_lookup_is_retried_with_backoff(app, client, user, flaky):
    _, token = new_key(app, user)
    driver, sleeps = flaky(failures=2)
    assert client.get(WHOAMI, headers=bearer(token)).status_code == 200
    assert driver.attempts == 3
    assert sleeps == [verification.LOOKUP_BACKOFF_SECONDS, verification.LOOKUP_BACKOFF_SECONDS * 2]


def test_a_lasting_outage_during_the_lookup_answers_503_after_the_retries(app, client, user, flaky):
    _, token = new_key(app, user)
    driver, sleeps = flaky(failures=verification.LOOKUP_ATTEMPTS)
    response = client.get(WHOAMI, headers=bearer(token))
    assert response.status_code == 503
    assert response.get_json()["error"] == "service_unavailable"
    assert int(response.headers["Retry-After"]) > 0
    assert driver.attempts == verification.LOOKUP_ATTEMPTS and len(sleeps) == verification.LOOKUP_ATTEMPTS - 1
    assert client.get(WHOAMI, headers=bearer(token)).status_code == 200  # the pool recovers


def test_an_sql_error_during_the_lookup_is_not_retried(app, client, user, flaky):
    _, token = new_key(app, user)
    driver, sleeps = flaky(failures=1, message="no such column: api_keys.nothing")
    response = client.get(WHOAMI, headers=bearer(token))
    assert response.status_code == 500
    assert response.get_json()["error"] == "internal_error"
    assert (driver.attempts, sleeps) == (1, [])


def test_an_unreachable_database_answers_503_not_500(tmp_path, apps):
    app = apps(DATABASE_URL=unreachable_database_url(tmp_path), migrate=False)
    response = app.test_client().get(WHOAMI, headers=bearer(tokens.generate("kf")))
    assert response.status_code == 503
    assert response.get_json()["error"] == "service_unavailable"
    assert int(response.headers["Retry-After"]) > 0


def test_an_outage_is_retried_three_times_with_growing_pauses_then_503(tmp_path, apps, monkeypatch):
    app = apps(DATABASE_URL=unreachable_database_url(tmp_path), migrate=False)
    pauses: list[float] = []
    monkeypatch.setattr(verification.time, "sleep", pauses.append)
    response = app.test_client().get(WHOAMI, headers=bearer(tokens.generate("kf")))
    assert response.status_code == 503
    assert pauses == [verification.LOOKUP_BACKOFF_SECONDS, verification.LOOKUP_BACKOFF_SECONDS * 2]  # 3 tries, 2 pauses


@pytest.mark.parametrize("name", ["foo", "q", "x-api-key"])
def test_a_key_in_any_query_parameter_is_refused(app, client, user, name):
    _, token = new_key(app, user)
    response = client.get(WHOAMI, query_string={name: token}, headers=bearer(token))
    assert response.status_code == 400
    assert response.get_json()["error"] == "key_in_url"
    # A value that is not a well-formed key is just a parameter.
    assert client.get(WHOAMI, query_string={name: token[:-1]}, headers=bearer(token)).status_code == 200


def test_a_refusal_of_the_service_key_is_audited(apps):
    service_key = "s" * 40
    app = apps(SERVICE_API_KEY=service_key, SERVICE_API_KEY_SCOPES="read:data")
    client = app.test_client()
    response = client.get("/api/v1/api-keys", headers={**bearer(service_key), "User-Agent": "cron/1"})
    assert response.status_code == 403
    assert client.get(WHOAMI, query_string={"k": service_key}, headers=bearer(service_key)).status_code == 400
    flush(app)
    [row] = audit_rows(app, "key.verify_failed")
    assert (row["key_display"], row["detail"], row["user_agent"]) == ("service", "insufficient_scope: needs keys:read",
                                                                       "cron/1")
    assert service_key not in str(row)
