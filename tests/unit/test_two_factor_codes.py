"""The pure parts of two-factor sign-in: sealing the TOTP secret, reading what people type, matching a code's step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest

from app.accounts import two_factor as tf

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
NOW = datetime(2026, 12, 1, 4, 0, 10, tzinfo=UTC)


def test_a_sealed_secret_opens_for_its_user_and_is_not_the_plaintext():
    secret = tf.new_secret()
    stored = tf.encrypt_secret(KEY, secret, 7)
    assert stored.startswith("v1:") and secret not in stored and len(stored) <= 128
    assert tf.decrypt_secret(KEY, stored, 7) == secret
    assert tf.encrypt_secret(KEY, secret, 7) != stored  # a fresh nonce each time


@pytest.mark.parametrize("what", ["another user", "another key", "tampered", "truncated", "unknown format", "junk"])
def test_a_secret_that_was_not_sealed_for_this_user_with_this_key_does_not_open(what):
    stored = tf.encrypt_secret(KEY, tf.new_secret(), 7)
    user, key = 7, KEY
    if what == "another user":
        user = 8  # the associated data: a ciphertext copied onto another account
    elif what == "another key":
        key = OTHER_KEY  # KEY_PEPPER changed
    elif what == "tampered":
        stored = stored[:-6] + ("AAAAAA" if not stored.endswith("AAAAAA") else "BBBBBB")
    elif what == "truncated":
        stored = stored[:10]
    elif what == "unknown format":
        stored = "v2" + stored[2:]
    else:
        stored = "v1:!!!not base64"
    with pytest.raises(tf.TwoFactorError) as refused:
        tf.decrypt_secret(key, stored, user)
    assert "KEY_PEPPER" in refused.value.message


def test_the_two_derived_keys_differ_and_follow_the_pepper():
    config = {"KEY_PEPPER": "p" * 40, "TWO_FACTOR_FOR_ADMINS": True, "TWO_FACTOR_FOR_EVERYONE": False,
              "PUBLIC_BASE_URL": None}
    first = tf.TwoFactorSettings.from_config(config)
    again = tf.TwoFactorSettings.from_config(config)
    other = tf.TwoFactorSettings.from_config({**config, "KEY_PEPPER": "q" * 40})
    assert first.secret_key == again.secret_key and len(first.secret_key) == 32
    assert first.secret_key != first.recovery_key
    assert other.secret_key != first.secret_key and other.recovery_key != first.recovery_key
    assert first.issuer == "Keyfob"
    assert tf.TwoFactorSettings.from_config({**config, "PUBLIC_BASE_URL": "https://keys.example.com"}).issuer \
        == "keys.example.com"


@pytest.mark.parametrize(("typed", "kind", "value"), [
    ("123456", "totp", "123456"),
    (" 123 456 ", "totp", "123456"),
    ("123-456", "totp", "123456"),
    ("abcd-efgh-2345", "recovery", "abcdefgh2345"),
    ("ABCD EFGH 2345", "recovery", "abcdefgh2345"),
    ("abcdefgh2345", "recovery", "abcdefgh2345"),
])
def test_codes_are_read_as_people_type_them(typed, kind, value):
    assert tf.parse_code(typed) == tf.Code(kind, value)


@pytest.mark.parametrize("typed", [
    "", "   ", None, "abcdef", "12345", "1234567", "9" * 400, "x" * 5000, "١٢٣٤٥٦", "１２３４５６", "12345６",
    "²23456", "123456\x00", "abcd-efgh-234", "abcd-efgh-23456", "abcd-efgh-0189", "\u202e123456", "12 34 5",
])
def test_anything_else_is_refused_with_a_message(typed):
    with pytest.raises(tf.TwoFactorError) as refused:
        tf.parse_code(typed)
    assert refused.value.field == "code" and refused.value.message


def test_a_code_matches_its_step_and_the_ones_either_side_only():
    secret = tf.new_secret()
    totp = pyotp.TOTP(secret)
    step = tf.time_step(NOW)
    assert tf.matching_step(secret, totp.at(NOW), NOW) == step
    assert tf.matching_step(secret, totp.at(NOW - timedelta(seconds=30)), NOW) == step - 1
    assert tf.matching_step(secret, totp.at(NOW + timedelta(seconds=30)), NOW) == step + 1
    assert tf.matching_step(secret, totp.at(NOW - timedelta(seconds=90)), NOW) is None
    assert tf.matching_step(tf.new_secret(), totp.at(NOW), NOW) is None


def test_the_otpauth_uri_names_the_issuer_and_the_account():
    secret = tf.new_secret()
    uri = tf.otpauth_uri(secret, "ada@example.com", "Keyfob")
    parts = urlsplit(uri)
    assert parts.scheme == "otpauth" and parts.netloc == "totp"
    assert parts.path == "/Keyfob:ada%40example.com"
    query = parse_qs(parts.query)
    assert query["secret"] == [secret] and query["issuer"] == ["Keyfob"]


def test_secrets_and_recovery_codes_are_fresh_and_in_their_alphabet():
    secrets = {tf.new_secret() for _ in range(50)}
    assert len(secrets) == 50 and all(len(secret) == 32 for secret in secrets)
    assert tf.grouped("ABCDEFGHIJKL") == "ABCD EFGH IJKL"
    codes = {tf.new_recovery_code() for _ in range(50)}
    assert len(codes) == 50
    for code in codes:
        shown = tf.shown_recovery_code(code)
        assert tf.parse_code(shown) == tf.Code("recovery", code)
    assert tf.recovery_code_hash(KEY, "abcdefgh2345") != tf.recovery_code_hash(OTHER_KEY, "abcdefgh2345")
