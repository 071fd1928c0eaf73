"""Through the JSON API a key never makes, changes or rotates a key less restricted than itself: rate limit, IP
allowlist and remaining uses are bounded by the caller's own, as scopes and expiry are."""

from __future__ import annotations

import pytest

from app.api.openapi import build_document
from tests.functional.keyhelpers import add_user, bearer, count, flush, new_key, rows

API = "/api/v1/api-keys"
WHOAMI = "/api/v1/whoami"
SCOPES = ("keys:read", "keys:write", "read:data")
LIMIT = 30  # the limited caller's requests per minute: far above what one test sends
LOCAL = ["127.0.0.0/8"]  # the test client asks from 127.0.0.1
USES = 20
# A caller bound by each restriction, and values looser than it: (caller's restriction, field, looser, message).
LOOSER = [
    ({"rate_limit": LIMIT}, "rate_limit", None, f"higher rate limit than its own ({LIMIT} per minute)"),
    ({"rate_limit": LIMIT}, "rate_limit", LIMIT + 1, f"higher rate limit than its own ({LIMIT} per minute)"),
    ({"rate_limit": LIMIT}, "rate_limit", 100_000, f"higher rate limit than its own ({LIMIT} per minute)"),
    ({"allowed_ips": LOCAL}, "allowed_ips", [], "wider IP allowlist than its own (127.0.0.0/8)"),
    ({"allowed_ips": LOCAL}, "allowed_ips", ["127.0.0.0/7"], "wider IP allowlist than its own (127.0.0.0/8)"),
    ({"allowed_ips": LOCAL}, "allowed_ips", ["127.0.0.1", "10.0.0.1"], "wider IP allowlist"),
    ({"allowed_ips": LOCAL}, "allowed_ips", ["::1"], "wider IP allowlist"),  # IPv6 is outside any IPv4 range
]
LOOSER_IDS = ["rate null", "rate higher", "rate far higher", "ips anywhere", "ips wider", "ips one outside",
              "ips v6"]


def caller(app, **restrictions) -> tuple[int, int, dict[str, str]]:
    """(owner id, key id, headers) of a key that may manage keys, restricted as given."""
    owner = add_user(app)
    key_id, token = new_key(app, owner, name="caller", scopes=SCOPES, days=60, **restrictions)
    return owner, key_id, bearer(token)


def key_row(app, key_id: int) -> dict:
    return rows(app, "SELECT * FROM api_keys WHERE id = :id", id=key_id)[0]


def audit_count(app) -> int:
    flush(app)  # refusals of the key decorator are audited through the usage buffer
    return count(app, "audit_events")


def assert_refused(response, message: str) -> None:
    assert response.status_code == 403, response.get_json()
    body = response.get_json()
    assert body["error"] == "insufficient_scope"
    assert message in body["message"]
    assert "secret" not in body


# -- PATCH: a key cannot loosen itself or a sibling, and may always tighten -----------------------------------------

@pytest.mark.parametrize(("restriction", "field", "value", "message"), LOOSER, ids=LOOSER_IDS)
@pytest.mark.parametrize("target", ["itself", "a sibling"])
def test_patch_looser_than_the_caller_is_403_and_changes_nothing(app, restriction, field, value, message, target):
    owner, key_id, headers = caller(app, **restriction)
    sibling, _ = new_key(app, owner, name="sibling", **restriction)
    target_id = key_id if target == "itself" else sibling
    before, audited = key_row(app, target_id), audit_count(app)
    response = app.test_client().patch(f"{API}/{target_id}", json={field: value}, headers=headers)
    assert_refused(response, message)
    assert response.get_json()["message"].startswith("A key cannot give a key ")
    assert key_row(app, target_id) == before
    assert audit_count(app) == audited


@pytest.mark.parametrize(("field", "value", "stored"), [
    ("rate_limit", LIMIT, LIMIT),  # the same is not looser
    ("rate_limit", 5, 5),
    ("allowed_ips", ["127.0.0.0/8"], "127.0.0.0/8"),
    ("allowed_ips", ["127.0.0.1/32"], "127.0.0.1/32"),
    ("allowed_ips", ["127.0.0.1", "127.0.0.2"], "127.0.0.1/32\n127.0.0.2/32"),
    ("allowed_ips", ["::ffff:127.0.0.1"], "127.0.0.1/32"),  # a mapped address is the IPv4 address it means
])
def test_a_key_may_tighten_itself(app, field, value, stored):
    _, key_id, headers = caller(app, rate_limit=LIMIT, allowed_ips=LOCAL)
    client = app.test_client()
    response = client.patch(f"{API}/{key_id}", json={field: value}, headers=headers)
    assert response.status_code == 200, response.get_json()
    assert key_row(app, key_id)[field] == stored
    assert client.get(WHOAMI, headers=headers).status_code == 200  # still usable from 127.0.0.1


def test_the_refusal_names_every_looser_field(app):
    _, key_id, headers = caller(app, rate_limit=LIMIT, allowed_ips=LOCAL)
    response = app.test_client().patch(f"{API}/{key_id}", json={"rate_limit": None, "allowed_ips": []},
                                       headers=headers)
    assert_refused(response, f"rate limit than its own ({LIMIT} per minute) or a wider IP allowlist")


def test_a_limited_key_may_still_change_what_it_does_not_bound(app):
    """Renaming or disabling a sibling hands the caller nothing: only the restrictions a request sets are bounded."""
    owner, _, headers = caller(app, rate_limit=LIMIT, allowed_ips=LOCAL)
    unlimited, _ = new_key(app, owner, name="unlimited", scopes=("read:data",))
    response = app.test_client().patch(f"{API}/{unlimited}", json={"name": "renamed", "disabled": True},
                                       headers=headers)
    assert response.status_code == 200
    assert (response.get_json()["name"], response.get_json()["rate_limit"]) == ("renamed", None)


# -- PUT: a left-out restriction takes the caller's own, never "none" -----------------------------------------------

@pytest.mark.parametrize("target", ["itself", "a sibling"])
def test_put_leaving_restrictions_out_gives_the_callers_own(app, target):
    owner, key_id, headers = caller(app, rate_limit=LIMIT, allowed_ips=LOCAL)
    sibling, _ = new_key(app, owner, name="sibling", rate_limit=5, allowed_ips=["127.0.0.1"])
    target_id = key_id if target == "itself" else sibling
    response = app.test_client().put(f"{API}/{target_id}", json={"name": "replaced", "scopes": ["read:data"]},
                                     headers=headers)
    assert response.status_code == 200, response.get_json()
    key = response.get_json()
    assert (key["name"], key["rate_limit"], key["allowed_ips"]) == ("replaced", LIMIT, LOCAL)


def test_put_from_an_unrestricted_key_still_clears_left_out_restrictions(app):
    owner, _, headers = caller(app)
    sibling, _ = new_key(app, owner, name="sibling", rate_limit=5, allowed_ips=["127.0.0.1"])
    key = app.test_client().put(f"{API}/{sibling}", json={"name": "replaced"}, headers=headers).get_json()
    assert (key["rate_limit"], key["allowed_ips"]) == (None, [])


@pytest.mark.parametrize(("restriction", "field", "value", "message"), LOOSER[::3], ids=LOOSER_IDS[::3])
def test_put_with_a_looser_restriction_is_403(app, restriction, field, value, message):
    _, key_id, headers = caller(app, **restriction)
    before = key_row(app, key_id)
    response = app.test_client().put(f"{API}/{key_id}", json={"name": "replaced", field: value}, headers=headers)
    assert_refused(response, message)
    assert key_row(app, key_id) == before


# -- create: defaults inherit the caller's restrictions, explicit looser values are refused ---------------------------

@pytest.mark.parametrize(("restriction", "field", "value", "message"), [
    *LOOSER,
    ({"remaining_uses": USES}, "remaining_uses", None, f"more remaining uses than it has left itself ({USES - 1} "),
    # The create itself takes one of the caller's uses: a child with as many as the caller had would have more.
    ({"remaining_uses": USES}, "remaining_uses", USES, f"({USES - 1} after this request)"),
    ({"remaining_uses": USES}, "remaining_uses", 10**6, "more remaining uses"),
], ids=[*LOOSER_IDS, "uses unlimited", "uses as many as before", "uses more"])
def test_create_with_a_looser_restriction_is_403_and_writes_nothing(app, restriction, field, value, message):
    _, _, headers = caller(app, **restriction)
    keys, audited = count(app, "api_keys"), audit_count(app)
    response = app.test_client().post(API, json={"name": "child", field: value}, headers=headers)
    assert_refused(response, message)
    assert count(app, "api_keys") == keys
    assert audit_count(app) == audited


def test_create_without_restrictions_inherits_the_callers(app):
    _, key_id, headers = caller(app, rate_limit=LIMIT, allowed_ips=LOCAL, remaining_uses=USES)
    client = app.test_client()
    response = client.post(API, json={"name": "child", "scopes": ["read:data"]}, headers=headers)
    assert response.status_code == 201, response.get_json()
    child = response.get_json()["key"]
    assert (child["rate_limit"], child["allowed_ips"], child["remaining_uses"]) == (LIMIT, LOCAL, USES - 1)
    assert key_row(app, key_id)["remaining_uses"] == USES - 1  # no more than the caller now has itself
    secret = response.get_json()["secret"]
    assert client.get(WHOAMI, headers=bearer(secret)).status_code == 200
    assert client.get(WHOAMI, headers=bearer(secret), environ_base={"REMOTE_ADDR": "10.0.0.1"}).status_code == 403


def test_create_with_tighter_restrictions_keeps_them(app):
    _, _, headers = caller(app, rate_limit=LIMIT, allowed_ips=["127.0.0.0/8", "2001:db8::/32"], remaining_uses=USES)
    response = app.test_client().post(API, json={
        "name": "child", "rate_limit": 5, "allowed_ips": ["127.0.0.1", "2001:db8:1::/48"], "remaining_uses": 3,
    }, headers=headers)
    assert response.status_code == 201, response.get_json()
    child = response.get_json()["key"]
    assert (child["rate_limit"], child["allowed_ips"], child["remaining_uses"]) == \
        (5, ["127.0.0.1/32", "2001:db8:1::/48"], 3)


def test_a_key_on_its_last_use_can_make_no_key(app):
    _, key_id, headers = caller(app, remaining_uses=1)
    response = app.test_client().post(API, json={"name": "child"}, headers=headers)
    assert_refused(response, "(0 after this request)")
    assert count(app, "api_keys") == 1
    assert key_row(app, key_id)["remaining_uses"] == 0


def test_remaining_uses_stay_unchangeable_by_patch(app):
    _, key_id, headers = caller(app, remaining_uses=USES)
    response = app.test_client().patch(f"{API}/{key_id}", json={"remaining_uses": 10**6}, headers=headers)
    assert response.status_code == 400
    assert key_row(app, key_id)["remaining_uses"] == USES - 1


# -- rotate: never a new secret for a key looser than the caller -----------------------------------------------------

@pytest.mark.parametrize(("restriction", "sibling_restriction", "message"), [
    ({"rate_limit": LIMIT}, {}, f"rate limit than its own ({LIMIT} per minute)"),
    ({"rate_limit": LIMIT}, {"rate_limit": LIMIT + 1}, f"rate limit than its own ({LIMIT} per minute)"),
    ({"allowed_ips": LOCAL}, {}, "wider IP allowlist than its own (127.0.0.0/8)"),
    ({"allowed_ips": LOCAL}, {"allowed_ips": ["0.0.0.0/0"]}, "wider IP allowlist"),
    ({"remaining_uses": USES}, {}, f"more remaining uses than it has left itself ({USES - 1} after this request)"),
    ({"remaining_uses": USES}, {"remaining_uses": USES}, "more remaining uses"),
], ids=["rate none", "rate higher", "ips none", "ips wider", "uses none", "uses more"])
def test_rotating_a_looser_key_is_403_and_keeps_its_secret(app, restriction, sibling_restriction, message):
    owner, _, headers = caller(app, **restriction)
    sibling, sibling_token = new_key(app, owner, name="sibling", **sibling_restriction)
    before, audited = key_row(app, sibling), audit_count(app)
    client = app.test_client()
    response = client.post(f"{API}/{sibling}/rotate", json={"grace": "none"}, headers=headers)
    assert_refused(response, message)
    assert response.get_json()["message"].startswith("A key cannot rotate a key with ")
    assert key_row(app, sibling) == before
    assert audit_count(app) == audited
    assert client.get(WHOAMI, headers=bearer(sibling_token)).status_code == 200


def test_rotating_itself_or_a_key_at_least_as_restricted_works(app):
    owner, key_id, headers = caller(app, rate_limit=LIMIT, allowed_ips=LOCAL, remaining_uses=USES)
    tighter, _ = new_key(app, owner, name="tighter", rate_limit=LIMIT, allowed_ips=["127.0.0.1"], remaining_uses=2)
    client = app.test_client()
    for target in (tighter, key_id):
        before = key_row(app, target)["secret_hash"]
        response = client.post(f"{API}/{target}/rotate", headers=headers)
        assert response.status_code == 200, response.get_json()
        assert key_row(app, target)["secret_hash"] != before


# -- who is not bound --------------------------------------------------------------------------------------------------

def test_an_unrestricted_key_may_set_any_restriction(app):
    owner, key_id, headers = caller(app)
    sibling, _ = new_key(app, owner, name="sibling", rate_limit=5, allowed_ips=["127.0.0.1"], remaining_uses=3)
    client = app.test_client()
    created = client.post(API, json={"name": "child", "remaining_uses": 10**6, "rate_limit": 10**6,
                                     "allowed_ips": ["0.0.0.0/0"]}, headers=headers)
    assert created.status_code == 201
    child = created.get_json()["key"]
    assert (child["rate_limit"], child["allowed_ips"], child["remaining_uses"]) == (10**6, ["0.0.0.0/0"], 10**6)
    defaults = client.post(API, json={"name": "plain"}, headers=headers).get_json()["key"]
    assert (defaults["rate_limit"], defaults["allowed_ips"], defaults["remaining_uses"]) == (None, [], None)
    loosened = client.patch(f"{API}/{sibling}", json={"rate_limit": None, "allowed_ips": []}, headers=headers)
    assert (loosened.get_json()["rate_limit"], loosened.get_json()["allowed_ips"]) == (None, [])
    assert client.post(f"{API}/{sibling}/rotate", headers=headers).status_code == 200
    assert client.patch(f"{API}/{key_id}", json={"rate_limit": 5}, headers=headers).get_json()["rate_limit"] == 5


@pytest.mark.parametrize(("method", "suffix"), [("post", ""), ("patch", "/1"), ("put", "/1"), ("post", "/1/rotate")])
def test_the_service_key_still_manages_no_keys(apps, method, suffix):
    service_key = "s" * 40
    app = apps(SERVICE_API_KEY=service_key, SERVICE_API_KEY_SCOPES="keys:read keys:write")
    response = getattr(app.test_client(), method)(f"{API}{suffix}", json={"name": "x", "rate_limit": None},
                                                  headers=bearer(service_key))
    assert response.status_code == 403
    assert response.get_json()["error"] == "no_owner"


def test_the_document_states_the_bounds_on_every_operation_that_sets_or_hands_over_a_key():
    operations = {operation["operationId"]: operation for item in build_document()["paths"].values()
                  for operation in item.values() if isinstance(operation, dict) and "operationId" in operation}
    for operation_id in ("createKey", "updateKey", "replaceKey", "rotateKey"):
        description = operations[operation_id]["description"]
        assert all(word in description for word in ("`rate_limit`", "`allowed_ips`", "403 `insufficient_scope`")), \
            operation_id
    assert "left out take the calling key's own" in operations["replaceKey"]["description"]
