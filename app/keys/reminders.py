"""Expiry reminders: a mail to a key's owner 30, 7 and 1 days before the key expires, and when it has expired.

Each reminder is recorded in key_reminders (unique per key, threshold and expiry date) in the same transaction as
its queued mail, so a run sends only what no run sent before: `flask keys remind` is safe every minute, on any
number of hosts at once. A renewal moves expires_at, and the reminders start over for the new date.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, exists, select

from app.accounts.models import User
from app.database import upsert_insert
from app.extensions import db
from app.keys.models import ApiKey, KeyReminder
from app.mail import outbox
from app.mail.core import MailCore

# Days before expiry, least urgent first; "expired" comes after the last.
THRESHOLDS = (("30d", timedelta(days=30)), ("7d", timedelta(days=7)), ("1d", timedelta(days=1)))
EXPIRED = "expired"
# The expired mail goes out within this long of the expiry: a key that ended long before reminders began gets none.
EXPIRED_WINDOW = timedelta(days=7)
# The account page's notification settings, where the owner switches these mails (and the alerts) off.
SETTINGS_LINK = "/account#notifications"


@dataclass(frozen=True)
class DueReminder:
    """What a reminder mail says, read before any write so that each reminder is its own short transaction."""

    key_id: int
    threshold: str
    name: str
    display_start: str
    scopes: tuple[str, ...]
    expires_at: datetime
    last_used_at: datetime | None
    owner_email: str


def threshold_due(expires_at: datetime, now: datetime) -> str | None:
    """The most urgent reminder due for a key expiring at `expires_at`, or None when none is."""
    if expires_at <= now:
        return EXPIRED if now - expires_at <= EXPIRED_WINDOW else None
    due = None
    for threshold, before in THRESHOLDS:
        if expires_at - now <= before:
            due = threshold
    return due


def due_reminders(now: datetime) -> list[DueReminder]:
    """The reminders due now and not sent yet: keys neither revoked nor disabled, of active owners who want expiry
    reminders, one each. An owner who switched them off is skipped, not recorded: switched back on, the next
    reminder due goes out."""
    threshold = case((ApiKey.expires_at <= now, EXPIRED),
                     *((ApiKey.expires_at <= now + before, name) for name, before in reversed(THRESHOLDS)))
    sent = exists().where(KeyReminder.key_id == ApiKey.id, KeyReminder.expires_at == ApiKey.expires_at,
                          KeyReminder.threshold == threshold)
    rows = db.session.execute(
        select(ApiKey, User.email).join(ApiKey.owner)
        .where(ApiKey.expires_at.is_not(None), ApiKey.expires_at > now - EXPIRED_WINDOW,
               ApiKey.expires_at <= now + THRESHOLDS[0][1], ApiKey.revoked_at.is_(None),
               ApiKey.disabled.is_(False), User.is_active.is_(True),
               User.notify_expiry.is_(True), ~sent)
        .order_by(ApiKey.id)).all()
    return [DueReminder(key.id, threshold_due(key.expires_at, now), key.name, key.display_start, key.scopes,
                        key.expires_at, key.last_used_at, email) for key, email in rows]


def _record(reminder: DueReminder, now: datetime) -> bool:
    """Insert the reminder's row; False when another run already has (the unique constraint), without an error."""
    insert = upsert_insert(db.engine.dialect)
    statement = insert(KeyReminder).values(key_id=reminder.key_id, threshold=reminder.threshold,
                                           expires_at=reminder.expires_at, sent_at=now).on_conflict_do_nothing()
    return db.session.execute(statement.returning(KeyReminder.id)).scalar() is not None


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "never"


def reminder_mail(reminder: DueReminder, base_url: str) -> tuple[str, str]:
    """The subject and plain text of a reminder: what the key is and where to renew or rotate it. Never a secret."""
    if reminder.threshold == EXPIRED:
        subject, ending = f"Your API key {reminder.name} has expired", "has expired"
    else:
        days = int(reminder.threshold.removesuffix("d"))
        ending = "expires tomorrow" if days == 1 else f"expires in {days} days"
        subject = f"Your API key {reminder.name} {ending}"
    link = f"{base_url}/keys/{reminder.key_id}"
    text = (f"Your API key {reminder.name} {ending} ({_when(reminder.expires_at)}).\n\n"
            f"Name:       {reminder.name}\n"
            f"Key:        {reminder.display_start}...\n"
            f"Scopes:     {' '.join(reminder.scopes) or '(none)'}\n"
            f"Expires:    {_when(reminder.expires_at)}\n"
            f"Last used:  {_when(reminder.last_used_at)}\n\n"
            f"Renew or rotate it on its page: {link}\n")
    return subject, text


def send_due_reminders(now: datetime) -> int:
    """Queue every expiry reminder due at `now` that was not sent before; returns how many were queued. With mail
    off (production without MAIL_URL) nothing is queued nor recorded, so the reminders wait for mail to be on."""
    mail = MailCore.current()
    if mail.sender is None:
        return 0
    due = due_reminders(now)
    db.session.rollback()  # end the read: each reminder below is its own short write
    queued = 0
    for reminder in due:
        if not _record(reminder, now):
            db.session.rollback()
            continue
        subject, text = reminder_mail(reminder, mail.base_url)
        expiry = "expired" if reminder.threshold == EXPIRED else "expires"
        outbox.queue(reminder.owner_email, subject, text,
                     reason=f"you own the API key {reminder.name[:30]}, which {expiry} {reminder.expires_at:%Y-%m-%d}",
                     settings_link=SETTINGS_LINK)
        db.session.commit()
        queued += 1
    return queued
