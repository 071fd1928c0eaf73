"""`flask --app wsgi mail ...`: send what is due (for cron or a systemd timer), and show the outbox."""

from __future__ import annotations

import click
from flask.cli import AppGroup
from sqlalchemy import and_, select, update

from app.database import MAX_ID, utcnow
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
    waiting = db.session.scalars(select(OutboxMessage).where(OutboxMessage.sent_at.is_(None),
                                                             OutboxMessage.failed_at.is_(None))
                                 .order_by(OutboxMessage.id)).all()
    failed = db.session.scalars(select(OutboxMessage).where(OutboxMessage.failed_at.is_not(None))
                                .order_by(OutboxMessage.id)).all()
    rows = list(waiting)
    if everything:
        sent = db.session.scalars(select(OutboxMessage).where(OutboxMessage.sent_at.is_not(None))
                                  .order_by(OutboxMessage.sent_at.desc()).limit(50)).all()
        rows = list(reversed(sent)) + rows
    for message in [*failed, *rows]:
        when = (message.sent_at or message.failed_at or message.next_attempt_at).isoformat(timespec="seconds")
        line = (f"{message.id}\t{message.status()}\t{message.attempts}\t{when}\t{message.recipient}\t"
                f"{message.subject}")
        click.echo(line + (f"\t{message.last_error}" if message.last_error and not message.sent_at else ""))
    click.echo(f"{len(waiting)} waiting" + (f", {len(failed)} failed (`flask mail retry`)" if failed else ""))


@mail_cli.command("retry")
@click.argument("ids", nargs=-1, type=click.IntRange(min=1, max=MAX_ID))
@click.option("--all", "everything", is_flag=True, help="Every failed message.")
def retry(ids: tuple[int, ...], everything: bool) -> None:
    """Send failed messages again (after mending MAIL_URL or MAIL_FROM, say): IDS from `flask mail list`, or --all.
    They are due at once, with a fresh count of attempts."""
    if not ids and not everything:
        raise click.UsageError("name the messages to send again (IDS from `flask mail list`), or --all")
    chosen = OutboxMessage.failed_at.is_not(None)
    if ids:
        chosen = and_(chosen, OutboxMessage.id.in_(ids))
    result = db.session.execute(update(OutboxMessage).where(chosen)
                                .values(failed_at=None, attempts=0, next_attempt_at=utcnow()))
    db.session.commit()
    click.echo(f"{result.rowcount} messages due again")
