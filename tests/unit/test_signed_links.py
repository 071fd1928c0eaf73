"""signed_links: a token opens only its own purpose, ages out when timed, stays the same when untimed, and any
other string is a LinkError (never another exception)."""

from __future__ import annotations

import pytest
from flask import Flask
from itsdangerous import TimestampSigner

from app.accounts import signed_links
from app.accounts.signed_links import LinkError


@pytest.fixture
def context():
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "k" * 40
    with app.app_context():
        yield app


def test_a_token_round_trips_for_its_purpose_only(context):
    token = signed_links.sign("password-reset", [7, "nonce"])
    assert signed_links.load("password-reset", token, 1800) == [7, "nonce"]
    with pytest.raises(LinkError) as error:
        signed_links.load("confirm-email", token, 1800)
    assert not error.value.expired


def test_a_timed_token_expires(context, monkeypatch):
    token = signed_links.sign("password-reset", [7, "nonce"])
    now = TimestampSigner.get_timestamp(TimestampSigner("x"))
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda signer: now + 1801)
    with pytest.raises(LinkError) as error:
        signed_links.load("password-reset", token, 1800)
    assert error.value.expired and str(error.value) == "The link has expired."


def test_an_untimed_token_is_always_the_same_and_only_opens_untimed(context, monkeypatch):
    first = signed_links.sign("calendar", [7, "nonce"], timed=False)
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda signer: 4_000_000_000)
    assert signed_links.sign("calendar", [7, "nonce"], timed=False) == first
    assert signed_links.load("calendar", first, timed=False) == [7, "nonce"]
    timed = signed_links.sign("calendar", [7, "nonce"])
    with pytest.raises(LinkError):
        signed_links.load("calendar", timed, timed=False)
    with pytest.raises(LinkError):
        signed_links.load("calendar", first)


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "x" * 1001, "é.é", "WzcsIm5vbmNlIl0.AAAA.BBBB", None, 7])
def test_anything_else_is_a_link_error(context, token):
    with pytest.raises(LinkError):
        signed_links.load("password-reset", token, 1800)
    with pytest.raises(LinkError):
        signed_links.load("calendar", token, timed=False)


def test_another_secret_key_opens_nothing(context):
    token = signed_links.sign("password-reset", [7, "nonce"])
    context.config["SECRET_KEY"] = "z" * 40
    with pytest.raises(LinkError):
        signed_links.load("password-reset", token, 1800)
