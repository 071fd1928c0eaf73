"""A request's path as Keyfob writes it to a log: the token of the expiry calendar's secret URL replaced, since
whoever reads the log could otherwise read the owner's calendar. gunicorn's access log (gunicorn.conf.py) and the
one-line error log (app/errors.py) both write paths through logged_path()."""

from __future__ import annotations

import re

# /calendar/<token>.ics (app/auth/calendar.py), and anything else under /calendar/: a mangled token is still one.
_SECRET_PATH = re.compile(r"^/calendar/.*", re.DOTALL)


def logged_path(path: str | None) -> str:
    """`path` with a calendar token in it replaced by [redacted]."""
    if not path:
        return path or ""
    return _SECRET_PATH.sub("/calendar/[redacted]", path)
