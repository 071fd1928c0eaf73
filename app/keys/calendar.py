"""The expiry calendar: an owner's key expiries as an iCalendar feed (RFC 5545) that calendar apps subscribe to.

Which keys: those with an expiry that are not revoked, as in the dashboard's renewal list: disabled keys too (they
can be enabled again before they expire) and keys that expired in the last EXPIRED_LISTED_DAYS (30) days, so an
expiry that just passed stays in view; older ones drop out, as they do from the renewal list.

Each expiry is a timed event at the exact moment in UTC, not an all-day one: a key ends at an instant, and a calendar
shows a UTC time in its own zone, whereas an all-day event on the UTC date would sit on the wrong day for half the
world (a key expiring at 01:00 UTC ends the evening before in the Americas). The event lasts EVENT_LENGTH and is
marked free (TRANSP:TRANSPARENT) so it never blocks time; keys still to expire carry reminders 7 days and 1 day
before. Its UID names the key and its expiry: a renewal makes a new event and the old one leaves the feed.

build_calendar() is pure: given the keys, the time and the site's address, it writes the text, with TEXT values
escaped (RFC 5545 3.3.11), CRLF line endings, and lines folded at 75 octets without splitting a UTF-8 character.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from app import dates
from app.accounts.models import User
from app.keys import policy, queries
from app.keys.models import ApiKey

PRODID = "-//Keyfob//API key expiries//EN"
CONTENT_TYPE = "text/calendar; charset=utf-8"
EXPIRED_SHOWN_DAYS = policy.EXPIRED_LISTED_DAYS
EVENT_LENGTH = timedelta(minutes=15)
REMINDERS = (timedelta(days=7), timedelta(days=1))
# How often a calendar app should fetch the feed again (RFC 7986 REFRESH-INTERVAL; X-PUBLISHED-TTL for Outlook).
REFRESH = "PT1H"
LINE_OCTETS = 75
CRLF = "\r\n"
# Characters RFC 5545 allows in no TEXT value (controls other than the tab; line breaks are escaped before this).
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class CalendarKey:
    """What the feed says about one key: never its secret, only what the key's page shows anyone signed in as its
    owner."""

    id: int
    name: str
    display_start: str
    scopes: tuple[str, ...]
    expires_at: datetime
    disabled: bool = False

    @classmethod
    def of(cls, key: ApiKey) -> CalendarKey:
        return cls(key.id, key.name, key.display_start, key.scopes, key.expires_at, key.disabled)


def escape_text(value: str) -> str:
    """A TEXT value as RFC 5545 3.3.11 writes it: backslash, semicolon and comma escaped, every line break (CRLF, CR
    or LF) as \\n, and other control characters, which TEXT may not hold, shown as U+FFFD."""
    value = value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
    return _CONTROLS.sub("\ufffd", _LINE_BREAK.sub("\\\\n", value))


def fold(line: str) -> str:
    """A content line folded as RFC 5545 3.1 asks: no line longer than 75 octets of UTF-8 (CRLF aside), each
    continuation starting with one space, and never a break inside a multi-octet character."""
    if len(line.encode()) <= LINE_OCTETS:
        return line
    pieces, current, size = [], [], 0
    for char in line:
        octets = len(char.encode())
        if size + octets > LINE_OCTETS:
            pieces.append("".join(current))
            current, size = [" "], 1  # the space that marks a continuation counts towards its line
        current.append(char)
        size += octets
    pieces.append("".join(current))
    return CRLF.join(pieces)


def utc_stamp(moment: datetime) -> str:
    """A DATE-TIME in UTC form (RFC 5545 3.3.5, form 2), such as 20250301T120000Z."""
    return moment.strftime("%Y%m%dT%H%M%SZ")


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _event(key: CalendarKey, *, now: datetime, base_url: str, host: str) -> list[tuple[str, str]]:
    """One VEVENT as (property, value) pairs, values already in their written form."""
    link = f"{base_url}/keys/{key.id}"
    summary = f"API key {key.name} expires"
    details = [f"Key: {key.display_start}...", f"Scopes: {' '.join(key.scopes) or '(none)'}",
               f"Expires: {_when(key.expires_at)}"]
    if key.disabled:
        details.append("The key is disabled: enable it before it expires if you still need it.")
    details.append(f"Renew or rotate it on its page: {link}")
    lines = [
        ("BEGIN", "VEVENT"),
        ("UID", f"key-{key.id}-{int(key.expires_at.timestamp())}@{host}"),
        ("DTSTAMP", utc_stamp(now)),
        ("DTSTART", utc_stamp(key.expires_at)),
        ("DTEND", utc_stamp(key.expires_at + EVENT_LENGTH)),
        ("SUMMARY", escape_text(summary)),
        ("DESCRIPTION", escape_text("\n".join(details))),
        ("URL", link),
        ("TRANSP", "TRANSPARENT"),
    ]
    if key.expires_at > now:  # a reminder of an expiry that has passed would only pop up late
        for before in REMINDERS:
            lines += [("BEGIN", "VALARM"), ("ACTION", "DISPLAY"),
                      ("DESCRIPTION", escape_text(f"API key {key.name} expires in {before.days} "
                                                  f"day{'s' if before.days != 1 else ''}")),
                      ("TRIGGER", f"-P{before.days}D"), ("END", "VALARM")]
    lines.append(("END", "VEVENT"))
    return lines


def build_calendar(keys: Iterable[CalendarKey], *, now: datetime, base_url: str) -> str:
    """The whole feed for these keys, as of `now`, with links to the key pages under `base_url` (such as
    https://keys.example.com, without a trailing slash). An owner with no key to show gets a calendar with no
    event, which every calendar app takes as an empty calendar."""
    host = urlsplit(base_url).hostname or "keyfob"
    lines = [
        ("BEGIN", "VCALENDAR"),
        ("VERSION", "2.0"),
        ("PRODID", PRODID),
        ("CALSCALE", "GREGORIAN"),
        ("METHOD", "PUBLISH"),
        ("X-WR-CALNAME", escape_text(f"Keyfob API key expiries ({host})")),
        ("X-WR-CALDESC", escape_text(f"When your API keys on {host} expire. Renew or rotate them before then.")),
        ("REFRESH-INTERVAL;VALUE=DURATION", REFRESH),
        ("X-PUBLISHED-TTL", REFRESH),
    ]
    for key in keys:
        lines += _event(key, now=now, base_url=base_url, host=host)
    lines.append(("END", "VCALENDAR"))
    return "".join(fold(f"{name}:{value}") + CRLF for name, value in lines)


def keys_in_calendar(owner: User, now: datetime) -> Sequence[ApiKey]:
    """The owner's keys the feed shows (see the module's docstring), soonest expiry first."""
    # Every expiry a key can have: forms and the API bound dates by dates.LATEST.
    every_future_day = (dates.LATEST - now.date()).days + 1
    return queries.expiring(owner, every_future_day, expired_within_days=EXPIRED_SHOWN_DAYS, now=now)


def expiry_calendar(owner: User, now: datetime, base_url: str) -> str:
    """The owner's expiry calendar as of `now`."""
    return build_calendar([CalendarKey.of(key) for key in keys_in_calendar(owner, now)], now=now, base_url=base_url)
