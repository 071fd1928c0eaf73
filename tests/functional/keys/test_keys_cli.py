"""`flask keys ...`: create, list, revoke and rotate keys from a shell."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest

from app.database import utcnow
from app.keys import tokens
from tests.functional.keyhelpers import (
    WHOAMI,
    add_user,
    audit_rows,
    bearer,
    count,
    load_key,
    new_key,
)

KEY = re.compile(tokens.scanner_regex("kf"))


def last_line(result) -> str:
    return result.stdout.rstrip("\n").splitlines()[-1]


def test_create_prints_the_key_alone_on_the_last_line_and_it_works(app, runner, user):
    before = utcnow()
    result = runner.invoke(args=["keys", "create", "Ada@Example.com", "--name", "N", "--scope", "read:data",
                                 "--expires-in-days", "30", "--rate-limit", "10", "--allowed-ip", "10.0.0.0/8"])
    assert result.exit_code == 0, result.output
    token = last_line(result)
    assert KEY.fullmatch(token)
    assert result.stdout == token + "\n"  # the notes go to stderr
    assert "only time the key is shown" in result.stderr and token not in result.stderr

    [row] = audit_rows(app, "key.created")
    assert row["actor"] == "cli"
    key = load_key(app, row["key_id"])
    assert (key.user_id, key.name, key.scopes, key.rate_limit, key.allowed_ips) == (
        user, "N", ("read:data",), 10, ("10.0.0.0/8",))
    assert before + timedelta(days=30) <= key.expires_at <= utcnow() + timedelta(days=30)
    assert f"created key {key.id} ({token[:9]}) for ada@example.com" in result.stderr

    client = app.test_client()
    response = client.get(WHOAMI, headers=bearer(token), environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert response.status_code == 200 and response.get_json()["key_id"] == key.id
    assert client.get(WHOAMI, headers=bearer(token), environ_base={"REMOTE_ADDR": "192.0.2.1"}).status_code == 403


def test_create_defaults_to_ninety_days(app, runner, user):
    result = runner.invoke(args=["keys", "create", "ada@example.com", "--name", "default"])
    assert result.exit_code == 0, result.output
    key = load_key(app, audit_rows(app, "key.created")[0]["key_id"])
    assert abs(key.expires_at - (utcnow() + timedelta(days=90))) < timedelta(minutes=1)


@pytest.mark.parametrize(("args", "message"), [
    (["ada@example.com", "--scope", "bogus:scope"], "scopes: Unknown scope: bogus:scope"),
    (["nobody@example.com"], "no user with email 'nobody@example.com'"),
    (["ada@example.com", "--expires-in-days", "366"], "expires_at: Keys may live at most 365 days."),
    (["ada@example.com", "--expires-in-days", "-1"], "expires_at: The expiry must be in the future."),
    (["ada@example.com", "--no-expiry"], "expires_at: Choose an expiry date"),
    (["ada@example.com", "--no-expiry", "--expires-in-days", "5"], "either --expires-in-days or --no-expiry"),
    (["ada@example.com", "--allowed-ip", "10.0.0.0/99"], "allowed_ips: '10.0.0.0/99' is not an IP address"),
])
def test_create_refuses_bad_input_with_a_clear_message(app, runner, user, args, message):
    result = runner.invoke(args=["keys", "create", *args, "--name", "N"])
    assert result.exit_code == 1
    assert message in result.stderr
    assert not KEY.search(result.output)
    assert count(app, "api_keys") == 0


def test_create_refuses_zero_days(app, runner, user):
    result = runner.invoke(args=["keys", "create", "ada@example.com", "--name", "N", "--expires-in-days", "0"])
    assert result.exit_code == 1
    assert count(app, "api_keys") == 0


def test_list_never_shows_secrets(app, runner, user):
    mine_id, mine = new_key(app, user, name="mine", scopes=["read:data", "write:data"], rate_limit=5)
    other_id, theirs = new_key(app, add_user(app, "grace@example.com"), name="theirs")

    result = runner.invoke(args=["keys", "list", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert [row["id"] for row in listed] == [other_id, mine_id]  # newest first
    first = {row["id"]: row for row in listed}[mine_id]
    assert first["owner"] == "ada@example.com" and first["name"] == "mine" and first["key"] == mine[:9]
    assert first["status"] == "active" and first["scopes"] == ["read:data", "write:data"]
    assert first["rate_limit"] == 5 and first["usage_count"] == 0
    for token in (mine, theirs):
        assert token not in result.output and token[9:] not in result.output

    result = runner.invoke(args=["keys", "list", "--user", "ADA@example.com", "--json"])
    assert [row["id"] for row in json.loads(result.stdout)] == [mine_id]
    text = runner.invoke(args=["keys", "list", "--user", "ada@example.com"]).stdout
    assert text.startswith(f"{mine_id}\t{mine[:9]}\tactive\tada@example.com\tmine\tread:data write:data\texpires ")
    assert len(text.splitlines()) == 1 and mine not in text

    result = runner.invoke(args=["keys", "list", "--user", "nobody@example.com"])
    assert result.exit_code == 1 and "no user with email" in result.stderr


def test_revoke(app, runner, user):
    key_id, token = new_key(app, user)
    client = app.test_client()
    assert client.get(WHOAMI, headers=bearer(token)).status_code == 200
    result = runner.invoke(args=["keys", "revoke", str(key_id), "--reason", "x"])
    assert result.exit_code == 0, result.output
    assert f"revoked key {key_id} ({token[:9]})" in result.stdout
    assert client.get(WHOAMI, headers=bearer(token)).status_code == 401
    assert load_key(app, key_id).revoked_reason == "x"
    [revoked] = audit_rows(app, "key.revoked")
    assert (revoked["actor"], revoked["detail"]) == ("cli", "x")

    again = runner.invoke(args=["keys", "revoke", str(key_id)])
    assert again.exit_code == 1 and "revoked key stays revoked" in again.stderr
    unknown = runner.invoke(args=["keys", "revoke", "9999"])
    assert unknown.exit_code == 1 and "no key with id 9999" in unknown.stderr


def test_rotate_prints_the_new_key_and_both_work_during_grace(app, runner, user):
    key_id, old = new_key(app, user)
    result = runner.invoke(args=["keys", "rotate", str(key_id), "--grace", "24h"])
    assert result.exit_code == 0, result.output
    new = last_line(result)
    assert KEY.fullmatch(new) and new != old
    assert result.stdout == new + "\n"
    client = app.test_client()
    for token in (old, new):
        response = client.get(WHOAMI, headers=bearer(token))
        assert response.status_code == 200 and response.get_json()["key_id"] == key_id
    assert load_key(app, key_id).display_start == new[:9]

    result = runner.invoke(args=["keys", "rotate", str(key_id)])  # default grace: none
    newest = last_line(result)
    assert [client.get(WHOAMI, headers=bearer(token)).status_code for token in (old, new, newest)] == [401, 401, 200]


def test_rotate_refusals(app, runner, user):
    key_id, token = new_key(app, user)
    bad_grace = runner.invoke(args=["keys", "rotate", str(key_id), "--grace", "2h"])
    assert bad_grace.exit_code == 2 and "2h" in bad_grace.stderr
    unknown = runner.invoke(args=["keys", "rotate", "9999"])
    assert unknown.exit_code == 1 and "no key with id 9999" in unknown.stderr
    runner.invoke(args=["keys", "revoke", str(key_id)])
    revoked = runner.invoke(args=["keys", "rotate", str(key_id)])
    assert revoked.exit_code == 1 and "revoked" in revoked.stderr and not KEY.search(revoked.output)
    assert audit_rows(app, "key.rotated") == []
