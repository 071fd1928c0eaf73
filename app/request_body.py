"""What a request body may be, decided once for the whole app before any form or view reads it.

- JSON is parsed by one strict parser (`parse_json`), which every request's get_json() uses: UTF-8 only, an object at
  the top, at most MAX_DEPTH deep, no NaN or Infinity, no number past MAX_DIGITS digits or a float's range, no field
  named twice, and no text that cannot be stored (a lone surrogate, which no database encoding accepts, or a NUL).
  Anything else is a BodyError: 400, or 422 naming the field when one value is at fault.
- The pages take forms only: a body of another type posted to one of them is refused with 415 (request_guard.py),
  and their forms never read JSON as form data (app/forms.py).
- A body past MAX_BODY_BYTES is refused with 413, however it is sent (with a Content-Length or chunked), so none of
  this ever holds more than a megabyte.
"""

from __future__ import annotations

import json
import math
from typing import Any

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge

MAX_BODY_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_DIGITS = 64
NUL_MESSAGE = "Holds a NUL character, which no field accepts."
SURROGATE_MESSAGE = "Holds a lone UTF-16 surrogate (such as \\ud800), which is not a character and cannot be stored."


class BodyError(Exception):
    """A body Keyfob will not read: the status, the API's error code and a message, and the fields at fault."""

    def __init__(self, status: int, code: str, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields or {}


def _malformed(message: str) -> BodyError:
    return BodyError(400, "malformed_json", message)


def _constant(name: str):
    raise _malformed(f"{name} is not a JSON number.")


def _integer(digits: str) -> int:
    # Checked before int(): converting thousands of digits costs quadratic time.
    if len(digits) > MAX_DIGITS:
        raise _malformed(f"A number in the body has more than {MAX_DIGITS} digits.")
    return int(digits)


def _float(digits: str) -> float:
    value = float(digits)
    if not math.isfinite(value):
        raise _malformed(f"The number {digits[:20]}… is too large.")
    return value


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        # Parsers disagree on which repeated value wins; a proxy and Keyfob reading different ones is an attack.
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise _malformed(f"The field {name!r} appears more than once.")
            seen.add(name)
    return found


def _bad_text(text: str) -> str | None:
    """Why this text cannot be stored, or None. ASCII text (almost all of it) costs one check."""
    if "\x00" in text:
        return NUL_MESSAGE
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return SURROGATE_MESSAGE
    return None


def _check_values(body: Any) -> None:
    """Walk the parsed body (without recursion) for depth and for text that cannot be stored, naming every field
    that holds some."""
    problems: dict[str, str] = {}
    pending: list[tuple[Any, str, int]] = [(body, "", 0)]
    while pending:
        value, where, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise _malformed(f"The body is nested more than {MAX_DEPTH} deep.")
        if isinstance(value, str):
            problem = _bad_text(value)
            if problem:
                problems[where] = problem
        elif isinstance(value, dict):
            for name, item in value.items():
                problem = _bad_text(name)
                if problem:
                    problems[f"{where} (a field name)" if where else "(a field name)"] = problem
                pending.append((item, f"{where}.{name}" if where else name, depth + 1))
        elif isinstance(value, list):
            pending.extend((item, f"{where}[{index}]", depth + 1) for index, item in enumerate(value))
    if problems:
        raise BodyError(422, "validation_failed", "Some fields are not valid: " + ", ".join(sorted(problems)) + ".",
                        problems)


def parse_json(raw: bytes | str) -> dict[str, Any]:
    """A request body as a JSON object, or a BodyError saying what is wrong with it."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise _malformed(f"The body is not UTF-8 (byte {error.start} is not valid), and JSON must be.") from None
    try:
        body = json.loads(raw, parse_constant=_constant, parse_int=_integer, parse_float=_float,
                          object_pairs_hook=_object)
    except RecursionError:
        raise _malformed(f"The body is nested more than {MAX_DEPTH} deep.") from None
    except ValueError as error:
        raise _malformed(f"The body is not valid JSON: {error}.") from None
    if not isinstance(body, dict):
        raise _malformed('The body must be a JSON object, such as {"name": "billing sync"}.')
    _check_values(body)
    return body


class KeyfobRequest(Request):
    """Flask's request, whose get_json() is parse_json (no view or library can read a JSON body any other way), and
    whose body is never more than MAX_BODY_BYTES, however it is sent."""

    _parsed_json: dict[str, Any] | None = None

    def get_data(self, cache: bool = True, as_text: bool = False, parse_form_data: bool = False):
        # A body sent with a Content-Length past MAX_CONTENT_LENGTH is refused by werkzeug before it is read; a
        # chunked one is cut at MAX_CONTENT_LENGTH without a word. That limit is one byte more than we take, so a
        # cut body is one byte too long, and refused here instead of read as if it had ended there.
        data = super().get_data(cache=cache, as_text=False, parse_form_data=parse_form_data)
        if len(data) > MAX_BODY_BYTES:
            raise RequestEntityTooLarge()
        return data.decode(errors="replace") if as_text else data

    def _load_form_data(self) -> None:
        # Forms are parsed from the whole body read (and bounded) above, never from the stream as it comes.
        self.get_data(cache=True, parse_form_data=False)
        super()._load_form_data()

    def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> dict[str, Any] | None:
        """The body as a JSON object. A body that is not said to be JSON gives 415 (None when `silent`); one that
        is but cannot be read raises BodyError, silent or not."""
        if not (force or self.is_json):
            return None if silent else self.on_json_loading_failed(None)
        if self._parsed_json is not None:
            return self._parsed_json
        body = parse_json(self.get_data(cache=cache))
        if cache:
            self._parsed_json = body
        return body
