"""Alerts to a key's owner: the key was suspended for its rate limit, used from a new IP network, or revoked or
disabled by someone else (an admin, or the command line).

Each alert is one function here, called by the code that makes the event (verification.py, service.py, the usage
buffer's flush), and queues its mail in that event's transaction: the mail exists exactly when the event does. Each
one honours the owner's switch on the account page (User.notify_*), and none is sent to an inactive owner. No mail
holds a secret: a key is named by its name and display start only.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import exists, func, select, update

from app.accounts.models import User
from app.audit.service import Actor
from app.database import upsert_insert
from app.extensions import db
from app.keys.models import ApiKey, KeyNetwork, Verifier
from app.keys.reminders import SETTINGS_LINK
from app.mail import outbox
from app.mail.core import MailCore

# At most one new-network mail per key within this long, however many new networks it is used from.
NETWORK_ALERT_EVERY = timedelta(hours=1)
# Rows per INSERT of networks: well under SQLite's and PostgreSQL's limits on bound parameters.
_INSERT_CHUNK = 500


def _at(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _owner_wanting(user_id: int, switch: str) -> User | None:
    """The key's owner when mail is on, the owner is active and has `switch` on; else None (no mail)."""
    if MailCore.current().sender is None:
        return None
    owner = db.session.get(User, user_id)
    return owner if owner is not None and owner.is_active and getattr(owner, switch) else None


def _queue(owner: User, key_id: int, key_name: str, subject: str, text: str) -> None:
    link = f"{MailCore.current().base_url}/keys/{key_id}"
    outbox.queue(owner.email, subject, f"{text.rstrip()}\n\nThe key's page: {link}\n",
                 reason=f"you own the API key {key_name[:30]}", settings_link=SETTINGS_LINK)


# -- suspended for its rate limit ------------------------------------------------------------------------------------

def key_suspended(key, until: datetime) -> None:
    """Tell the owner that `key` (anything with id, user_id, name, display_start and rate_limit) kept exceeding its
    rate limit and is suspended until `until`. In the suspension's transaction (the caller commits); the caller
    suspends a key once per suspension window, so this is called once per suspension."""
    owner = _owner_wanting(key.user_id, "notify_suspension")
    if owner is None:
        return
    text = (f"Your API key {key.name} kept exceeding its rate limit of {key.rate_limit} requests a minute, so "
            f"Keyfob suspended it: every request with it is refused until {_at(until)}.\n\n"
            f"Name:       {key.name}\n"
            f"Key:        {key.display_start}...\n"
            f"Suspended:  until {_at(until)}\n\n"
            "What to do: wait until then, and slow down the client that uses it (or ask for a higher limit); "
            "an admin can lift the suspension sooner.")
    _queue(owner, key.id, key.name, f"Your API key {key.name} is suspended until {_at(until)}", text)


# -- revoked or disabled by someone else -----------------------------------------------------------------------------

def key_stopped(key: ApiKey, what: str, actor: Actor, when: datetime, reason: str | None = None) -> None:
    """Tell the owner that `actor` `what` ("revoked" or "disabled") their key, unless the owner did it themselves
    (signed in, or through one of their own keys). A command-line actor is an admin. In the change's transaction
    (the caller commits)."""
    if actor.user_id == key.user_id:
        return
    owner = _owner_wanting(key.user_id, "notify_admin_action")
    if owner is None:
        return
    admin = db.session.get(User, actor.user_id) if actor.user_id is not None else None
    who = admin.email if admin is not None else (
        "an administrator, on the command line" if actor == Actor.cli() else actor.label)
    consequence = ("It stays revoked: create a new key if you still need one." if what == "revoked" else
                   "Requests with it are refused until it is enabled again.")
    text = (f"Your API key {key.name} was {what} by {who}.\n\n"
            f"Name:       {key.name}\n"
            f"Key:        {key.display_start}...\n"
            f"What:       {what}\n"
            f"By:         {who}\n"
            f"When:       {_at(when)}\n"
            f"Reason:     {reason or '(none given)'}\n\n"
            f"{consequence}")
    _queue(owner, key.id, key.name, f"Your API key {key.name} was {what} by an administrator", text)


# -- used from a new network -----------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4096)  # the usage buffer asks for every valid use: a known address costs a lookup
def network_of(ip: str) -> str | None:
    """The network an address belongs to for "used from somewhere new": its IPv4 /24 or IPv6 /64, as text. An
    IPv4-mapped IPv6 address (::ffff:203.0.113.7) counts as the IPv4 address it is. None for no address."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.version == 4:
        return str(ipaddress.IPv4Network((int(address), 24), strict=False))
    return str(ipaddress.IPv6Network((int(address), 64), strict=False))  # int(): no %zone in the network


@dataclass(frozen=True, slots=True)
class Sighting:
    """The first use of a key from a network since the last flush: from which address, when, and through which
    verifier credential (None: on Keyfob's own routes or with none)."""

    ip: str
    at: datetime
    verifier_id: int | None = None


def record_networks(sightings: Mapping[int, Mapping[str, Sighting]], now: datetime) -> int:
    """Record the networks each key was used from (key id -> network -> its first sighting), and queue a mail to
    each owner whose key was used from a network it had never been used from before. Returns the mails queued.

    One transaction: the networks are inserted with ON CONFLICT DO NOTHING ... RETURNING, so only the process that
    inserts a network first sees it as new; a key's very first network is where the key is used, not news, and
    tells no one. A key gets at most one mail per NETWORK_ALERT_EVERY, claimed by _claim_alert() in the same
    transaction as its mail. Commits."""
    alerts_on = MailCore.current().sender is not None
    existing = set(db.session.scalars(select(ApiKey.id).where(ApiKey.id.in_(list(sightings))))) if sightings else set()
    rows = [{"key_id": key_id, "network": network, "first_seen_at": seen.at}
            for key_id, networks in sorted(sightings.items()) if key_id in existing
            for network, seen in sorted(networks.items())]
    insert = upsert_insert(db.engine.dialect)
    new: dict[int, list[str]] = {}
    for start in range(0, len(rows), _INSERT_CHUNK):
        statement = insert(KeyNetwork).values(rows[start:start + _INSERT_CHUNK]).on_conflict_do_nothing()
        for key_id, network in db.session.execute(statement.returning(KeyNetwork.key_id, KeyNetwork.network)):
            new.setdefault(key_id, []).append(network)
    queued = 0
    if new and alerts_on:
        totals = dict(db.session.execute(select(KeyNetwork.key_id, func.count()).where(
            KeyNetwork.key_id.in_(new)).group_by(KeyNetwork.key_id)).all())
        for key_id in sorted(new):  # in key order, as the usage flush locks keys: no deadlock between the two
            seen = sightings[key_id]
            news = sorted(new[key_id], key=lambda network: (seen[network].at, network))
            if totals.get(key_id, 0) == len(news):
                news = news[1:]  # the key had no network before: its first one is where it is used, not news
            if news:
                queued += _new_network_alert(key_id, [(network, seen[network]) for network in news], now)
    db.session.commit()
    return queued


def _claim_alert(key_id: int, networks: list[str], now: datetime) -> bool:
    """Mark `networks` of the key as alerted at `now`, unless any network of the key was alerted within the last
    NETWORK_ALERT_EVERY: True when this transaction may send the mail.

    Atomic across processes and hosts. The claim is one conditional UPDATE (... WHERE NOT EXISTS an alert within the
    hour), but two processes may claim different networks' rows, which no row lock would order; so each first locks
    the key's row (FOR NO KEY UPDATE, which leaves the key_networks foreign-key checks free). On PostgreSQL the
    second waits for the first to commit, and its UPDATE, a new statement, then sees the first's alerted_at and
    claims nothing. SQLite has one writer at a time, and this transaction has written since its INSERT."""
    locked = db.session.execute(select(ApiKey.id).where(ApiKey.id == key_id)
                                .with_for_update(of=ApiKey, key_share=True)).scalar()
    if locked is None:
        return False
    table = KeyNetwork.__table__
    recent = table.alias("recent")
    claimed = db.session.execute(
        update(table).where(table.c.key_id == key_id, table.c.network.in_(networks),
                            ~exists().where(recent.c.key_id == key_id,
                                            recent.c.alerted_at > now - NETWORK_ALERT_EVERY))
        .values(alerted_at=now))
    return claimed.rowcount > 0


def _new_network_alert(key_id: int, news: list[tuple[str, Sighting]], now: datetime) -> int:
    """Queue the mail about the key's new networks if its owner wants it and no other was sent within the hour
    (_claim_alert): 1 when queued, else 0."""
    key = db.session.get(ApiKey, key_id)
    owner = _owner_wanting(key.user_id, "notify_new_network") if key is not None else None
    if owner is None or not _claim_alert(key_id, [network for network, _ in news], now):
        return 0
    verifiers = {seen.verifier_id for _, seen in news if seen.verifier_id is not None}
    names = dict(db.session.execute(select(Verifier.id, Verifier.name).where(Verifier.id.in_(verifiers))).all()
                 ) if verifiers else {}
    lines = []
    for network, seen in news:
        where = f", checked by the service {names[seen.verifier_id]}" if seen.verifier_id in names else ""
        lines.append(f"- {network}: from {seen.ip} at {_at(seen.at)}{where}")
    text = (f"Your API key {key.name} was used from an IP network it had not been used from before.\n\n"
            f"Name:       {key.name}\n"
            f"Key:        {key.display_start}...\n"
            f"New network{'s' if len(lines) > 1 else ''}:\n" + "\n".join(lines) + "\n\n"
            "If this was you or a service of yours, there is nothing to do. If it was not, revoke the key, or rotate "
            "it to give its clients a new secret, on its page. Keyfob tells you about new networks at most once an "
            "hour per key.")
    _queue(owner, key.id, key.name, f"Your API key {key.name} was used from a new network", text)
    return 1
