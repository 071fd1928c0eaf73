"""Password policy and hashing, without an app."""

from __future__ import annotations

import pytest

from app.accounts.passwords import MAX_LENGTH, PasswordHasher, common_passwords, password_problem

FAST = {"time_cost": 2, "memory_cost": 19456, "parallelism": 1}


@pytest.mark.parametrize("password", ["12345678", "password", "Password1", "qwertyuiop", "iloveyou"])
def test_common_passwords_are_refused_whatever_their_case(password):
    assert "most common" in password_problem(password)


def test_blocklist_is_the_full_list():
    assert len(common_passwords()) > 19000


@pytest.mark.parametrize("password", [
    "eight ch", "correct horse battery staple", "ñandú-über-straße", "x" * MAX_LENGTH,
])
def test_good_passwords_pass_without_composition_rules(password):
    assert password_problem(password) is None


def test_length_counts_characters_after_nfkc():
    assert password_problem("\ufb01" * 4) is None  # four "fi" ligatures are eight letters after NFKC
    assert "at least 8" in password_problem("\ufb01" * 3)


def test_length_limits():
    assert "at least 8" in password_problem("seven77")
    assert "at most" in password_problem("y" * (MAX_LENGTH + 1))


def test_email_is_not_a_password():
    assert "email" in password_problem("Grace.Hopper@navy.mil", "grace.hopper@navy.mil")
    assert "email" in password_problem("grace.hopper", "grace.hopper@navy.mil")


def test_hash_is_argon2id_with_the_given_parameters_and_verifies():
    hasher = PasswordHasher(**FAST)
    stored = hasher.hash("a sturdy passphrase")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert hasher.verify(stored, "a sturdy passphrase")
    assert not hasher.verify(stored, "a sturdy passphrasE")
    assert not hasher.verify("not a hash", "a sturdy passphrase")


def test_verify_without_a_stored_hash_is_false_even_for_the_dummy_secret():
    hasher = PasswordHasher(**FAST)
    assert not hasher.verify(None, "")
    assert not hasher.verify(None, "anything")


def test_unicode_forms_of_the_same_password_match():
    hasher = PasswordHasher(**FAST)
    stored = hasher.hash("cafe\u0301 au lait!")   # e + combining accent
    assert hasher.verify(stored, "caf\u00e9 au lait!")  # precomposed é


def test_needs_rehash_when_parameters_change():
    old = PasswordHasher(**FAST).hash("a sturdy passphrase")
    assert not PasswordHasher(**FAST).needs_rehash(old)
    assert PasswordHasher(time_cost=3, memory_cost=19456, parallelism=1).needs_rehash(old)
