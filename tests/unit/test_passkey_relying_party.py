"""Which relying party PUBLIC_BASE_URL gives passkeys, and why some give none."""

from __future__ import annotations

import pytest

from app.accounts.passkeys import PasskeyError, clean_name, relying_party


@pytest.mark.parametrize("base_url, expected", [
    ("https://keys.example.com", ("keys.example.com", "https://keys.example.com")),
    ("https://Keys.Example.com:8443/keyfob", ("keys.example.com", "https://keys.example.com:8443")),
    ("http://localhost:5000", ("localhost", "http://localhost:5000")),
    ("http://keyfob.localhost", ("keyfob.localhost", "http://keyfob.localhost")),
])
def test_the_relying_party_is_the_host_and_the_origin(base_url, expected):
    assert relying_party(base_url) == expected


@pytest.mark.parametrize("base_url, reason", [
    (None, "PUBLIC_BASE_URL is not set"),
    ("https://192.0.2.10", "IP address (192.0.2.10)"),
    ("http://127.0.0.1:5000", "IP address"),
    ("https://[2001:db8::1]", "IP address (2001:db8::1)"),
    ("http://keys.example.com", "only over HTTPS"),
])
def test_no_relying_party_where_browsers_refuse_webauthn(base_url, reason):
    found = relying_party(base_url)
    assert isinstance(found, str) and reason in found


@pytest.mark.parametrize("name, message", [("", "Give the passkey a name"), ("  ", "Give the passkey a name"),
                                           ("n" * 65, "64 characters"), ("a\x1bb", "control characters")])
def test_a_bad_name_is_refused(name, message):
    with pytest.raises(PasskeyError, match=message):
        clean_name(name)


def test_a_name_is_trimmed():
    assert clean_name("  Work laptop ") == "Work laptop"
