"""The one JSON parser for request bodies (app/request_body.py), and the date bounds (app/dates.py)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from app import dates
from app.request_body import MAX_DEPTH, MAX_DIGITS, NUL_MESSAGE, SURROGATE_MESSAGE, BodyError, parse_json


def refusal(raw) -> BodyError:
    with pytest.raises(BodyError) as caught:
        parse_json(raw)
    return caught.value


def nested(depth: int) -> bytes:
    """An object whose innermost value sits `depth` levels below the top-level object."""
    return b'{"a": ' * depth + b"1" + b"}" * depth


def test_an_object_is_read_as_is():
    body = {"name": "ünïcode ✓", "scopes": ["read:data"], "rate_limit": 10, "ratio": 0.5, "on": True, "none": None}
    assert parse_json(json.dumps(body).encode()) == body
    assert parse_json(json.dumps(body, ensure_ascii=False).encode()) == body


@pytest.mark.parametrize("raw", [b"null", b"true", b"1", b"-1.5", b'"text"', b"[]", b"[1, 2]", b"[null, null]"])
def test_anything_but_an_object_is_a_400(raw):
    error = refusal(raw)
    assert (error.status, error.code) == (400, "malformed_json")
    assert "must be a JSON object" in error.message


def test_depth_is_bounded_exactly_and_deep_nesting_never_recurses_out():
    assert parse_json(nested(MAX_DEPTH))
    assert refusal(nested(MAX_DEPTH + 1)).message == f"The body is nested more than {MAX_DEPTH} deep."
    for depth in (1_000, 100_000):
        assert refusal(b"[" * depth + b"]" * depth).message == f"The body is nested more than {MAX_DEPTH} deep."


def test_numbers_are_bounded_before_they_are_converted():
    assert parse_json(b'{"n": ' + b"9" * MAX_DIGITS + b"}") == {"n": int("9" * MAX_DIGITS)}
    assert f"more than {MAX_DIGITS} digits" in refusal(b'{"n": ' + b"9" * (MAX_DIGITS + 1) + b"}").message
    assert "more than" in refusal(b'{"n": -' + b"9" * 5000 + b"}").message
    assert "too large" in refusal(b'{"n": 1e999}').message
    for constant in ("NaN", "Infinity", "-Infinity"):
        assert refusal(f'{{"n": {constant}}}'.encode()).message == f"{constant} is not a JSON number."


@pytest.mark.parametrize(("raw", "says"), [
    (b'{"name": "\xff"}', "not UTF-8 (byte 10"), ('{"a": 1}'.encode("utf-16"), "not UTF-8 (byte 0"),
    (b'\xef\xbb\xbf{"a": 1}', "BOM"), (b'{"a": "b', "Unterminated string"), (b'{"a": 1} {}', "Extra data"),
    (b"", "Expecting value"), (b'{"name": "a", "name": "b"}', "The field 'name' appears more than once."),
])
def test_bodies_that_are_not_strict_json_are_a_400_that_says_why(raw, says):
    error = refusal(raw)
    assert (error.status, error.code) == (400, "malformed_json")
    assert says in error.message


def test_text_that_cannot_be_stored_is_a_422_naming_every_field_that_holds_it():
    error = refusal(b'{"name": "\\ud800", "ok": "fine", "scopes": ["a", "b\\u0000"], '
                    b'"meta": {"note": "\\udfff x", "\\ud83d": 1}}')
    assert (error.status, error.code) == (422, "validation_failed")
    assert error.fields == {"name": SURROGATE_MESSAGE, "scopes[1]": NUL_MESSAGE, "meta.note": SURROGATE_MESSAGE,
                            "meta (a field name)": SURROGATE_MESSAGE}
    assert error.message == "Some fields are not valid: meta (a field name), meta.note, name, scopes[1]."


def test_a_proper_surrogate_pair_is_a_character_and_is_kept():
    assert parse_json(b'{"name": "\\ud83d\\udd11 key"}') == {"name": "\U0001f511 key"}


@pytest.mark.parametrize(("moment", "inside"), [
    (date(1970, 1, 1), True), (date(9998, 12, 31), True), (date(1969, 12, 31), False), (date(9999, 1, 1), False),
    (datetime(9998, 12, 31, 23, 59, tzinfo=timezone(-timedelta(hours=23, minutes=59))), True),
    (datetime(1, 1, 1, tzinfo=UTC), False)])
def test_dates_are_bounded_so_a_day_either_way_in_any_zone_is_still_a_date(moment, inside):
    assert dates.in_range(moment) is inside
    if inside:
        day = moment if isinstance(moment, datetime) else datetime.combine(moment, datetime.min.time(), UTC)
        assert (day + timedelta(days=1)).astimezone(UTC) and (day - timedelta(days=1)).astimezone(UTC)
