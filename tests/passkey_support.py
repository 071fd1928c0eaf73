"""A software authenticator for the passkey tests: it answers WebAuthn options as a browser and an authenticator
would (clientDataJSON, authenticatorData, attestation "none" in CBOR, an ES256 signature), so the tests drive the
real pages and the real verification. Helpers register a passkey and pass the second step with one."""

from __future__ import annotations

import hashlib
import json
import secrets
import struct

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from webauthn.helpers import bytes_to_base64url

from tests.support import csrf_token_from

ORIGIN = "http://localhost"  # the test client's address, and the tests' PUBLIC_BASE_URL
UP, UV, AT = 0x01, 0x04, 0x40  # authenticatorData flags: user present, user verified, attested credential data


class SoftAuthenticator:
    """One passkey: an EC P-256 key, a credential id and a signature counter (`counter_step` 0: keeps none)."""

    def __init__(self, origin: str = ORIGIN, counter_step: int = 1) -> None:
        self.origin = origin
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = secrets.token_bytes(32)
        self.counter = 0
        self.counter_step = counter_step

    @property
    def id(self) -> str:
        return bytes_to_base64url(self.credential_id)

    def _client_data(self, kind: str, challenge: str) -> bytes:
        return json.dumps({"type": kind, "challenge": challenge, "origin": self.origin,
                           "crossOrigin": False}).encode()

    def _cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})

    def create(self, options: dict) -> str:
        """The registration answer (as the browser's JSON) to navigator.credentials.create()'s options."""
        rp_hash = hashlib.sha256(options["rp"]["id"].encode()).digest()
        auth_data = (rp_hash + bytes([UP | UV | AT]) + struct.pack(">I", self.counter) + bytes(16)
                     + struct.pack(">H", len(self.credential_id)) + self.credential_id + self._cose_key())
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return json.dumps({"id": self.id, "rawId": self.id, "type": "public-key", "clientExtensionResults": {},
                           "response": {"clientDataJSON": bytes_to_base64url(self._client_data(
                                            "webauthn.create", options["challenge"])),
                                        "attestationObject": bytes_to_base64url(attestation),
                                        "transports": ["internal"]}})

    def get(self, options: dict, rp_id: str | None = None) -> str:
        """The assertion (as the browser's JSON) to navigator.credentials.get()'s options, signed by this key."""
        self.counter += self.counter_step
        rp_hash = hashlib.sha256((rp_id or options["rpId"]).encode()).digest()
        auth_data = rp_hash + bytes([UP | UV]) + struct.pack(">I", self.counter)
        client_data = self._client_data("webauthn.get", options["challenge"])
        signature = self.key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        return json.dumps({"id": self.id, "rawId": self.id, "type": "public-key", "clientExtensionResults": {},
                           "response": {"clientDataJSON": bytes_to_base64url(client_data),
                                        "authenticatorData": bytes_to_base64url(auth_data),
                                        "signature": bytes_to_base64url(signature)}})


def options(client, path: str, token: str):
    """POST for a ceremony's options, as static/js/passkeys.js does (the CSRF token in the header)."""
    return client.post(path, headers={"X-CSRFToken": token})


def register(client, authenticator: SoftAuthenticator, name: str = "Laptop"):
    """Register the authenticator's passkey from the account pages (the user is signed in): the form's answer."""
    token = csrf_token_from(client.get("/account/passkeys/new").get_data(as_text=True))
    reply = options(client, "/account/passkeys/options", token)
    assert reply.status_code == 200, reply.get_data(as_text=True)
    return client.post("/account/passkeys/new", data={"csrf_token": token, "name": name,
                                                      "credential": authenticator.create(reply.get_json())})


def sign_in_options(client) -> tuple[str, dict]:
    """The second step's CSRF token and a fresh passkey request's options."""
    token = csrf_token_from(client.get("/login/two-factor").get_data(as_text=True))
    reply = options(client, "/login/two-factor/passkey/options", token)
    assert reply.status_code == 200, reply.get_data(as_text=True)
    return token, reply.get_json()


def post_assertion(client, token: str, credential: str):
    return client.post("/login/two-factor/passkey", data={"csrf_token": token, "credential": credential})


def sign_in(client, authenticator: SoftAuthenticator):
    """Pass the pending second step with the authenticator's passkey: the answer."""
    token, found = sign_in_options(client)
    return post_assertion(client, token, authenticator.get(found))
