"""What the sender does with a message the server refuses: a 5xx for its recipient or content is given up at once
(kept, with the server's words, never retried by itself), a 4xx is retried with backoff until the attempts add up
to five days, and `flask mail retry` makes failed messages due again."""

from __future__ import annotations

import smtplib

import pytest
from sqlalchemy import select, update

from app.database import utcnow
from app.extensions import db
from app.mail.core import MailCore
from app.mail.models import OutboxMessage
from app.mail.outbox import queue
from app.mail.sender import GIVE_UP_ATTEMPTS, connection_lost, is_permanent
from tests.functional.mail.conftest import mail_settings


def _queue(app, *recipients: str) -> None:
    with app.app_context():
        for to in recipients:
            queue(to, "Your key expires soon", "Key billing sync expires.", reason="you own a key",
                  settings_link="/account#notifications")
        db.session.commit()


def _rows(app) -> dict[str, OutboxMessage]:
    with app.app_context():
        return {row.recipient: row for row in db.session.scalars(select(OutboxMessage))}


def test_a_recipient_refused_for_good_is_given_up_and_the_others_are_sent(apps, smtp):
    app = apps(**mail_settings(smtp))
    smtp.recorder.refuse_recipients["gone@example.com"] = "550 5.1.1 No such user here"
    _queue(app, "ada@example.com", "gone@example.com", "bob@example.com")

    done = MailCore.of(app).sender.send_due()

    assert (done.sent, done.failed) == (2, 1)
    assert sorted(to for _, [to], _ in smtp.recorder.received) == ["ada@example.com", "bob@example.com"]
    gone = _rows(app)["gone@example.com"]
    assert gone.status() == "failed" and gone.failed_at is not None and gone.attempts == 1
    assert gone.last_error == "SMTPRecipientsRefused: 550 5.1.1 No such user here"
    # Never picked up again by itself, however late the next round.
    later = MailCore.of(app).sender.send_due(now=utcnow().replace(year=utcnow().year + 1))
    assert (later.sent, later.failed) == (0, 0)


def test_refused_content_is_given_up_but_a_temporary_refusal_is_retried(apps, smtp):
    app = apps(**mail_settings(smtp))
    smtp.recorder.data_reply = "451 4.3.0 Try again later"
    _queue(app, "ada@example.com")

    assert MailCore.of(app).sender.send_due().failed == 1
    row = _rows(app)["ada@example.com"]
    assert row.status() == "retrying" and row.failed_at is None and row.next_attempt_at > utcnow()

    smtp.recorder.data_reply = "554 5.6.0 Message rejected"
    assert MailCore.of(app).sender.send_due(now=row.next_attempt_at).failed == 1
    row = _rows(app)["ada@example.com"]
    assert row.status() == "failed" and row.attempts == 2 and row.last_error.startswith("SMTPDataError: 554")


def test_temporary_failures_give_up_when_the_attempts_add_up_to_five_days(apps, smtp):
    app = apps(**mail_settings(smtp))
    smtp.recorder.data_reply = "421 4.7.0 Too busy"
    _queue(app, "ada@example.com", "bob@example.com")
    with app.app_context():
        db.session.execute(update(OutboxMessage).where(OutboxMessage.recipient == "ada@example.com")
                           .values(attempts=GIVE_UP_ATTEMPTS - 1))
        db.session.commit()

    assert MailCore.of(app).sender.send_due().failed == 2

    rows = _rows(app)
    assert rows["ada@example.com"].status() == "failed"
    assert rows["bob@example.com"].status() == "retrying"


def test_mail_retry_makes_failed_messages_due_and_list_shows_them(apps, smtp):
    app = apps(**mail_settings(smtp))
    smtp.recorder.refuse_recipients["ada@example.com"] = "550 5.1.1 Mailbox full for good"
    _queue(app, "ada@example.com")
    MailCore.of(app).sender.send_due()
    runner = app.test_cli_runner()

    listed = runner.invoke(args=["mail", "list"])
    assert "\tfailed\t1\t" in listed.output and "550 5.1.1 Mailbox full for good" in listed.output
    assert listed.output.rstrip().endswith("0 waiting, 1 failed (`flask mail retry`)")
    refused = runner.invoke(args=["mail", "retry"])
    assert refused.exit_code == 2 and "--all" in refused.output
    assert runner.invoke(args=["mail", "retry", "99999"]).output.strip() == "0 messages due again"

    del smtp.recorder.refuse_recipients["ada@example.com"]
    assert runner.invoke(args=["mail", "retry", "--all"]).output.strip() == "1 messages due again"
    assert MailCore.of(app).sender.send_due().sent == 1
    row = _rows(app)["ada@example.com"]
    assert row.status() == "sent" and row.attempts == 1
    assert runner.invoke(args=["mail", "list"]).output.strip() == "0 waiting"


@pytest.mark.parametrize("error, permanent", [
    (smtplib.SMTPRecipientsRefused({"a@example.com": (550, b"no such user")}), True),
    (smtplib.SMTPRecipientsRefused({"a@example.com": (550, b"no"), "b@example.com": (450, b"later")}), False),
    (smtplib.SMTPDataError(554, b"rejected"), True),
    (smtplib.SMTPDataError(451, b"later"), False),
    # Refusals of the settings, not of this message: every message would get them; they wait for a fix.
    (smtplib.SMTPSenderRefused(550, b"not your domain", "keyfob@example.com"), False),
    (smtplib.SMTPAuthenticationError(535, b"bad credentials"), False),
    (smtplib.SMTPConnectError(554, b"no service"), False),
    (smtplib.SMTPServerDisconnected("gone"), False),
    (ConnectionRefusedError(111, "Connection refused"), False),
])
def test_only_a_refusal_of_the_message_itself_is_permanent(error, permanent):
    assert is_permanent(error) is permanent


@pytest.mark.parametrize("error, lost", [
    (smtplib.SMTPServerDisconnected("gone"), True),
    (ConnectionResetError(104, "Connection reset by peer"), True),
    (TimeoutError("timed out"), True),
    # SMTPException is an OSError too, but a refused message leaves the connection usable for the next.
    (smtplib.SMTPRecipientsRefused({"a@example.com": (550, b"no")}), False),
    (smtplib.SMTPDataError(451, b"later"), False),
])
def test_only_a_lost_connection_fails_the_rest_of_the_batch(error, lost):
    assert connection_lost(error) is lost
