"""Queueing mail: the message is built here, in full, and written to the outbox in the caller's transaction, so it
exists exactly when the event that causes it does. The sender delivers it later (sender.py)."""

from __future__ import annotations

import logging
import re
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from html import escape

from app.database import utcnow
from app.extensions import db
from app.mail.core import MailCore
from app.mail.models import OutboxMessage
from app.mail.transport import parse_address

log = logging.getLogger(__name__)
MAX_SUBJECT = 200
MAX_NAME = 64
MAX_REASON = 80
NO_SETTING = "No setting turns mails like this one off."
# Every control character, CR and LF above all: in a header they would end it and start another.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]+")


def header_text(value: str, limit: int) -> str:
    """One line of at most `limit` characters: control characters become spaces, runs of spaces one."""
    return " ".join(_CONTROL.sub(" ", str(value)).split())[:limit].strip()


def queue(to: str, subject: str, text: str, html: str | None = None, *, reason: str, settings_link: str | None,
          to_name: str | None = None) -> OutboxMessage | None:
    """Add a message to the outbox in the current transaction (the caller commits). `reason` ends "You get this
    mail because ..."; `settings_link` is the path of the setting that stops it, or None for a mail no setting
    stops (about the account's security, or asked for), which the footer then says. ValueError for a bad address.
    Returns None when mail is off (production without MAIL_URL)."""
    mail = MailCore.current()
    recipient = parse_address(to)
    if mail.sender is None:
        log.info("mail is off (no MAIL_URL): not sending %r", header_text(subject, MAX_SUBJECT))
        return None
    subject = header_text(subject, MAX_SUBJECT)
    reason = header_text(reason, MAX_REASON)
    link = None if settings_link is None else mail.base_url + "/" + settings_link.lstrip("/")
    message = EmailMessage()
    message["From"] = Address("Keyfob", addr_spec=mail.from_address)
    message["To"] = Address(header_text(to_name or "", MAX_NAME), addr_spec=recipient)
    message["Subject"] = subject
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = make_msgid(domain=mail.from_address.rpartition("@")[2])
    message["Auto-Submitted"] = "auto-generated"
    stop = NO_SETTING if link is None else f"To stop mails like this one: {link}"
    message.set_content(f"{text.rstrip()}\n\n-- \nYou get this mail because {reason}.\n{stop}\n")
    if html is not None:
        stop = NO_SETTING if link is None else f"<a href=\"{escape(link)}\">Stop mails like this one</a>."
        message.add_alternative(f"{html}\n<hr>\n<p>You get this mail because {escape(reason)}. {stop}</p>\n",
                                subtype="html")
    row = OutboxMessage(recipient=recipient, sender=mail.from_address, subject=subject, reason=reason,
                        raw=message.as_string(policy=SMTP), next_attempt_at=utcnow())
    db.session.add(row)
    mail.sender.start()
    return row
