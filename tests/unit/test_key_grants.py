"""What a key may grant (app/keys/grants.py), without HTTP: each restriction tightened, kept and loosened, on create,
on change and on rotate, against a caller restricted in every way and one restricted in none."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from app.keys import grants
from app.keys.grants import Caller, GrantRefused

NOW = datetime(2027, 1, 1, tzinfo=UTC)
CALLER = Caller(scopes=("keys:write", "read:data"), expires_at=NOW + timedelta(days=30),
                allowed_ips=("10.0.0.0/8",), rate_limit=60, uses_left=100)
FREE = Caller(scopes=("keys:write", "read:data"), expires_at=None)

# (restriction, tighter, the same, looser) for the three restrictions a key can carry.
RESTRICTIONS = [
    ("rate_limit", 10, 60, 61),
    ("rate_limit", 10, 60, None),  # no limit at all is the loosest
    ("allowed_ips", ["10.1.0.0/16"], ["10.0.0.0/8"], ["10.0.0.0/7"]),
    ("allowed_ips", ["10.1.0.0/16"], ["10.0.0.0/8"], []),  # an empty allowlist admits anywhere
    ("allowed_ips", ["::ffff:10.1.2.0/120"], ["10.0.0.0/9", "10.128.0.0/9"], ["192.0.2.0/24"]),
    ("remaining_uses", 1, 100, 101),
    ("remaining_uses", 1, 100, None),
]


@dataclass(frozen=True)
class Key:
    """The parts of a stored key that rotation looks at."""

    scopes: tuple[str, ...] = ("read:data",)
    expires_at: datetime | None = NOW + timedelta(days=10)
    allowed_ips: tuple[str, ...] = ("10.0.0.0/8",)
    rate_limit: int | None = 60
    remaining_uses: int | None = 50


# -- create and change: check_restrictions, check_scopes, check_outlives ----------------------------------------------

@pytest.mark.parametrize(("field", "tighter", "same", "looser"), RESTRICTIONS)
def test_a_restriction_may_be_tightened_or_kept_never_loosened(field, tighter, same, looser):
    grants.check_restrictions(CALLER, **{field: tighter})
    grants.check_restrictions(CALLER, **{field: same})
    with pytest.raises(GrantRefused) as refused:
        grants.check_restrictions(CALLER, **{field: looser})
    assert refused.value.message.startswith("A key cannot give a key ")


@pytest.mark.parametrize(("field", "tighter", "same", "looser"), RESTRICTIONS)
def test_an_unrestricted_caller_may_grant_any_restriction(field, tighter, same, looser):
    for value in (tighter, same, looser):
        grants.check_restrictions(FREE, **{field: value})


def test_a_restriction_not_given_is_not_checked():
    grants.check_restrictions(CALLER)
    assert grants.looser(CALLER) == []


def test_every_loosened_restriction_is_named_at_once():
    with pytest.raises(GrantRefused) as refused:
        grants.check_restrictions(CALLER, rate_limit=None, allowed_ips=[], remaining_uses=None)
    assert refused.value.message == (
        "A key cannot give a key a higher rate limit than its own (60 per minute) or a wider IP allowlist than its "
        "own (10.0.0.0/8) or more remaining uses than it has left itself (100 after this request).")


def test_scopes_may_be_fewer_or_the_same_never_more():
    grants.check_scopes(CALLER, [])
    grants.check_scopes(CALLER, ["read:data"])
    grants.check_scopes(CALLER, ["keys:write", "read:data"])
    with pytest.raises(GrantRefused, match="does not hold itself: write:data"):
        grants.check_scopes(CALLER, ["read:data", "write:data"])


@pytest.mark.parametrize(("expires_at", "allowed"), [
    (NOW + timedelta(days=1), True), (CALLER.expires_at, True), (CALLER.expires_at + timedelta(seconds=1), False),
    (None, False)])
def test_a_key_lives_no_longer_than_its_caller(expires_at, allowed):
    if allowed:
        grants.check_outlives(CALLER, expires_at)
    else:
        with pytest.raises(GrantRefused, match="live longer than itself"):
            grants.check_outlives(CALLER, expires_at)
    grants.check_outlives(FREE, expires_at)  # a caller that never expires bounds nothing


def test_a_default_or_renewed_expiry_is_capped_at_the_callers():
    assert grants.capped(CALLER, NOW + timedelta(days=90)) == CALLER.expires_at
    assert grants.capped(CALLER, NOW + timedelta(days=3)) == NOW + timedelta(days=3)
    assert grants.capped(FREE, NOW + timedelta(days=90)) == NOW + timedelta(days=90)


def test_fields_left_out_take_the_callers_own_restrictions():
    assert grants.inherited(CALLER) == {"allowed_ips": ["10.0.0.0/8"], "rate_limit": 60, "remaining_uses": 100}
    assert grants.inherited(FREE) == {"allowed_ips": [], "rate_limit": None, "remaining_uses": None}
    grants.check_restrictions(CALLER, **grants.inherited(CALLER))  # what is inherited always passes


def test_a_caller_with_no_use_left_passes_on_one_which_is_more_than_it_has():
    spent = replace(CALLER, uses_left=0)
    assert grants.inherited(spent)["remaining_uses"] == 1
    with pytest.raises(GrantRefused, match=r"more remaining uses than it has left itself \(0"):
        grants.check_restrictions(spent, **grants.inherited(spent))


def test_the_caller_is_read_from_a_verified_key_after_this_requests_use():
    key = Key(scopes=("keys:write",), remaining_uses=5)
    assert Caller.of(key) == Caller(("keys:write",), key.expires_at, ("10.0.0.0/8",), 60, 4)
    assert Caller.of(replace(key, remaining_uses=None)).uses_left is None


# -- rotate: check_rotatable ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("field", "tighter", "same", "looser"), RESTRICTIONS)
def test_a_key_restricted_at_least_as_much_as_the_caller_may_be_rotated_by_it(field, tighter, same, looser):
    value = tuple if field == "allowed_ips" else (lambda same_value: same_value)
    grants.check_rotatable(CALLER, replace(Key(), **{field: value(tighter)}), NOW)
    grants.check_rotatable(CALLER, replace(Key(), **{field: value(same)}), NOW)
    with pytest.raises(GrantRefused, match="its new secret would do more than the caller"):
        grants.check_rotatable(CALLER, replace(Key(), **{field: value(looser)}), NOW)
    grants.check_rotatable(FREE, replace(Key(), **{field: value(looser)}), NOW)


def test_a_key_with_a_scope_the_caller_lacks_may_not_be_rotated_by_it():
    grants.check_rotatable(CALLER, Key(scopes=("keys:write", "read:data")), NOW)
    with pytest.raises(GrantRefused, match="holds scopes it does not hold itself: write:data"):
        grants.check_rotatable(CALLER, Key(scopes=("write:data",)), NOW)


@pytest.mark.parametrize(("expires_at", "allowed"), [
    (CALLER.expires_at, True), (CALLER.expires_at + timedelta(days=1), False), (None, False),
    (NOW - timedelta(days=400), True)])  # expired: revived only up to the caller's expiry, so it may be
def test_a_key_that_outlives_the_caller_may_not_be_rotated_by_it_unless_expired(expires_at, allowed):
    key = Key(expires_at=expires_at)
    if allowed:
        grants.check_rotatable(CALLER, key, NOW)
    else:
        with pytest.raises(GrantRefused, match="lives longer than itself"):
            grants.check_rotatable(CALLER, key, NOW)
