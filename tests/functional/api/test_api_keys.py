"""The JSON API's key operations through the Flask test client: each success and each refusal."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from app.database import utcnow
from app.keys import service
from tests.functional.dashboard_helpers import post_action
from tests.functional.keyhelpers import (
    act_on_key,
    add_user,
    all_stored_values,
    audit_rows,
    bearer,
    count,
    flush,
    new_key,
    rows,
)
from tests.functional.route_matrix import signed_in

API = "/api/v1/api-keys"
ALL_SCOPES = ("keys:read", "keys:write", "read:data", "write:data")
SECRET = r"^kf_[0-9A-Za-z]{33}$"


@pytest.fixture
def api(app):
    """(app, client, headers of a key with every scope and 60 days left, owner id)."""
    owner = add_user(app)
    _, token = new_key(app, owner, name="admin tool", scopes=ALL_SCOPES, days=60)
    return app, app.test_client(), bearer(token), owner


def make(client, headers, **body):
    body.setdefault("name", "child")
    return client.post(API, json=body, headers=headers)


def key_ids(response) -> list[int]:
    return [key["id"] for key in response.get_json()["data"]]


# -- create ----------------------------------------------------------------------------------------------------------

def test_create_answers_201_with_the_key_once(api):
    app, client, headers, owner = api
    response = make(client, headers, name="billing", description="nightly", scopes=["read:data"],
                    expires_in_days=30, allowed_ips=["10.0.0.0/8"], rate_limit=60, remaining_uses=1000)
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Content-Type"] == "application/json"
    body = response.get_json()
    key = body["key"]
    assert response.headers["Location"] == f"{API}/{key['id']}"
    assert (key["name"], key["description"], key["scopes"]) == ("billing", "nightly", ["read:data"])
    assert (key["allowed_ips"], key["rate_limit"], key["remaining_uses"]) == (["10.0.0.0/8"], 60, 1000)
    assert key["start"] == body["secret"][:9]
    assert set(key) >= {"status", "created_at", "expires_at", "usage_count", "last_used_at"}
    assert "secret_hash" not in key
    assert body["secret"] not in all_stored_values(app)
    # The new key works, from an allowed address, and is never shown again.
    whoami = client.get("/api/v1/whoami", headers=bearer(body["secret"]), environ_base={"REMOTE_ADDR": "10.0.0.1"})
    assert whoami.status_code == 200
    assert body["secret"] not in client.get(f"{API}/{key['id']}", headers=headers).get_data(as_text=True)
    assert audit_rows(app, "key.created")[-1]["actor"].startswith("key:kf_")


def test_create_defaults_to_90_days_capped_by_the_callers_own_expiry(api):
    _, client, headers, _ = api
    key = make(client, headers).get_json()["key"]
    expires = datetime.fromisoformat(key["expires_at"].replace("Z", "+00:00"))
    assert expires <= utcnow() + timedelta(days=60)  # the caller has 60 days left, so 90 becomes 60
    assert expires >= utcnow() + timedelta(days=59)


@pytest.mark.parametrize(("body", "field", "message"), [
    ({"name": ""}, "name", "Give the key a name"),
    ({"name": None}, "name", "Required"),
    ({"name": 5}, "name", "Must be text"),
    ({"name": "x" * 101}, "name", "at most 100"),
    ({"description": "x" * 501}, "description", "at most 500"),
    ({"scopes": "read:data"}, "scopes", "list of text"),
    ({"scopes": ["nope"]}, "scopes", "Unknown scope"),
    ({"expires_in_days": 0}, "expires_in_days", "between 1"),
    ({"expires_in_days": "30"}, "expires_in_days", "whole number"),
    ({"expires_in_days": True}, "expires_in_days", "whole number"),
    ({"expires_at": "tomorrow"}, "expires_at", "date-time"),
    ({"expires_at": "2027-01-01T00:00:00"}, "expires_at", "time zone"),
    ({"expires_at": "2001-01-01T00:00:00Z"}, "expires_at", "in the future"),
    ({"expires_at": "2026-12-01T00:00:00Z", "expires_in_days": 3}, "expires_at", "not both"),
    ({"allowed_ips": ["300.0.0.1"]}, "allowed_ips", "not an IP address"),
    ({"rate_limit": 0}, "rate_limit", "between 1"),
    ({"rate_limit": 2.5}, "rate_limit", "whole number"),
    ({"remaining_uses": -1}, "remaining_uses", "between 1"),
])
def test_bad_fields_are_422_naming_the_field_and_nothing_is_made(api, body, field, message):
    app, client, headers, _ = api
    before = count(app, "api_keys")
    response = make(client, headers, **body)
    assert response.status_code == 422, response.get_json()
    error = response.get_json()
    assert error["error"] == "validation_failed"
    assert message in error["fields"][field]
    assert count(app, "api_keys") == before


@pytest.mark.parametrize("field", ["owner", "user_id", "usage_count", "created_at", "id", "secret", "status",
                                   "last_used_at", "revoked_at"])
def test_server_kept_fields_cannot_be_set(api, field):
    app, client, headers, _ = api
    response = make(client, headers, **{field: 1})
    assert response.status_code == 400
    assert response.get_json()["error"] == "unknown_fields"
    assert "Cannot be set" in response.get_json()["fields"][field]
    assert count(app, "api_keys") == 1


def test_unknown_fields_are_named(api):
    _, client, headers, _ = api
    response = make(client, headers, colour="blue", sizes=[1])
    assert response.status_code == 400
    assert response.get_json()["fields"] == {"colour": "Unknown field.", "sizes": "Unknown field."}


@pytest.mark.parametrize(("data", "content_type", "status", "code"), [
    ("{not json", "application/json", 400, "malformed_json"),
    ("[1, 2]", "application/json", 400, "malformed_json"),
    ("", "application/json", 400, "malformed_json"),
    ("name=x", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ('{"name": "x"}', "text/plain", 415, "unsupported_media_type"),
])
def test_a_body_that_is_not_a_json_object_is_refused(api, data, content_type, status, code):
    app, client, headers, _ = api
    response = client.post(API, data=data, headers={**headers, "Content-Type": content_type})
    assert response.status_code == status
    assert response.get_json()["error"] == code
    assert response.headers["Content-Type"] == "application/json"
    assert count(app, "api_keys") == 1


# -- never more than the caller has ------------------------------------------------------------------------------

def test_a_key_cannot_grant_a_scope_it_lacks(apps):
    app = apps()
    owner = add_user(app)
    _, token = new_key(app, owner, scopes=("keys:write", "read:data"))
    client = app.test_client()
    response = make(client, bearer(token), scopes=["read:data", "write:data"])
    assert response.status_code == 403
    assert response.get_json()["error"] == "insufficient_scope"
    assert "write:data" in response.get_json()["message"]
    assert make(client, bearer(token), scopes=["read:data"]).status_code == 201
    child = make(client, bearer(token), scopes=[]).get_json()["key"]["id"]
    # Nor widen one it changes.
    patched = client.patch(f"{API}/{child}", json={"scopes": ["keys:read"]}, headers=bearer(token))
    assert patched.status_code == 403
    assert rows(app, "SELECT scopes FROM api_keys WHERE id = :id", id=child)[0]["scopes"] == ""


def test_a_key_cannot_make_or_renew_a_key_that_outlives_it(api):
    app, client, headers, _ = api
    assert make(client, headers, expires_in_days=61).status_code == 403
    assert make(client, headers, expires_in_days=59).status_code == 201
    child = make(client, headers, expires_in_days=5).get_json()["key"]
    assert client.post(f"{API}/{child['id']}/renew", json={"expires_in_days": 100},
                       headers=headers).status_code == 403
    renewed = client.post(f"{API}/{child['id']}/renew", headers=headers).get_json()
    assert renewed["expires_at"] <= (utcnow() + timedelta(days=60)).isoformat()


@pytest.mark.parametrize("method", ["patch", "put"])
@pytest.mark.parametrize("target", ["itself", "a sibling"])
def test_a_key_cannot_widen_itself_or_another_key(apps, method, target):
    app = apps()
    owner = add_user(app)
    caller, token = new_key(app, owner, scopes=("keys:write", "read:data"))
    sibling, _ = new_key(app, owner, name="sibling", scopes=("read:data",))
    key_id = caller if target == "itself" else sibling
    before = rows(app, "SELECT * FROM api_keys ORDER BY id")
    body = {"name": "wider", "scopes": ["keys:write", "read:data", "write:data"]}
    if method == "put":
        body.update(description="", allowed_ips=[], rate_limit=None)
    response = getattr(app.test_client(), method)(f"{API}/{key_id}", json=body, headers=bearer(token))
    assert response.status_code == 403
    assert "write:data" in response.get_json()["message"]
    assert rows(app, "SELECT * FROM api_keys ORDER BY id") == before


@pytest.mark.parametrize(("scopes", "days"), [(ALL_SCOPES, 30), (("read:data",), 90)],
                         ids=["more scopes", "a longer life"])
def test_a_key_cannot_rotate_a_key_that_could_do_more_than_itself(apps, scopes, days):
    """Rotating answers with the key's new secret: rotating a wider or longer-lived sibling would hand it over."""
    app = apps()
    owner = add_user(app)
    caller, token = new_key(app, owner, scopes=("keys:write", "read:data"), days=60)
    wider, wider_token = new_key(app, owner, name="wider", scopes=scopes, days=days)
    client = app.test_client()
    before = rows(app, "SELECT * FROM api_keys WHERE id = :id", id=wider)
    response = client.post(f"{API}/{wider}/rotate", json={"grace": "none"}, headers=bearer(token))
    assert response.status_code == 403
    assert response.get_json()["error"] == "insufficient_scope"
    assert "secret" not in response.get_json()
    assert rows(app, "SELECT * FROM api_keys WHERE id = :id", id=wider) == before
    assert client.get("/api/v1/whoami", headers=bearer(wider_token)).status_code == 200
    # A key holding no more, itself included, rotates as before.
    narrower, _ = new_key(app, owner, name="narrower", scopes=("read:data",), days=30)
    assert client.post(f"{API}/{narrower}/rotate", headers=bearer(token)).status_code == 200
    assert client.post(f"{API}/{caller}/rotate", headers=bearer(token)).status_code == 200


def test_the_caller_must_hold_the_scope_of_the_operation(api):
    app, client, _, owner = api
    _, reader = new_key(app, owner, scopes=("keys:read",))
    assert client.get(API, headers=bearer(reader)).status_code == 200
    refused = make(client, bearer(reader))
    assert refused.status_code == 403
    assert 'scope="keys:write"' in refused.headers["WWW-Authenticate"]
    _, data_only = new_key(app, owner, scopes=("read:data",))
    assert client.get(API, headers=bearer(data_only)).status_code == 403


# -- reading -----------------------------------------------------------------------------------------------------

def test_list_pages_with_a_cursor_and_filters(api):
    app, client, headers, owner = api
    made = [make(client, headers, name=f"k{i}").get_json()["key"]["id"] for i in range(5)]
    seen, cursor = [], None
    while True:
        response = client.get(API, query_string={"limit": 2, **({"cursor": cursor} if cursor else {})},
                              headers=headers)
        assert response.status_code == 200
        seen += key_ids(response)
        cursor = response.get_json()["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 6 and len(set(seen)) == 6
    assert seen[:5] == sorted(made, reverse=True)  # newest first

    act_on_key(app, made[0], service.revoke)
    assert made[0] not in key_ids(client.get(API, headers=headers))
    assert key_ids(client.get(API, query_string={"status": "revoked"}, headers=headers)) == [made[0]]
    assert made[0] in key_ids(client.get(API, query_string={"status": "all"}, headers=headers))
    assert key_ids(client.get(API, query_string={"q": "k3"}, headers=headers)) == [made[3]]
    soon = make(client, headers, name="soon", expires_in_days=3).get_json()["key"]["id"]
    assert key_ids(client.get(API, query_string={"expiring_within_days": 7}, headers=headers)) == [soon]


@pytest.mark.parametrize(("query", "field"), [
    ({"limit": 0}, "limit"), ({"limit": 101}, "limit"), ({"limit": "ten"}, "limit"),
    ({"status": "sleepy"}, "status"), ({"cursor": "garbage!"}, "cursor"), ({"cursor": "bm9wZQ"}, "cursor"),
    ({"expiring_within_days": -1}, "expiring_within_days"), ({"q": "x" * 101}, "q"),
])
def test_bad_list_queries_are_422(api, query, field):
    _, client, headers, _ = api
    response = client.get(API, query_string=query, headers=headers)
    assert response.status_code == 422
    assert field in response.get_json()["fields"]


def test_get_one_key_and_its_usage(api):
    app, client, headers, _ = api
    created = make(client, headers, scopes=["read:data"]).get_json()
    key_id = created["key"]["id"]
    for _ in range(3):
        client.get("/api/v1/whoami", headers=bearer(created["secret"]))
    client.get("/api/v1/whoami", headers=bearer(created["secret"]), environ_base={"REMOTE_ADDR": "::1"})
    flush(app)
    key = client.get(f"{API}/{key_id}", headers=headers).get_json()
    assert key["usage_count"] == 4
    usage = client.get(f"{API}/{key_id}/usage", query_string={"days": 7}, headers=headers).get_json()
    assert usage["key_id"] == key_id and len(usage["days"]) == 7
    assert usage["days"][-1] == {"day": utcnow().date().isoformat(), "requests": 4, "failures": 0}
    assert client.get(f"{API}/{key_id}/usage", query_string={"days": 91}, headers=headers).status_code == 422


def test_the_renewal_list(api):
    app, client, headers, owner = api
    soon = make(client, headers, name="soon", expires_in_days=3).get_json()["key"]["id"]
    make(client, headers, name="later", expires_in_days=40)
    lapsed, _ = new_key(app, owner, name="lapsed", now=utcnow() - timedelta(days=20), days=10)
    listed = client.get(f"{API}/expiring", headers=headers).get_json()["data"]
    assert [key["id"] for key in listed] == [lapsed, soon]
    assert listed[0]["status"] == "expired" and listed[1]["status"] == "expiring"
    wider = client.get(f"{API}/expiring", query_string={"within_days": 45}, headers=headers)
    assert len(wider.get_json()["data"]) == 3


@pytest.mark.parametrize(("warning_days", "renewed_days"), [(14, 30), (20, 40)])
def test_a_renewal_reaches_as_far_through_the_api_as_on_the_dashboard(apps, warning_days, renewed_days):
    """One rule (service.renewal_expiry): the key's original lifetime again, at least max(30, 2 x the warning days).
    The API once gave 2 x the warning days (28 by default), the dashboard 30."""
    app = apps(RENEWAL_WARNING_DAYS=str(warning_days))
    owner = add_user(app)
    _, token = new_key(app, owner, name="manager", scopes=ALL_SCOPES, days=365)
    now = utcnow()
    # Made 10 days ago for 12 days: its original lifetime (12 days) is shorter than the renewal's floor.
    by_api, _ = new_key(app, owner, name="by the api", now=now - timedelta(days=10), days=12)
    by_page, _ = new_key(app, owner, name="by the page", now=now - timedelta(days=10), days=12)
    client = app.test_client()
    assert client.post(f"{API}/{by_api}/renew", headers=bearer(token)).status_code == 200
    page = signed_in(app, "ada@example.com")
    assert post_action(page, f"/keys/{by_page}/renew").status_code == 302
    expiries = [datetime.fromisoformat(key["expires_at"])
                for key in client.get(API, query_string={"status": "all"}, headers=bearer(token)).get_json()["data"]
                if key["id"] in (by_api, by_page)]
    assert len(expiries) == 2 and abs(expiries[0] - expiries[1]) < timedelta(seconds=30)
    assert abs(expiries[0] - (now + timedelta(days=renewed_days))) < timedelta(seconds=30)


# -- changing ------------------------------------------------------------------------------------------------------

def test_patch_changes_only_what_it_names_and_put_replaces_everything(api):
    app, client, headers, _ = api
    key_id = make(client, headers, name="a", description="keep", scopes=["read:data"], rate_limit=5
                  ).get_json()["key"]["id"]
    patched = client.patch(f"{API}/{key_id}", json={"name": "b", "allowed_ips": ["::1"]}, headers=headers)
    assert patched.status_code == 200
    body = patched.get_json()
    assert (body["name"], body["description"], body["rate_limit"], body["allowed_ips"]) == ("b", "keep", 5, ["::1/128"])

    put = client.put(f"{API}/{key_id}", json={"name": "c"}, headers=headers).get_json()
    assert (put["name"], put["description"], put["scopes"], put["rate_limit"], put["allowed_ips"]) == \
        ("c", "", [], None, [])
    assert client.put(f"{API}/{key_id}", json={"description": "no name"}, headers=headers).status_code == 422

    disabled = client.patch(f"{API}/{key_id}", json={"disabled": True}, headers=headers).get_json()
    assert disabled["disabled"] and disabled["status"] == "disabled"
    assert client.patch(f"{API}/{key_id}", json={"disabled": "yes"}, headers=headers).status_code == 422
    assert client.patch(f"{API}/{key_id}", json={"remaining_uses": 3}, headers=headers).status_code == 400
    assert [row["event"] for row in audit_rows(app, "key.disabled")] == ["key.disabled"]


def test_rotate_gives_a_new_secret_and_keeps_the_old_for_the_grace(api):
    _, client, headers, _ = api
    created = make(client, headers).get_json()
    key_id, old = created["key"]["id"], created["secret"]
    rotated = client.post(f"{API}/{key_id}/rotate", json={"grace": "1h"}, headers=headers)
    assert rotated.status_code == 200
    assert rotated.headers["Cache-Control"] == "no-store"
    new = rotated.get_json()["secret"]
    assert new != old and rotated.get_json()["key"]["previous_secret_expires_at"] is not None
    assert client.get("/api/v1/whoami", headers=bearer(old)).status_code == 200
    assert client.get("/api/v1/whoami", headers=bearer(new)).status_code == 200
    again = client.post(f"{API}/{key_id}/rotate", headers=headers).get_json()  # no body: no grace
    assert client.get("/api/v1/whoami", headers=bearer(new)).status_code == 401
    assert again["key"]["previous_secret_expires_at"] is None
    bad = client.post(f"{API}/{key_id}/rotate", json={"grace": "forever"}, headers=headers)
    assert bad.status_code == 422 and "grace" in bad.get_json()["fields"]


def test_revoke_by_path_and_by_body(api):
    app, client, headers, _ = api
    first = make(client, headers).get_json()
    second = make(client, headers).get_json()
    response = client.delete(f"{API}/{first['key']['id']}", json={"reason": "leaked"}, headers=headers)
    assert response.status_code == 200
    assert (response.get_json()["status"], response.get_json()["revoked_reason"]) == ("revoked", "leaked")
    assert client.get("/api/v1/whoami", headers=bearer(first["secret"])).status_code == 401

    response = client.delete(API, json={"id": second["key"]["id"]}, headers=headers)
    assert response.status_code == 200 and response.get_json()["status"] == "revoked"
    assert client.delete(API, json={}, headers=headers).status_code == 422
    assert client.delete(API, json={"id": "two"}, headers=headers).status_code == 422
    assert client.delete(API, headers=headers).status_code == 400


@pytest.mark.parametrize(("method", "suffix", "body"), [
    ("delete", "", None), ("post", "/renew", None), ("post", "/rotate", None), ("patch", "", {"name": "zombie"}),
    ("patch", "", {"disabled": False}),
])
def test_a_revoked_key_stays_revoked(api, method, suffix, body):
    app, client, headers, _ = api
    created = make(client, headers).get_json()
    key_id = created["key"]["id"]
    client.delete(f"{API}/{key_id}", headers=headers)
    before = rows(app, "SELECT * FROM api_keys WHERE id = :id", id=key_id)
    response = getattr(client, method)(f"{API}/{key_id}{suffix}", json=body, headers=headers)
    assert response.status_code == 409
    assert response.get_json()["error"] == "conflict"
    assert rows(app, "SELECT * FROM api_keys WHERE id = :id", id=key_id) == before
    assert client.get("/api/v1/whoami", headers=bearer(created["secret"])).status_code == 401


# -- whose keys --------------------------------------------------------------------------------------------------

OPERATIONS = [("get", ""), ("get", "/usage"), ("patch", ""), ("put", ""), ("delete", ""), ("post", "/rotate"),
              ("post", "/renew")]


@pytest.mark.parametrize(("method", "suffix"), OPERATIONS)
def test_another_users_key_is_404(api, method, suffix):
    app, client, headers, _ = api
    other = add_user(app, "grace@example.com")
    theirs, token = new_key(app, other, name="theirs")
    before = rows(app, "SELECT * FROM api_keys WHERE id = :id", id=theirs)
    response = getattr(client, method)(f"{API}/{theirs}{suffix}", json={"name": "mine"}, headers=headers)
    assert response.status_code == 404
    assert response.get_json()["error"] == "not_found"
    assert rows(app, "SELECT * FROM api_keys WHERE id = :id", id=theirs) == before
    assert client.delete(API, json={"id": theirs}, headers=headers).status_code == 404
    assert theirs not in key_ids(client.get(API, query_string={"status": "all"}, headers=headers))
    assert client.get("/api/v1/whoami", headers=bearer(token)).status_code == 200


def test_the_static_service_key_has_no_keys_to_manage(apps):
    service_key = "s" * 40
    app = apps(SERVICE_API_KEY=service_key, SERVICE_API_KEY_SCOPES="keys:read keys:write")
    client = app.test_client()
    response = client.get(API, headers=bearer(service_key))
    assert response.status_code == 403
    assert response.get_json()["error"] == "no_owner"
    assert make(client, bearer(service_key)).status_code == 403
    assert count(app, "api_keys") == 0


def test_errors_are_json_for_unknown_routes_and_methods(api):
    _, client, headers, _ = api
    missing = client.get(f"{API}/999999", headers=headers)
    assert missing.status_code == 404 and missing.get_json()["error"] == "not_found"
    nowhere = client.get("/api/v1/no-such-thing", headers=headers)
    assert nowhere.status_code == 404 and nowhere.headers["Content-Type"] == "application/json"
    wrong = client.put(API, json={}, headers=headers)
    assert wrong.status_code == 405 and wrong.get_json()["error"] == "method_not_allowed"


# -- the scope catalogue -------------------------------------------------------------------------------------------

def test_scopes_list_the_routes_each_unlocks_from_the_decorators(api):
    _, client, headers, _ = api
    body = client.get("/api/v1/scopes", headers=headers).get_json()
    routes = {scope["name"]: scope["routes"] for scope in body["scopes"]}
    assert set(routes) == set(ALL_SCOPES)
    assert "POST /api/v1/api-keys" in routes["keys:write"]
    assert "GET /api/v1/api-keys/{key_id}/usage" in routes["keys:read"]
    assert "POST /api/v1/api-keys" not in routes["keys:read"]
    assert "GET /api/v1/whoami" in body["any_key_routes"]
    descriptions = {scope["name"]: scope["description"] for scope in body["scopes"]}
    assert descriptions["read:data"] == "Read data"


def test_scopes_follow_a_new_decorated_route(app):
    """A route added anywhere with @require_api_key shows up under its scope with no list to keep."""
    from app.api.decorator import require_api_key

    @app.get("/reports")
    @require_api_key("read:data")
    def reports():
        return {}

    with app.app_context():
        owner = add_user(app)
    _, token = new_key(app, owner, scopes=("read:data",))
    body = app.test_client().get("/api/v1/scopes", headers=bearer(token)).get_json()
    assert "GET /reports" in {scope["name"]: scope["routes"] for scope in body["scopes"]}["read:data"]
