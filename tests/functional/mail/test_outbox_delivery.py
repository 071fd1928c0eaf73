"""The outbox through a real SMTP server: delivered with its headers and plain-text part, kept and retried while
the server is down, sent once by two senders at once, and no header injected by a subject or a name."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from app.database import utcnow
from app.extensions import db
from app.mail.core import MailCore
from app.mail.models import OutboxMessage
from app.mail.outbox import queue
from tests.functional.mail.conftest import mail_settings
from tests.functional.mail.mail_helpers import all_at_once


def _queue_one(app, **overrides):
    values = {"to": "ada@example.com", "subject": "Your key expires soon", "text": "Key billing sync expires.",
              "reason": "you own a key that expires", "settings_link": "/account#notifications", **overrides}
    with app.app_context():
        row = queue(values.pop("to"), values.pop("subject"), values.pop("text"), **values)
        db.session.commit()
        return row.id


def _outbox(app) -> list[OutboxMessage]:
    with app.app_context():
        return list(db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def test_a_queued_message_is_delivered_with_its_headers_and_plain_text(apps, smtp):
    app = apps(**mail_settings(smtp))
    _queue_one(app, html="<p>Key <b>billing sync</b> expires.</p>")
    assert smtp.recorder.received == []  # queueing sends nothing

    done = MailCore.of(app).sender.send_due()

    assert (done.sent, done.failed) == (1, 0)
    [(envelope_from, envelope_to, _)] = smtp.recorder.received
    assert (envelope_from, envelope_to) == ("keyfob@example.com", ["ada@example.com"])
    [message] = smtp.recorder.messages()
    assert message["To"] == "ada@example.com"
    assert message["From"] == "Keyfob <keyfob@example.com>"
    assert message["Subject"] == "Your key expires soon"
    assert message["Message-ID"].endswith("@example.com>")
    assert message["Auto-Submitted"] == "auto-generated"
    text = message.get_body(("plain",)).get_content()
    assert "Key billing sync expires." in text
    assert "You get this mail because you own a key that expires." in text
    assert "https://keys.example.com/account#notifications" in text
    assert "https://keys.example.com/account#notifications" in message.get_body(("html",)).get_content()
    [row] = _outbox(app)
    assert row.sent_at is not None and row.attempts == 1 and row.last_error is None
    assert MailCore.of(app).sender.send_due().sent == 0  # never twice


def test_smtp_down_keeps_the_message_and_counts_the_attempt_until_it_is_back(apps, smtp_down):
    app = apps(**mail_settings(smtp_down))
    _queue_one(app)

    first = MailCore.of(app).sender.send_due()

    assert (first.sent, first.failed) == (0, 1)
    [row] = _outbox(app)
    assert row.sent_at is None and row.attempts == 1 and row.claimed_until is None
    assert row.next_attempt_at > utcnow() + timedelta(seconds=30)
    assert row.last_error.startswith("ConnectionRefusedError")
    assert MailCore.of(app).sender.send_due().failed == 0  # not due yet: the backoff holds

    smtp_down.start()
    later = MailCore.of(app).sender.send_due(now=row.next_attempt_at + timedelta(seconds=1))

    assert later.sent == 1
    assert len(smtp_down.recorder.received) == 1
    [row] = _outbox(app)
    assert row.sent_at is not None and row.attempts == 2


@pytest.mark.parametrize("senders", [2, 4])
def test_senders_at_once_deliver_each_message_exactly_once(apps, smtp, senders):
    settings = mail_settings(smtp)
    instances = [apps("shared", **settings) for _ in range(senders)]  # processes on one database
    for number in range(45):
        _queue_one(instances[0], subject=f"message {number}")
    all_at_once(lambda app: MailCore.of(app).sender.send_due(), instances)

    subjects = sorted(message["Subject"] for message in smtp.recorder.messages())
    assert subjects == sorted(f"message {number}" for number in range(45))
    assert all(row.sent_at is not None for row in _outbox(instances[0]))


def test_a_header_injecting_subject_or_name_never_reaches_the_smtp_headers(apps, smtp):
    app = apps(**mail_settings(smtp))
    _queue_one(app, subject="Hello\r\nBcc: mallory@evil.example\r\n\r\nforged body",
               to_name="Ada\r\nBcc: mallory@evil.example" + "x" * 500)

    MailCore.of(app).sender.send_due()

    [(_, envelope_to, raw)] = smtp.recorder.received
    assert envelope_to == ["ada@example.com"]
    headers = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nBcc:" not in headers and not headers.startswith(b"Bcc:")
    [message] = smtp.recorder.messages()
    assert message["Bcc"] is None
    assert message["Subject"] == "Hello Bcc: mallory@evil.example forged body"
    assert message["To"].addresses[0].addr_spec == "ada@example.com"
    assert len(message["To"].addresses[0].display_name) <= 64


@pytest.mark.parametrize("address", ["ada@example.com\r\nBcc: mallory@evil.example", "Ada <ada@example.com>",
                                     "ada@example.com, mallory@evil.example", "not an address", "a" * 250 + "@x.io"])
def test_a_bad_recipient_is_refused_before_anything_is_queued(apps, smtp, address):
    app = apps(**mail_settings(smtp))
    with pytest.raises(ValueError, match="e-mail address"):
        _queue_one(app, to=address)
    assert _outbox(app) == []


def test_a_mail_no_setting_stops_says_so_instead_of_linking_to_one(apps, smtp):
    app = apps(**mail_settings(smtp))
    _queue_one(app, settings_link=None, reason="it is about signing in to your account", html="<p>Signed in.</p>")

    MailCore.of(app).sender.send_due()

    [message] = smtp.recorder.messages()
    for part in ("plain", "html"):
        body = message.get_body((part,)).get_content()
        assert "You get this mail because it is about signing in to your account." in body
        assert "No setting turns mails like this one off." in body
        assert "Stop mails" not in body and "To stop mails" not in body and "https://keys.example.com" not in body
