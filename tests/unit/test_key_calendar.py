"""The expiry calendar's writer (app/keys/calendar.py): TEXT escaping, line folding by UTF-8 octets, the calendar's
shape, and its output read back by a real iCalendar parser."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import icalendar
import pytest

from app.keys.calendar import CalendarKey, build_calendar, escape_text, fold, utc_stamp

NOW = datetime(2026, 12, 1, 3, 4, 5, tzinfo=UTC)
BASE = "https://keys.example.com"


def key(**fields) -> CalendarKey:
    values = {"id": 7, "name": "billing sync", "display_start": "kf_cVo3KB", "scopes": ("read:data", "write:data"),
              "expires_at": NOW + timedelta(days=20, hours=5), "disabled": False, **fields}
    return CalendarKey(**values)


def unfold(text: str) -> list[str]:
    """The content lines of a calendar: CRLF followed by a space joins a line to the one before (RFC 5545 3.1)."""
    assert text.endswith("\r\n")
    return text[:-2].replace("\r\n ", "").split("\r\n")


# -- escaping ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "written"), [
    ("plain", "plain"),
    ("a,b", "a\\,b"),
    ("a;b", "a\\;b"),
    ("back\\slash", "back\\\\slash"),
    ("two\nlines", "two\\nlines"),
    ("crlf\r\nline", "crlf\\nline"),
    ("lone\rcr", "lone\\ncr"),
    ("\\n is not a line break", "\\\\n is not a line break"),
    ("nul\x00 bell\x07 esc\x1b del\x7f", "nul\ufffd bell\ufffd esc\ufffd del\ufffd"),
    ("tab\tstays", "tab\tstays"),
    ("colon: and \"quotes\" stay", "colon: and \"quotes\" stay"),
])
def test_text_values_are_escaped_as_rfc_5545_says(value, written):
    assert escape_text(value) == written


# -- folding -------------------------------------------------------------------------------------------------------

def test_a_line_of_75_octets_stays_whole_and_one_more_folds():
    assert fold("X" * 75) == "X" * 75
    assert fold("X" * 76) == "X" * 75 + "\r\n X"


@pytest.mark.parametrize("char", ["é", "€", "🔑", "ü"])  # 2, 3, 4 and 2 octets in UTF-8
@pytest.mark.parametrize("prefix", range(0, 5))
def test_folding_counts_octets_and_never_splits_a_character(char, prefix):
    line = "SUMMARY:" + "a" * prefix + char * 60
    folded = fold(line)
    pieces = folded.split("\r\n")
    assert len(pieces) > 1
    for number, piece in enumerate(pieces):
        octets = piece.encode("utf-8")  # a split character would raise here, or show as U+FFFD below
        assert len(octets) <= 75
        assert octets.decode("utf-8") == piece
        if number:
            assert piece.startswith(" ") and not piece.startswith("  ")
    # Each line is as full as a whole character allows: folding is not merely safe but tight.
    for piece in pieces[:-1]:
        assert len(piece.encode()) > 75 - len(char.encode())
    assert folded.replace("\r\n ", "") == line


# -- the calendar --------------------------------------------------------------------------------------------------

def test_the_calendar_has_its_properties_crlf_lines_and_short_lines():
    text = build_calendar([key()], now=NOW, base_url=BASE)
    assert "\n" not in text.replace("\r\n", "")
    assert all(len(line.encode()) <= 75 for line in text.split("\r\n"))
    lines = unfold(text)
    assert lines[0] == "BEGIN:VCALENDAR" and lines[-1] == "END:VCALENDAR"
    for expected in ("VERSION:2.0", "PRODID:-//Keyfob//API key expiries//EN", "CALSCALE:GREGORIAN",
                     "METHOD:PUBLISH", "X-WR-CALNAME:Keyfob API key expiries (keys.example.com)"):
        assert expected in lines
    expires = key().expires_at
    event = lines[lines.index("BEGIN:VEVENT"):lines.index("END:VEVENT") + 1]
    assert f"UID:key-7-{int(expires.timestamp())}@keys.example.com" in event
    assert "DTSTAMP:20261201T030405Z" in event
    assert "DTSTART:20261221T080405Z" in event and "DTEND:20261221T081905Z" in event
    assert "SUMMARY:API key billing sync expires" in event
    assert "URL:https://keys.example.com/keys/7" in event
    assert "TRANSP:TRANSPARENT" in event
    assert [line for line in event if line.startswith("TRIGGER")] == ["TRIGGER:-P7D", "TRIGGER:-P1D"]


def test_the_uid_changes_with_the_expiry_and_only_with_it():
    def uid(**fields) -> str:
        return next(line for line in unfold(build_calendar([key(**fields)], now=NOW, base_url=BASE))
                    if line.startswith("UID:"))

    assert uid() == uid(name="renamed", scopes=(), disabled=True)
    assert uid() != uid(expires_at=key().expires_at + timedelta(days=30))
    assert uid() != uid(id=8)


def test_an_expired_key_has_no_reminder_and_a_disabled_one_says_so():
    lines = unfold(build_calendar([key(expires_at=NOW - timedelta(days=3), disabled=True)], now=NOW, base_url=BASE))
    assert "BEGIN:VALARM" not in lines
    description = next(line for line in lines if line.startswith("DESCRIPTION:"))
    assert "The key is disabled" in description


def test_no_keys_is_an_empty_calendar():
    lines = unfold(build_calendar([], now=NOW, base_url=BASE))
    assert "BEGIN:VEVENT" not in lines
    assert lines[0] == "BEGIN:VCALENDAR" and lines[-1] == "END:VCALENDAR"
    assert icalendar.Calendar.from_ical(build_calendar([], now=NOW, base_url=BASE)).walk("VEVENT") == []


HOSTILE_NAME = "billing;sync,v2\r\nBEGIN:VEVENT\nSUMMARY:forged\\ é€🔑 " + "long " * 20


def test_a_hostile_name_stays_inside_its_values_and_a_parser_reads_it_back():
    """CR/LF, commas, semicolons and backslashes in a key name cannot start a property or an event of their own;
    icalendar, a real parser, reads every value back as it was (line breaks as \\n)."""
    keys = [key(name=HOSTILE_NAME), key(id=8, name="second", expires_at=NOW - timedelta(days=1))]
    text = build_calendar(keys, now=NOW, base_url=BASE)
    lines = unfold(text)
    assert lines.count("BEGIN:VEVENT") == 2 and not any(line.startswith("SUMMARY:forged") for line in lines)

    calendar = icalendar.Calendar.from_ical(text)
    assert calendar.errors == []
    assert str(calendar["VERSION"]) == "2.0" and str(calendar["METHOD"]) == "PUBLISH"
    events = calendar.walk("VEVENT")
    assert [event.errors for event in events] == [[], []]
    first, second = events
    expected_name = HOSTILE_NAME.replace("\r\n", "\n")
    assert str(first["SUMMARY"]) == f"API key {expected_name} expires"
    assert first["DTSTART"].dt == key().expires_at and first["DTEND"].dt == key().expires_at + timedelta(minutes=15)
    assert first["DTSTAMP"].dt == NOW
    assert str(first["URL"]) == "https://keys.example.com/keys/7"
    assert str(first["DESCRIPTION"]).splitlines() == [
        "Key: kf_cVo3KB...", "Scopes: read:data write:data", "Expires: 2026-12-21 08:04 UTC",
        "Renew or rotate it on its page: https://keys.example.com/keys/7"]
    alarms = first.walk("VALARM")
    assert [alarm["TRIGGER"].dt for alarm in alarms] == [-timedelta(days=7), -timedelta(days=1)]
    assert str(alarms[0]["DESCRIPTION"]) == f"API key {expected_name} expires in 7 days"
    assert str(second["SUMMARY"]) == "API key second expires" and second.walk("VALARM") == []


def test_utc_stamps():
    assert utc_stamp(datetime(2025, 3, 1, 12, 0, tzinfo=UTC)) == "20250301T120000Z"
