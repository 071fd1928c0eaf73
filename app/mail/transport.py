"""Where mail goes: an SMTP server named by MAIL_URL, or the development mailbox (files in the instance folder).

The standard library is enough here: smtplib speaks SMTP, STARTTLS and implicit TLS with a timeout, and
email.message.EmailMessage builds the message (outbox.py); a library would add a dependency for nothing we use.
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.parser import BytesHeaderParser
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger(__name__)
SMTP_TIMEOUT_SECONDS = 10
DEFAULT_PORTS = {"smtp": 587, "smtps": 465}
# An addr-spec we accept: printable ASCII, one @, a dotted domain. Narrower than RFC 5322 on purpose: every address
# we send to ends up in an SMTP envelope and a header, where anything odd is a risk and not a feature.
_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                      r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+")
MAX_ADDRESS = 254


def parse_address(value: str) -> str:
    """The address itself, or ValueError: no display name, no control character, no comment, at most 254 chars."""
    address = str(value).strip()
    if len(address) > MAX_ADDRESS or not _ADDRESS.fullmatch(address) or ".." in address:
        raise ValueError("is not an e-mail address such as keyfob@example.com")
    return address


@dataclass(frozen=True)
class MailUrl:
    """A parsed MAIL_URL. Its repr and str never show the password."""

    host: str
    port: int
    security: str  # "starttls", "tls" or "none"
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        user = f"{self.username}:***@" if self.username else ""
        return f"{'smtps' if self.security == 'tls' else 'smtp'}://{user}{self.host}:{self.port} ({self.security})"


def parse_mail_url(value: str) -> MailUrl:
    """`smtp://user:pass@host:587?starttls=true` or `smtps://host:465`, or ValueError whose message holds no
    password (the caller must not echo the value either)."""
    try:
        parts = urlsplit(str(value).strip())
        port = parts.port
    except ValueError:
        raise ValueError("is not an SMTP URL such as smtp://user:password@host:587?starttls=true") from None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/") or parts.fragment:
        raise ValueError("must be smtp://[user:password@]host[:port][?starttls=true] or smtps://... (TLS)")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(query) - {"starttls"}
    if unknown:
        raise ValueError(f"has unknown parameters: {', '.join(sorted(unknown))} (only starttls)")
    starttls = query.get("starttls", ["false"])[-1].lower()
    if starttls not in {"true", "false"}:
        raise ValueError("starttls must be true or false")
    if parts.scheme == "smtps":
        if starttls == "true":
            raise ValueError("smtps:// is TLS from the start: starttls does not apply")
        security = "tls"
    else:
        security = "starttls" if starttls == "true" else "none"
    if (parts.username is None) != (parts.password is None):
        raise ValueError("needs both a user and a password, or neither")
    return MailUrl(host=parts.hostname, port=port or DEFAULT_PORTS[parts.scheme], security=security,
                   username=unquote(parts.username) if parts.username else None,
                   password=unquote(parts.password) if parts.password is not None else None)


class SmtpTransport:
    """Sends through one SMTP connection per batch: opened by `open()`, closed by `close()`."""

    def __init__(self, url: MailUrl, timeout: float = SMTP_TIMEOUT_SECONDS) -> None:
        self.url, self.timeout = url, timeout
        self._smtp: smtplib.SMTP | None = None

    def open(self) -> None:
        url, context = self.url, ssl.create_default_context()
        if url.security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(url.host, url.port, timeout=self.timeout, context=context)
        else:
            smtp = smtplib.SMTP(url.host, url.port, timeout=self.timeout)
        try:
            if url.security == "starttls":
                smtp.starttls(context=context)
            if url.username:
                smtp.login(url.username, url.password or "")
        except BaseException:
            smtp.close()
            raise
        self._smtp = smtp

    def send(self, sender: str, recipient: str, raw: bytes) -> None:
        assert self._smtp is not None, "open() first"
        self._smtp.sendmail(sender, [recipient], raw)

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (smtplib.SMTPException, OSError):
                self._smtp.close()
            self._smtp = None

    def __str__(self) -> str:
        return str(self.url)


class MailboxTransport:
    """Development: each message is a `.eml` file in the instance's mailbox folder, and a line in the log."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)

    def send(self, sender: str, recipient: str, raw: bytes) -> None:
        headers = BytesHeaderParser().parsebytes(raw)
        number = len(list(self.folder.glob("*.eml")))
        while True:  # "x": create or fail, so two processes writing at once never share a file
            number += 1
            path = self.folder / f"{number:05d}-{Address(addr_spec=recipient).username}.eml"
            try:
                with path.open("xb") as file:
                    file.write(raw)
            except FileExistsError:
                continue
            break
        log.warning("development mailbox: mail to %s, %r: %s", recipient, headers["Subject"], path)

    def close(self) -> None:
        pass

    def __str__(self) -> str:
        return f"the development mailbox {self.folder}"
