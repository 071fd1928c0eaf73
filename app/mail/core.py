"""MailCore: how the app holds the mail settings, the transport and its sender."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flask import Flask

from app.extensions import AppPart
from app.mail.sender import Sender
from app.mail.transport import MailboxTransport, SmtpTransport

# Links in development mail when PUBLIC_BASE_URL is unset: where `make run` serves.
DEVELOPMENT_BASE_URL = "http://127.0.0.1:5000"
MAILBOX_FOLDER = "mailbox"


@dataclass
class MailCore(AppPart):
    EXTENSION = "keyfob.mail"

    from_address: str | None
    base_url: str
    sender: Sender | None  # None: mail is off (production without MAIL_URL)

    @classmethod
    def from_app(cls, app: Flask) -> MailCore:
        config = app.config
        if config["MAIL_URL"] is not None:
            transport = SmtpTransport(config["MAIL_URL"])
        elif config["KEYFOB_ENV"] in ("development", "testing"):
            transport = MailboxTransport(Path(app.instance_path) / MAILBOX_FOLDER)
        else:
            transport = None
        sender = Sender(app, transport, config["MAIL_SEND_SECONDS"]) if transport is not None else None
        return cls(from_address=config["MAIL_FROM"] or ("keyfob@localhost.localdomain" if sender else None),
                   base_url=config["PUBLIC_BASE_URL"] or DEVELOPMENT_BASE_URL, sender=sender)

    def close(self) -> None:
        if self.sender is not None:
            self.sender.stop()
