"""What the mail tests read of the mail: deliver the outbox to the SMTP server, and the plain-text part."""

from __future__ import annotations

from app.mail.core import MailCore


def delivered(app, smtp) -> list:
    """Deliver the outbox, then every message the SMTP server received so far."""
    MailCore.of(app).sender.send_due()
    return smtp.recorder.messages()


def text_of(message) -> str:
    return message.get_body(("plain",)).get_content()
