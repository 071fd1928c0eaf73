"""Dates and times from outside (forms, filters, API bodies), bounded before any arithmetic is done with them.

Python's dates end at 9999-12-31 and begin at 0001-01-01: "the day after" 9999-12-31, or 0001-01-01 00:00 at +23:59
moved to UTC, is an OverflowError. Within these bounds a day either way, in any time zone, is still a date.
"""

from __future__ import annotations

from datetime import date, datetime

EARLIEST = date(1970, 1, 1)
LATEST = date(9998, 12, 31)
OUT_OF_RANGE = f"Give a date from {EARLIEST.isoformat()} to {LATEST.isoformat()}."


def in_range(moment: date | datetime) -> bool:
    """True when the date (of a datetime, in its own zone) lies within EARLIEST and LATEST."""
    day = moment.date() if isinstance(moment, datetime) else moment
    return EARLIEST <= day <= LATEST
