"""The key format, pure functions only: `<prefix>_<27 random base62><6 base62 CRC32 checksum>`.

27 base62 characters carry 160.8 bits from `secrets`; base62 has no punctuation, so a double-click selects the whole
key. The checksum lets a typo or garbage be refused before any database work. Only an HMAC-SHA256 of the key under a
server-side pepper is stored: a 160-bit random secret needs no slow hash, and without the pepper a stolen database
cannot even be used to test guesses.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib
from dataclasses import dataclass
from functools import lru_cache

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
RANDOM_LENGTH = 27
CHECKSUM_LENGTH = 6
DISPLAY_RANDOM_CHARS = 6
PREFIX_PATTERN = re.compile(r"[a-z][a-z0-9]{0,15}")


def base62(number: int, width: int) -> str:
    """`number` in base62, left-padded with zeros to exactly `width` characters."""
    chars = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        chars.append(ALPHABET[digit])
    if number:
        raise ValueError("number too large for width")
    return "".join(reversed(chars))


def checksum(body: str) -> str:
    return base62(zlib.crc32(body.encode("ascii")), CHECKSUM_LENGTH)


def scanner_regex(prefix: str) -> str:
    """The pattern a secret scanner can use to find leaked keys of this deployment."""
    return rf"\b{re.escape(prefix)}_[0-9A-Za-z]{{{RANDOM_LENGTH + CHECKSUM_LENGTH}}}\b"


def generate(prefix: str) -> str:
    body = f"{prefix}_{base62(secrets.randbelow(62 ** RANDOM_LENGTH), RANDOM_LENGTH)}"
    return body + checksum(body)


@dataclass(frozen=True)
class ParsedKey:
    prefix: str
    random: str

    @property
    def display_start(self) -> str:
        """Prefix and the first random characters: enough to recognise a key, useless to an attacker."""
        return f"{self.prefix}_{self.random[:DISPLAY_RANDOM_CHARS]}"


def key_length(prefix: str) -> int:
    return len(prefix) + 1 + RANDOM_LENGTH + CHECKSUM_LENGTH


def parse(token: str, prefix: str) -> ParsedKey | None:
    """The key's parts when `token` is well formed for this prefix with a correct checksum, else None."""
    if not isinstance(token, str) or len(token) != key_length(prefix) or not token.startswith(prefix + "_"):
        return None
    body, check = token[:-CHECKSUM_LENGTH], token[-CHECKSUM_LENGTH:]
    random = body[len(prefix) + 1:]
    tail = token[len(prefix) + 1:]
    # ASCII letters and digits are exactly base62; two C-level string tests, on every guarded request.
    if not (tail.isascii() and tail.isalnum()):
        return None
    if not hmac.compare_digest(checksum(body), check):
        return None
    return ParsedKey(prefix=prefix, random=random)


def digest(pepper: bytes, token: str) -> str:
    """What is stored and looked up: HMAC-SHA256 under the pepper, as 64 hex characters."""
    mac = _keyed(pepper).copy()  # the pepper's HMAC state, keyed once: a copy costs less than keying again
    mac.update(token.encode("ascii"))
    return mac.hexdigest()


@lru_cache(maxsize=8)
def _keyed(pepper: bytes) -> hmac.HMAC:
    return hmac.new(pepper, digestmod=hashlib.sha256)
