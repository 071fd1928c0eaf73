"""Requests-per-day bar charts as plain geometry for a server-rendered SVG: no chart library, no script, and the
CSP stays strict. Templates draw the bars (`templates/_usage_chart.html`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from app.keys.queries import DayUsage

CHART_DAYS = 30  # every usage chart shows the last 30 days, the key's own and the admin overview's alike
WIDTH, HEIGHT = 720, 200
LEFT, RIGHT, BOTTOM, TOP = 44, 24, 22, 10


@dataclass(frozen=True)
class Bar:
    day: DayUsage
    x: float
    width: float
    valid_y: float
    valid_height: float
    failed_y: float
    failed_height: float
    label: str | None  # the date under every seventh bar


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    ticks: list[tuple[float, int]]  # (y, value) for the horizontal grid lines
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    baseline: int = HEIGHT - BOTTOM

    @property
    def total_requests(self) -> int:
        return sum(bar.day.requests for bar in self.bars)

    @property
    def total_failures(self) -> int:
        return sum(bar.day.failures for bar in self.bars)


def _nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 × 10ⁿ at or above value, so the axis reads in round numbers."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def stacked_daily_chart(days: Sequence[DayUsage]) -> Chart:
    """Valid requests with failed verifications stacked on top, one bar per day."""
    top = _nice_ceiling(max((day.requests + day.failures for day in days), default=0) or 1)
    plot_height = HEIGHT - BOTTOM - TOP
    slot = (WIDTH - LEFT - RIGHT) / max(len(days), 1)
    scale = plot_height / top
    bars = []
    for index, day in enumerate(days):
        valid_height = day.requests * scale
        failed_height = day.failures * scale
        baseline = HEIGHT - BOTTOM
        bars.append(Bar(
            day=day, x=LEFT + index * slot + slot * 0.15, width=slot * 0.7,
            valid_y=baseline - valid_height, valid_height=valid_height,
            failed_y=baseline - valid_height - failed_height, failed_height=failed_height,
            label=day.day.strftime("%d %b") if (len(days) - 1 - index) % 7 == 0 else None,
        ))
    values = [0, top // 2, top] if top % 2 == 0 else [0, top]  # only whole numbers on the axis
    ticks = [(HEIGHT - BOTTOM - plot_height * value / top, value) for value in values]
    return Chart(bars, ticks)
