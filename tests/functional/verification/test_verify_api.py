"""POST /api/v1/keys/verify: the team's services check keys with a verifier credential, under the same rules, counts,
limits and audit as Keyfob's own routes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.accounts import service as accounts
from app.accounts.models import User
from app.audit.service import Actor
from app.extensions import db
from app.keys import service, tokens, verifiers
from app.keys.models import Verifier
from tests.functional.keyhelpers import (
    act_on_key,
    add_user,
    all_stored_values,
    audit_rows,
    bearer,
    flush,
    load_key,
    new_key,
    rows,
)

VERIFY = "/api/v1/keys/verify"
WHOAMI = "/api/v1/whoami"


@pytest.fixture
def setup(apps):
    """(app, client, verifier credential, verifier id, owner id) on an app whose usage is flushed by the tests."""
    app = apps()
    owner = add_user(app)
    with app.app_context():
        verifier, credential = verifiers.create("billing-service", actor=Actor.cli())
        verifier_id = verifier.id
    return app, app.test_client(), credential, verifier_id, owner


def check(client, credential: str, **body):
    response = client.post(VERIFY, json=body, headers=bearer(credential))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "application/json"
    return response.get_json()


# -- who may ask ------------------------------------------------------------------------------------------------------

def test_without_a_valid_verifier_credential_the_answer_is_401_and_says_nothing_of_the_key(setup):
    app, client, credential, verifier_id, owner = setup
    _, token = new_key(app, owner, scopes=("read:data",))
    with app.app_context():
        revoked, revoked_credential = verifiers.create("old-service", actor=Actor.cli())
        verifiers.revoke(revoked, actor=Actor.cli())
    mistyped = credential[:-1] + ("x" if credential[-1] != "x" else "y")
    for headers in ({}, bearer(token), bearer(revoked_credential), bearer(mistyped), bearer(tokens.generate("kfv")),
                    {"Authorization": f"Basic {credential}"}):
        response = client.post(VERIFY, json={"key": token}, headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="keyfob-verifiers"'
        assert response.get_json()["error"] == "invalid_verifier"
        assert "valid" not in response.get_json() and "kf_" not in response.get_data(as_text=True)
    flush(app)
    assert load_key(app, _key_id(app, token)).usage_count == 0  # nothing was checked, nothing counted


def _key_id(app, token: str) -> int:
    return rows(app, "SELECT id FROM api_keys WHERE display_start = :start",
                start=tokens.parse(token, "kf").display_start)[0]["id"]


def test_a_verifier_credential_is_never_an_api_key_and_a_key_never_a_credential(setup):
    app, client, credential, _, owner = setup
    _, token = new_key(app, owner)
    assert credential.startswith("kfv_") and tokens.parse(credential, "kfv") is not None
    assert client.get(WHOAMI, headers=bearer(credential)).status_code == 401
    assert client.post(VERIFY, json={"key": credential}, headers=bearer(credential)).get_json() == {
        "valid": False, "code": "NOT_FOUND"}
    assert client.post(VERIFY, json={"key": token}, headers=bearer(token)).status_code == 401


def test_a_credential_is_stored_only_as_a_digest_and_rotation_stops_the_old_one(setup):
    app, client, credential, verifier_id, owner = setup
    _, token = new_key(app, owner)
    assert credential not in all_stored_values(app, tables=("verifiers", "audit_events"))
    with app.app_context():
        verifier = db.session.get(Verifier, verifier_id)
        assert verifier.secret_hash == tokens.digest(b"test-pepper-that-is-long-enough-for-production", credential)
        rotated = verifiers.rotate(verifier, actor=Actor.cli())
    assert client.post(VERIFY, json={"key": token}, headers=bearer(credential)).status_code == 401
    assert check(client, rotated, key=token)["valid"] is True
    assert [row["event"] for row in rows(app, "SELECT event FROM audit_events WHERE event LIKE 'verifier.%' "
                                              "ORDER BY id")] == ["verifier.created", "verifier.rotated"]


# -- the outcomes -----------------------------------------------------------------------------------------------------

def test_a_valid_key_gives_what_the_service_needs_and_nothing_secret(setup):
    app, client, credential, _, owner = setup
    key_id, token = new_key(app, owner, name="billing sync", scopes=("read:data", "write:data"), rate_limit=10,
                            remaining_uses=5)
    result = check(client, credential, key=token, scopes=["read:data"], client_ip="203.0.113.7", method="GET",
                   path="/invoices")
    key = load_key(app, key_id)
    assert result == {
        "valid": True, "code": "VALID",
        "key": {"id": key_id, "name": "billing sync", "start": key.display_start,
                "owner": {"id": owner, "email": "ada@example.com"}, "scopes": ["read:data", "write:data"],
                "expires_at": key.expires_at.isoformat().replace("+00:00", "Z")},
        "rate_limit": {"limit": 10, "window": 60, "remaining": 9, "reset": result["rate_limit"]["reset"]},
        "remaining_uses": 4,
    }
    assert 0 < result["rate_limit"]["reset"] <= 60


@pytest.mark.parametrize("presented", ["kf_" + "A" * 33, "nonsense", "", tokens.generate("kf")])
def test_a_key_that_is_not_found_gives_no_other_field(setup, presented):
    _, client, credential, _, _ = setup
    assert check(client, credential, key=presented) == {"valid": False, "code": "NOT_FOUND"}


def test_every_refusal_has_its_code_and_is_audited_with_the_verifier(setup):
    app, client, credential, verifier_id, owner = setup
    now = service.utcnow()
    expired, expired_token = new_key(app, owner, now=now - timedelta(days=40), days=10)
    revoked, revoked_token = new_key(app, owner)
    act_on_key(app, revoked, service.revoke)
    disabled, disabled_token = new_key(app, owner)
    act_on_key(app, disabled, service.disable)
    suspended, suspended_token = new_key(app, owner)
    with app.app_context():
        db.session.execute(db.text("UPDATE api_keys SET suspended_until = :until WHERE id = :id"),
                           {"until": now + timedelta(hours=1), "id": suspended})
        db.session.commit()
    _, narrow = new_key(app, owner, scopes=("read:data",), allowed_ips=["10.0.0.0/8"])
    _, once = new_key(app, owner, remaining_uses=1)
    _, limited = new_key(app, owner, rate_limit=1)
    other = add_user(app, "grace@example.com")
    _, orphaned = new_key(app, other)
    with app.app_context():
        accounts.set_active(db.session.get(User, other), False, actor=Actor.cli())

    def code(token, **body):
        return check(client, credential, key=token, **body)["code"]

    assert code(expired_token) == "EXPIRED"
    assert code(revoked_token) == "REVOKED"
    assert code(disabled_token) == "DISABLED"
    assert code(orphaned) == "DISABLED"
    assert code(suspended_token) == "SUSPENDED"
    assert code(narrow, scopes=["write:data"], client_ip="10.0.0.1") == "INSUFFICIENT_SCOPE"
    # The client's address is checked, never the service's own (127.0.0.1 here).
    assert code(narrow, client_ip="192.0.2.1") == "IP_NOT_ALLOWED"
    assert code(narrow) == "IP_NOT_ALLOWED"  # no address given: an allowlist cannot be satisfied
    assert code(narrow, client_ip="10.20.30.40") == "VALID"
    assert code(once) == "VALID" and code(once) == "USAGE_EXCEEDED"
    assert code(limited) == "VALID" and code(limited) == "RATE_LIMITED"
    flush(app)
    refused = audit_rows(app, "key.verify_failed")
    assert len(refused) == 10 and {row["verifier_id"] for row in refused} == {verifier_id}
    assert sorted(row["detail"].split(":")[0] for row in refused) == sorted([
        "expired", "revoked", "disabled", "disabled", "suspended", "insufficient_scope", "ip_not_allowed",
        "ip_not_allowed", "usage_exceeded", "rate_limited"])


# -- one set of counts with the decorator -----------------------------------------------------------------------------

def test_the_api_and_the_decorator_share_one_quota_and_one_rate_limit(setup):
    app, client, credential, _, owner = setup
    _, quota = new_key(app, owner, remaining_uses=2)
    assert check(client, credential, key=quota)["remaining_uses"] == 1
    assert client.get(WHOAMI, headers=bearer(quota)).status_code == 200
    assert check(client, credential, key=quota)["code"] == "USAGE_EXCEEDED"
    assert client.get(WHOAMI, headers=bearer(quota)).status_code == 403

    _, limited = new_key(app, owner, rate_limit=2)
    assert client.get(WHOAMI, headers=bearer(limited)).status_code == 200
    assert check(client, credential, key=limited)["rate_limit"]["remaining"] == 0
    assert client.get(WHOAMI, headers=bearer(limited)).status_code == 429
    assert check(client, credential, key=limited)["code"] == "RATE_LIMITED"


def test_uses_are_counted_for_the_key_the_client_and_the_verifier(setup):
    app, client, credential, verifier_id, owner = setup
    key_id, token = new_key(app, owner)
    for _ in range(3):
        check(client, credential, key=token, client_ip="203.0.113.9")
    check(client, credential, key=token, scopes=["write:data"], client_ip="203.0.113.9")
    client.get(WHOAMI, headers=bearer(token))  # Keyfob's own route counts for the key, not for the verifier
    flush(app)
    key = load_key(app, key_id)
    assert key.usage_count == 4 and key.last_used_ip == "127.0.0.1"  # the decorator's request came last
    usage = rows(app, "SELECT * FROM key_verifier_usage")
    assert [(row["key_id"], row["verifier_id"], row["requests"], row["failures"]) for row in usage] == [
        (key_id, verifier_id, 3, 1)]
    verifier = rows(app, "SELECT usage_count, last_used_at FROM verifiers WHERE id = :id", id=verifier_id)[0]
    assert verifier["usage_count"] == 4 and verifier["last_used_at"] is not None
    check(client, credential, key=token, client_ip="203.0.113.9")
    flush(app)
    assert load_key(app, key_id).last_used_ip == "203.0.113.9"  # the client's address, never the service's


def test_checks_are_counted_in_prometheus_by_verifier(setup):
    app, client, credential, _, owner = setup
    _, token = new_key(app, owner)
    from app.metrics import VERIFICATIONS

    before = VERIFICATIONS.labels("valid", "billing-service")._value.get()
    check(client, credential, key=token)
    check(client, credential, key=token)
    assert VERIFICATIONS.labels("valid", "billing-service")._value.get() == before + 2


# -- bad requests -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "status", "field"), [
    ({}, 422, "key"), ({"key": 7}, 422, "key"), ({"key": "x", "scopes": "read:data"}, 422, "scopes"),
    ({"key": "x", "scopes": ["no:such"]}, 422, "scopes"),
    ({"key": "x", "client_ip": "not an address"}, 422, "client_ip"),
    ({"key": "x", "path": "/" * 2001}, 422, "path"), ({"key": "x", "extra": 1}, 400, "extra")])
def test_bad_bodies_get_the_apis_4xx_shapes_and_count_nothing(setup, body, status, field):
    app, client, credential, _, _ = setup
    response = client.post(VERIFY, json=body, headers=bearer(credential))
    assert response.status_code == status
    assert field in response.get_json()["fields"]
    flush(app)
    assert rows(app, "SELECT usage_count FROM verifiers")[0]["usage_count"] == 0


# -- the admin's side -------------------------------------------------------------------------------------------------

def test_flask_verifiers_create_list_rotate_revoke(apps):
    app = apps()
    runner = app.test_cli_runner()
    created = runner.invoke(args=["verifiers", "create", "Billing-Service", "--description", "invoices"])
    assert created.exit_code == 0, created.output
    credential = created.stdout.strip().splitlines()[-1]
    assert tokens.parse(credential, "kfv") is not None
    assert "only time the credential is shown" in created.stderr
    assert runner.invoke(args=["verifiers", "create", "billing-service"]).exit_code == 1  # names are unique
    listing = runner.invoke(args=["verifiers", "list"]).output
    assert "billing-service\tkfv_" in listing and credential not in listing
    rotated = runner.invoke(args=["verifiers", "rotate", "billing-service"]).stdout.strip().splitlines()[-1]
    assert rotated != credential and tokens.parse(rotated, "kfv") is not None
    assert runner.invoke(args=["verifiers", "revoke", "billing-service"]).exit_code == 0
    assert "revoked" in runner.invoke(args=["verifiers", "list"]).output
    assert runner.invoke(args=["verifiers", "rotate", "billing-service"]).exit_code == 1
    assert runner.invoke(args=["verifiers", "revoke", "nobody"]).exit_code == 1


# -- what the owner sees ----------------------------------------------------------------------------------------------

def test_the_key_page_shows_which_services_checked_it_and_for_what(setup):
    app, client, credential, _, owner = setup
    key_id, token = new_key(app, owner, scopes=("read:data",))
    with app.app_context():
        _, other = verifiers.create("reports-cron", actor=Actor.cli())
    check(client, credential, key=token, scopes=["read:data"], method="get", path="/invoices/7")
    check(client, credential, key=token, scopes=["write:data"], method="POST", path="/invoices")
    check(client, other, key=token)  # no method and path: counted, not listed
    flush(app)
    from tests.support import AuthActions

    page_client = app.test_client()
    AuthActions(page_client).login()
    page = page_client.get(f"/keys/{key_id}").get_data(as_text=True)
    services = page.split('id="services-heading"')[1].split("</section>")[0]
    assert "<th scope=\"row\">billing-service</th><td class=\"number\">1</td>" in services
    assert "<td class=\"number\">1</td>" in services.split("billing-service")[1]  # one refused
    assert "reports-cron" in services
    assert "<code>GET /invoices/7</code> via billing-service" in services
    assert "<code>POST /invoices</code> via billing-service" in services and "insufficient scope" in services
    assert services.index("POST /invoices") < services.index("GET /invoices/7")  # newest first
    assert token not in page and credential not in page


def test_only_the_latest_requests_are_kept(setup):
    from app.keys.models import RECENT_REQUESTS_KEPT

    app, client, credential, _, owner = setup
    key_id, token = new_key(app, owner)
    for batch in range(2):
        for number in range(RECENT_REQUESTS_KEPT):
            check(client, credential, key=token, method="GET", path=f"/items/{batch}-{number}")
        flush(app)
    kept = rows(app, "SELECT path FROM key_recent_requests WHERE key_id = :id ORDER BY id", id=key_id)
    assert [row["path"] for row in kept] == [f"/items/1-{number}" for number in range(RECENT_REQUESTS_KEPT)]
