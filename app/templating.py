"""What every template can use: the pinned CDN scripts, the htmx configuration, and readable times."""

from __future__ import annotations

from datetime import datetime

from flask import Flask

from app.assets import HTMX, HTMX_CONFIG
from app.charts import CHART_DAYS
from app.database import utcnow
from app.keys.core import KeyCore

UNITS = ((86400 * 365, "year"), (86400 * 30, "month"), (86400 * 7, "week"), (86400, "day"), (3600, "hour"),
         (60, "minute"))


def relative_time(moment: datetime | None, now: datetime | None = None) -> str:
    """'in 3 days', '5 minutes ago', 'just now' (rounded down to the largest whole unit); '' for None."""
    if moment is None:
        return ""
    seconds = (moment - (now or utcnow())).total_seconds()
    distance = abs(seconds)
    for size, unit in UNITS:
        if distance >= size:
            count = int(distance // size)
            text = f"{count} {unit}{'s' if count != 1 else ''}"
            return f"in {text}" if seconds > 0 else f"{text} ago"
    return "in under a minute" if seconds > 0 else "just now"


def exact_time(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else ""


def init_templating(app: Flask) -> None:
    # Numbers pages state ("expired in the last 30 days") come from where the rule lives, never restated.
    app.jinja_env.globals.update(htmx=HTMX, htmx_config=HTMX_CONFIG, chart_days=CHART_DAYS,
                                 key_settings=KeyCore.of(app).settings)
    app.jinja_env.filters.update(relative_time=relative_time, exact_time=exact_time)
