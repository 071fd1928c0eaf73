"""`flask --app wsgi mail ...`: send what is due (for cron or a systemd timer), and show the outbox."""

from __future__ import annotations

import click
from flask.cli import AppGroup
from sqlalchemy import select

from app.extensions import db
from app.mail.core import MailCore
from app.mail.models import OutboxMessage

mail_cli = AppGroup("mail", help="Send the outbox and show it.")


@mail_cli.command("send")
def send() -> None:
    """Send every message that is due now. Safe to run every minute, on any number of hosts at once."""
    sender = MailCore.current().sender
    if sender is None:
        raise click.ClickException("mail is off: set MAIL_URL (and MAIL_FROM, PUBLIC_BASE_URL)")
    done = sender.send_due()
    click.echo(f"sent {done.sent}, failed {done.failed} (they wait for their next try)")


@mail_cli.command("list")
@click.option("--all", "everything", is_flag=True, help="Also the 50 messages sent last.")
def list_outbox(everything: bool) -> None:
    """The messages waiting to be sent, oldest first: id, status, attempts, next try, recipient, subject, error."""
    waiting = db.session.scalars(select(OutboxMessage).where(OutboxMessage.sent_at.is_(None))
                                 .order_by(OutboxMessage.id)).all()
    rows = list(waiting)
    if everything:
        sent = db.session.scalars(select(OutboxMessage).where(OutboxMessage.sent_at.is_not(None))
                                  .order_by(OutboxMessage.sent_at.desc()).limit(50)).all()
        rows = list(reversed(sent)) + rows
    for message in rows:
        when = (message.sent_at or message.next_attempt_at).isoformat(timespec="seconds")
        line = (f"{message.id}\t{message.status()}\t{message.attempts}\t{when}\t{message.recipient}\t"
                f"{message.subject}")
        click.echo(line + (f"\t{message.last_error}" if message.last_error and not message.sent_at else ""))
    click.echo(f"{len(waiting)} waiting")
