"""Signed, expiring tokens for the links Keyfob mails or shows (password reset, address confirmation, the calendar
feed): the token carries its payload and a signature with the app's SECRET_KEY, salted by purpose so a token made
for one purpose is refused for every other. What makes a link single-use (a nonce in the payload that the user row
replaces) is up to the caller; this module only signs and checks."""

from __future__ import annotations

from flask import current_app
from itsdangerous import BadData, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer


class LinkError(ValueError):
    """A token that is malformed, forged, made for another purpose, or too old; `expired` tells the last apart."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


def _serializer(purpose: str, timed: bool) -> URLSafeSerializer:
    kind = URLSafeTimedSerializer if timed else URLSafeSerializer
    return kind(current_app.config["SECRET_KEY"], salt=f"keyfob.{purpose}")


def sign(purpose: str, payload: list | dict | str, *, timed: bool = True) -> str:
    """A URL-safe token holding `payload` (JSON-able), signed for `purpose` with the time it was made; untimed
    (`timed=False`), the same payload always gives the same token, for a URL that must stay put (a feed)."""
    return _serializer(purpose, timed).dumps(payload)


def load(purpose: str, token: str, max_age: float | None = None, *, timed: bool = True):
    """The payload of a token signed for `purpose` (and as `timed`) at most `max_age` seconds ago (None: no age
    limit), or LinkError."""
    if not isinstance(token, str) or not token.isascii() or len(token) > 1000:
        raise LinkError("The link is not valid.")
    try:
        if not timed:
            return _serializer(purpose, timed).loads(token)
        return _serializer(purpose, timed).loads(token, max_age=max_age)
    except SignatureExpired:
        raise LinkError("The link has expired.", expired=True) from None
    except BadData:  # a bad signature, or a signed payload that is not ours to read (a timed token, untimed)
        raise LinkError("The link is not valid.") from None
