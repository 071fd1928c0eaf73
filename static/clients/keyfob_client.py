"""Keyfob's client for services: check the API keys your clients send against your Keyfob.

One file and the standard library only, so that a service can vendor it without installing Flask, SQLAlchemy or
Keyfob itself: every Keyfob serves the client matching its API at /static/clients/keyfob_client.py. Python 3.9+.

    keyfob = KeyfobClient("https://keyfob.internal", os.environ["KEYFOB_VERIFIER_CREDENTIAL"])
    result = keyfob.verify(key, scopes=["read:data"], client_ip="203.0.113.7")   # a frozen Verification

    @app.get("/invoices")
    @require_api_key("read:data", client=keyfob)                             # Flask; the result is in g.keyfob
    def invoices(): ...

It fails closed: when Keyfob cannot be reached, does not answer within the timeout, or answers 5xx, verify() raises
KeyfobUnavailable (the decorator answers 503); a credential Keyfob refuses raises InvalidVerifierCredential. It never
logs, and neither a key nor the credential is ever part of an exception's message or of a repr.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import ssl
import threading
import weakref
from dataclasses import dataclass
from datetime import datetime
from functools import wraps
from urllib.parse import urlsplit

__all__ = [
    "InvalidVerifierCredential", "KeyInfo", "KeyfobClient", "KeyfobError", "KeyfobRequestError", "KeyfobUnavailable",
    "Owner", "RateLimit", "Verification", "presented_key", "rate_limit_headers", "refusal", "require_api_key",
]

VERIFY_PATH = "/api/v1/keys/verify"
USER_AGENT = "keyfob-client/1"
# What Keyfob's own decorator answers (app/api/decorator.py); the tests compare the two against a running Keyfob.
REALM = 'Bearer realm="keyfob"'
MISSING_KEY_MESSAGE = "Send your API key in the Authorization header: Authorization: Bearer <key>."
INVALID_KEY_MESSAGE = "The API key is not valid: it may be mistyped, expired, revoked, disabled or suspended."
INVALID_CODES = frozenset({"NOT_FOUND", "EXPIRED", "REVOKED", "DISABLED", "SUSPENDED"})
UNAVAILABLE_MESSAGE = "The API key cannot be checked right now. Please try again in a few seconds."
UNAVAILABLE_RETRY_AFTER = 5  # seconds, when Keyfob did not say
# Visible ASCII only: a credential is sent in a header, where a stray newline would be a header of its own.
CREDENTIAL = re.compile(r"[!-~]+")
# Errors of a connection the other side closed.
DROPPED = (http.client.RemoteDisconnected, ConnectionResetError, ConnectionAbortedError, BrokenPipeError)

RECORDED_LENGTH = 2000  # the longest method or path the verification API takes


class KeyfobError(Exception):
    """Keyfob gave no answer about the key. It never means the key is valid."""


class KeyfobUnavailable(KeyfobError):
    """Keyfob cannot be reached, did not answer in time, or answered 429, 5xx or something that is not its API."""

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # seconds, when Keyfob said


class InvalidVerifierCredential(KeyfobError):
    """Keyfob refused the verifier credential (401): it is mistyped, rotated or revoked."""


class KeyfobRequestError(KeyfobError):
    """Keyfob refused the request itself (another 4xx), such as a scope it does not know or a wrong base URL."""

    def __init__(self, status: int, error: str | None, message: str, fields: dict | None = None) -> None:
        super().__init__(f"Keyfob answered {status} {error or ''}: {message}" + (f" {fields}" if fields else ""))
        self.status = status
        self.error = error
        self.fields = fields or {}


@dataclass(frozen=True)
class Owner:
    id: int
    email: str


@dataclass(frozen=True)
class KeyInfo:
    id: int | None
    name: str
    start: str                      # the key's display start: safe to show and log, unlike the key
    owner: Owner | None             # None for Keyfob's static service key
    scopes: tuple[str, ...]
    expires_at: datetime | None     # aware, UTC; None when it never expires


@dataclass(frozen=True)
class RateLimit:
    limit: int      # requests per window
    window: int     # seconds
    remaining: int
    reset: int      # seconds until a request is allowed again (or the window clears)


@dataclass(frozen=True)
class Verification:
    """Keyfob's answer: `valid`, a `code` (VALID, NOT_FOUND, EXPIRED, REVOKED, DISABLED, SUSPENDED,
    INSUFFICIENT_SCOPE, IP_NOT_ALLOWED, RATE_LIMITED, USAGE_EXCEEDED) and, for a key that was found, what a service
    needs to act on it."""

    valid: bool
    code: str
    key: KeyInfo | None = None
    rate_limit: RateLimit | None = None
    remaining_uses: int | None = None  # uses left after this check; None without a quota
    missing_scopes: tuple[str, ...] = ()


def _moment(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _verification(body: dict) -> Verification:
    """Keyfob's 200 answer as a Verification (KeyError, TypeError, ValueError or AttributeError if it is not one)."""
    key, limit = body.get("key"), body.get("rate_limit")
    info = state = None
    if key is not None:
        owner = key["owner"]
        info = KeyInfo(key["id"], key["name"], key["start"],
                       None if owner is None else Owner(owner["id"], owner["email"]), tuple(key["scopes"]),
                       _moment(key["expires_at"]))
    if limit is not None:
        state = RateLimit(limit["limit"], limit["window"], limit["remaining"], limit["reset"])
    return Verification(valid=body["valid"] is True and body["code"] == "VALID", code=str(body["code"]), key=info,
                        rate_limit=state, remaining_uses=body.get("remaining_uses"),
                        missing_scopes=tuple(body.get("missing_scopes", ())))


def _seconds(value: str | None) -> int | None:
    return int(value) if value and value.strip().isdigit() else None


def _refused(status: int, data: bytes) -> KeyfobRequestError:
    try:
        body = json.loads(data)
        return KeyfobRequestError(status, body.get("error"), str(body.get("message", "")), body.get("fields"))
    except (ValueError, AttributeError):
        return KeyfobRequestError(status, None, "the answer is not Keyfob's JSON; is the base URL right?")


class _Held:
    """A thread's connection: closed when the thread ends and drops it, rather than left to the garbage collector."""

    def __init__(self, connection: http.client.HTTPConnection) -> None:
        self.connection = connection
        self.pid = os.getpid()

    def __del__(self) -> None:
        self.connection.close()


class KeyfobClient:
    """Checks keys against one Keyfob, over a kept-alive HTTP/1.1 connection per thread.

    `timeout` bounds connecting and each read, in seconds. `ssl_context` is for an https Keyfob whose certificate
    the system does not trust (a private CA); by default the system's trust store is used.
    """

    def __init__(self, base_url: str, verifier_credential: str, *, timeout: float = 2.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.query:
            raise ValueError("base_url must be Keyfob's http:// or https:// address, such as https://keyfob.internal")
        if not isinstance(verifier_credential, str) or not CREDENTIAL.fullmatch(verifier_credential):
            raise ValueError("verifier_credential must be the credential `flask verifiers create NAME` printed")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._path = parts.path.rstrip("/") + VERIFY_PATH
        self._ssl_context = ssl_context or (ssl.create_default_context() if self._https else None)
        self._headers = {"Authorization": f"Bearer {verifier_credential}", "Content-Type": "application/json",
                         "Accept": "application/json", "User-Agent": USER_AGENT}
        self._local = threading.local()
        self._held: weakref.WeakSet[_Held] = weakref.WeakSet()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"KeyfobClient({self.base_url!r}, timeout={self.timeout})"

    def __enter__(self) -> KeyfobClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Close every thread's connection; the next check opens a new one."""
        with self._lock:
            for held in list(self._held):
                held.connection.close()

    def verify(self, key: str, scopes=(), client_ip: str | None = None, method: str | None = None,
               path: str | None = None) -> Verification:
        """Ask Keyfob whether `key` is good for a route needing every scope in `scopes`, for a client at `client_ip`
        (checked against the key's allowlist; method and path are for the record). Counts as one use of the key."""
        if isinstance(scopes, str):
            raise TypeError("scopes is a list of scope names, such as ['read:data']")
        # Method and path are only for the record: cut to what Keyfob keeps (2,000 characters), never a refusal.
        body = {"key": key, "scopes": list(scopes), "client_ip": client_ip,
                "method": method[:RECORDED_LENGTH] if method else None,
                "path": path[:RECORDED_LENGTH] if path else None}
        payload = json.dumps({name: value for name, value in body.items() if value is not None}).encode()
        status, headers, data = self._post(payload)
        if status == 200:
            try:
                return _verification(json.loads(data))
            except (KeyError, TypeError, ValueError, AttributeError):
                raise KeyfobUnavailable(f"{self.base_url} answered 200 with something other than a check; is the "
                                        "base URL right?") from None
        if status == 401:
            raise InvalidVerifierCredential("Keyfob refused the verifier credential: it is mistyped, rotated or "
                                            "revoked. An admin issues one with `flask verifiers create NAME`.")
        if status == 429 or status >= 500:
            raise KeyfobUnavailable(f"Keyfob at {self.base_url} answered {status}",
                                    retry_after=_seconds(headers.get("Retry-After")))
        raise _refused(status, data)

    def _post(self, payload: bytes) -> tuple[int, http.client.HTTPMessage, bytes]:
        """Status, headers and body of one POST to the verification API."""
        try:
            connection, reused = self._connection()
            try:
                return self._exchange(connection, payload)
            except DROPPED:
                if not reused:
                    raise
            # Most likely Keyfob closed the idle connection as the check went out, before reading it: send it once
            # more on a new connection. (At worst Keyfob had counted it, and the key is charged one use more.)
            return self._exchange(self._connection()[0], payload)
        except DROPPED as error:
            raise KeyfobUnavailable(f"Keyfob at {self.base_url} closed the connection without answering") from error
        except socket.timeout as error:  # noqa: UP041  (not yet TimeoutError in Python 3.9)
            raise KeyfobUnavailable(f"Keyfob at {self.base_url} did not answer within {self.timeout} s") from error
        except (OSError, http.client.HTTPException) as error:
            raise KeyfobUnavailable(f"Keyfob at {self.base_url} cannot be reached: "
                                    f"{error or type(error).__name__}") from error

    def _exchange(self, connection: http.client.HTTPConnection, payload: bytes):
        try:
            connection.request("POST", self._path, payload, self._headers)
            response = connection.getresponse()
            return response.status, response.headers, response.read()
        except BaseException:
            connection.close()  # whatever happened, the connection is out of step now
            raise

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection, and whether it is open already (http.client opens it on first use)."""
        held = getattr(self._local, "held", None)
        if held is None or held.pid != os.getpid():  # after a fork the socket is the parent's too: never share it
            held = _Held(http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout,
                                                     context=self._ssl_context) if self._https else
                         http.client.HTTPConnection(self._host, self._port, timeout=self.timeout))
            self._local.held = held
            with self._lock:
                self._held.add(held)
        return held.connection, held.connection.sock is not None


def rate_limit_headers(state: RateLimit) -> dict[str, str]:
    """The IETF RateLimit and RateLimit-Policy fields, as Keyfob sends them."""
    return {
        "RateLimit-Policy": f'"per-key";q={state.limit};w={state.window}',
        "RateLimit": f'"per-key";r={state.remaining};t={state.reset}',
    }


def refusal(result: Verification) -> tuple[int, dict, dict[str, str]]:
    """Status, JSON body and headers with which Keyfob's own routes refuse a key, for any web framework."""
    if result.code in INVALID_CODES:
        return 401, {"error": "invalid_token", "message": INVALID_KEY_MESSAGE}, {
            "WWW-Authenticate": f'{REALM}, error="invalid_token", error_description="{INVALID_KEY_MESSAGE}"'}
    if result.code == "INSUFFICIENT_SCOPE":
        needed = " ".join(result.missing_scopes)
        return 403, {"error": "insufficient_scope", "message": f"This key lacks the scope this needs: {needed}."}, {
            "WWW-Authenticate": f'{REALM}, error="insufficient_scope", scope="{needed}"'}
    if result.code == "IP_NOT_ALLOWED":
        return 403, {"error": "ip_not_allowed", "message": "This key may not be used from your IP address."}, {}
    if result.code == "USAGE_EXCEEDED":
        return 403, {"error": "usage_exceeded",
                     "message": "This key has used up its allowed number of requests."}, {}
    state = result.rate_limit
    if result.code == "RATE_LIMITED" and state is not None:
        return 429, {"error": "rate_limited",
                     "message": f"This key is limited to {state.limit} requests per minute. "
                                f"Try again in {state.reset} s."}, {
            "Retry-After": str(state.reset), **rate_limit_headers(state)}
    # A code this client does not know yet: refused all the same.
    return 401, {"error": "invalid_token", "message": INVALID_KEY_MESSAGE}, {"WWW-Authenticate": REALM}


def presented_key(headers) -> str | None:
    """The key of `Authorization: Bearer <key>`, or else of `X-API-Key: <key>`; None when there is none."""
    scheme, _, token = (headers.get("Authorization") or "").strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return (headers.get("X-API-Key") or "").strip() or None


def require_api_key(*scopes: str, client: KeyfobClient):
    """Guard a Flask view: the request must carry a key that Keyfob finds valid and holding every scope in `scopes`.

    The view finds the Verification in `flask.g.keyfob`. Refusals are Keyfob's own (401, 403, 429, with their
    headers); 503 when Keyfob cannot be reached. Behind a reverse proxy, let werkzeug's ProxyFix set the client's
    address, or the key's IP allowlist is checked against the proxy's.
    """
    import flask  # here, so that the module imports without Flask

    def answer(status: int, body: dict, headers: dict[str, str]):
        return flask.jsonify(body), status, headers

    def decorator(view):
        @wraps(view)
        def guarded(*args, **kwargs):
            request = flask.request
            key = presented_key(request.headers)
            if key is None:
                return answer(401, {"error": "missing_token", "message": MISSING_KEY_MESSAGE},
                              {"WWW-Authenticate": REALM})
            try:
                result = client.verify(key, scopes, request.remote_addr or None, request.method, request.path)
            except KeyfobUnavailable as error:
                return answer(503, {"error": "service_unavailable", "message": UNAVAILABLE_MESSAGE},
                              {"Retry-After": str(error.retry_after or UNAVAILABLE_RETRY_AFTER)})
            flask.g.keyfob = result
            if not result.valid:
                return answer(*refusal(result))
            if result.rate_limit is not None:
                headers = rate_limit_headers(result.rate_limit)

                @flask.after_this_request
                def _add_rate_limit_headers(response):
                    response.headers.update(headers)
                    return response

            return view(*args, **kwargs)

        return guarded

    return decorator
