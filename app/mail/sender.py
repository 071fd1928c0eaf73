"""Sending the outbox, never on a request's time: each process has a sender thread (started by its first queued
message), and `flask mail send` does one round for cron.

Several senders (threads, processes, hosts) may run at once: a sender first claims a batch, atomically, by setting
its claimed_until; the others skip what is claimed (PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite: an UPDATE that
only succeeds on an unclaimed row). A message is marked sent after the server took it; a failure counts the attempt
and sets the next one with exponential backoff. A message the server refuses for good (a 5xx reply: no such
mailbox, rejected content) or that could not be sent for GIVE_UP_AFTER is marked failed rather than retried
forever. Nothing is ever deleted here: a message is sent, failed (and kept, with its error), or waits.
"""

from __future__ import annotations

import logging
import smtplib
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from app.database import utcnow
from app.mail.models import OutboxMessage
from app.process_thread import ProcessThread

log = logging.getLogger(__name__)
BATCH = 20
# Longer than a batch can take (each message and the connection bounded by the SMTP timeout), so that a claim only
# lapses when its sender died.
CLAIM = timedelta(minutes=15)
FIRST_RETRY = timedelta(minutes=1)
LONGEST_RETRY = timedelta(hours=6)
# How long temporary failures are retried before the message is given up (RFC 5321 4.5.4.1: "at least 4-5 days"),
# counted in attempts (the backoff's waits add up to it) so that time the sender did not run is not held against it.
GIVE_UP_AFTER = timedelta(days=5)


def backoff(attempts: int) -> timedelta:
    """How long to wait after the attempts-th failure: 1, 2, 4, ... minutes, at most 6 hours."""
    return min(FIRST_RETRY * 2 ** min(attempts - 1, 20), LONGEST_RETRY)


GIVE_UP_ATTEMPTS = next(n for n in range(1, 1000)
                        if sum((backoff(a) for a in range(1, n)), timedelta()) >= GIVE_UP_AFTER)  # 29


def describe(error: BaseException) -> str:
    """What went wrong, for last_error and the log: the error's kind and the server's words, never the settings."""
    if isinstance(error, smtplib.SMTPResponseException):
        reply = error.smtp_error
        detail = f"{error.smtp_code} {reply.decode('utf-8', 'replace') if isinstance(reply, bytes) else reply}"
    elif isinstance(error, smtplib.SMTPRecipientsRefused):
        detail = "; ".join(f"{code} {reply.decode('utf-8', 'replace')}" for code, reply in error.recipients.values())
    elif isinstance(error, OSError):
        detail = error.strerror or str(error)
    else:
        detail = str(error)
    return f"{error.__class__.__name__}: {' '.join(detail.split())}"[:500]


def connection_lost(error: BaseException) -> bool:
    """The connection is gone, so the rest of the batch cannot go through it either. (Every SMTPException is an
    OSError too: a refusal of one message leaves the connection usable.)"""
    return isinstance(error, smtplib.SMTPServerDisconnected) or (
        isinstance(error, OSError) and not isinstance(error, smtplib.SMTPException))


def is_permanent(error: BaseException) -> bool:
    """The server refused this message for good: a 5xx for its recipient or its content, so sending it again
    would fail again. A 4xx or a lost connection is worth another try, and so is a refusal that says more about
    the settings than the message (of the login, the connection or the From address: every message would get it,
    and mending MAIL_URL or MAIL_FROM should send them all)."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return bool(error.recipients) and all(code >= 500 for code, _ in error.recipients.values())
    return isinstance(error, smtplib.SMTPDataError) and 500 <= error.smtp_code < 600


@dataclass
class Round:
    sent: int = 0
    failed: int = 0


class Sender:
    def __init__(self, app, transport, interval: float) -> None:
        self._app, self.transport, self._interval = app, transport, interval
        self._thread = ProcessThread("keyfob-mail-sender", self._run)

    def start(self) -> None:
        """Make sure this process has its sender thread."""
        self._thread.ensure_started()

    def stop(self) -> None:
        self._thread.stop()

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self._interval):
            try:
                self.send_due()
            except Exception:  # keep the thread alive: the messages wait in the outbox for the next round
                log.exception("mail: sending failed; the outbox keeps the messages for the next round")

    def send_due(self, now: datetime | None = None) -> Round:
        """Send every message that is due, batch by batch, until none is left that this sender could claim."""
        total = Round()
        while True:
            done = self._send_batch(now or utcnow())
            total.sent, total.failed = total.sent + done.sent, total.failed + done.failed
            # Another sender may have claimed part of a batch: only an empty one says nothing is left. A failure
            # says the server is unwell: the rest waits for the next round.
            if not done.sent or done.failed:
                return total

    def _send_batch(self, now: datetime) -> Round:
        from app.extensions import db

        with self._app.app_context():
            ids = claim(db.engine, now, BATCH)
            if not ids:
                return Round()
            messages = db.session.scalars(select(OutboxMessage).where(OutboxMessage.id.in_(ids))
                                          .order_by(OutboxMessage.id)).all()
            db.session.rollback()
            done = Round()
            try:
                self.transport.open()
            except (smtplib.SMTPException, OSError) as error:
                for message in messages:
                    self._failed(message, error, now)
                done.failed = len(messages)
                log.warning("mail: cannot reach %s (%s); %d messages wait for the next try", self.transport,
                            describe(error), len(messages))
                return done
            try:
                for message in messages:
                    try:
                        self.transport.send(message.sender, message.recipient, message.raw.encode("utf-8"))
                    except (smtplib.SMTPException, OSError) as error:
                        self._failed(message, error, now)
                        done.failed += 1
                        log.warning("mail: message %d to %s not sent (%s); it waits for the next try", message.id,
                                    message.recipient, describe(error))
                        if connection_lost(error):
                            for rest in messages[messages.index(message) + 1:]:
                                self._failed(rest, error, now)
                                done.failed += 1
                            break
                    else:
                        self._sent(message)
                        done.sent += 1
            finally:
                self.transport.close()
            return done

    @staticmethod
    def _sent(message: OutboxMessage) -> None:
        _finish(message.id, sent_at=utcnow(), claimed_until=None, attempts=OutboxMessage.attempts + 1,
                last_error=None)

    @staticmethod
    def _failed(message: OutboxMessage, error: BaseException, now: datetime) -> None:
        attempts = message.attempts + 1
        if is_permanent(error) or attempts >= GIVE_UP_ATTEMPTS:
            log.error("mail: gave up message %d to %s after %d attempts (%s)", message.id, message.recipient,
                      attempts, describe(error))
            _finish(message.id, claimed_until=None, attempts=attempts, failed_at=now, last_error=describe(error))
            return
        _finish(message.id, claimed_until=None, attempts=attempts, next_attempt_at=now + backoff(attempts),
                last_error=describe(error))


def _finish(message_id: int, **values) -> None:
    """Write what became of a claimed message. A database down now means the message is sent again once its claim
    lapses: twice rather than never."""
    from app.extensions import db

    try:
        with db.engine.begin() as connection:
            connection.execute(update(OutboxMessage).where(OutboxMessage.id == message_id).values(**values))
    except SQLAlchemyError:
        log.exception("mail: could not record the outcome of message %d", message_id)


def claim(engine, now: datetime, limit: int) -> list[int]:
    """Claim up to `limit` due messages for this sender, atomically: no other sender gets any of them."""
    unclaimed = or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now)
    due = (select(OutboxMessage.id).where(OutboxMessage.sent_at.is_(None), OutboxMessage.failed_at.is_(None),
                                          OutboxMessage.next_attempt_at <= now, unclaimed)
           .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
           .limit(limit))
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            ids = list(connection.scalars(due.with_for_update(skip_locked=True)))
            if ids:
                connection.execute(update(OutboxMessage).where(OutboxMessage.id.in_(ids))
                                   .values(claimed_until=now + CLAIM))
        return ids
    # SQLite locks the whole database for a write: each claim is its own short write, which succeeds only on a row
    # that is still unclaimed when the write holds the lock.
    with engine.connect() as connection:
        candidates = list(connection.scalars(due))
    claimed = []
    for message_id in candidates:
        with engine.begin() as connection:
            result = connection.execute(update(OutboxMessage).where(OutboxMessage.id == message_id,
                                                                    OutboxMessage.sent_at.is_(None),
                                                                    OutboxMessage.failed_at.is_(None), unclaimed)
                                        .values(claimed_until=now + CLAIM))
        if result.rowcount == 1:
            claimed.append(message_id)
    return claimed
