"""The usage chart's geometry: one bar per day, heights in proportion, a readable axis."""

from datetime import date, timedelta

import pytest

from app.charts import stacked_daily_chart
from app.keys.queries import DayUsage

DAYS = [date(2026, 11, 1) + timedelta(days=n) for n in range(30)]


def test_one_bar_per_day_with_valid_and_failed_stacked_in_proportion():
    usage = [DayUsage(day, 0, 0) for day in DAYS]
    usage[10] = DayUsage(DAYS[10], 80, 20)
    usage[20] = DayUsage(DAYS[20], 40, 0)
    chart = stacked_daily_chart(usage)
    assert len(chart.bars) == 30
    busy, half = chart.bars[10], chart.bars[20]
    assert busy.valid_height == pytest.approx(4 * busy.failed_height)
    assert half.valid_height == pytest.approx(busy.valid_height / 2)
    assert busy.failed_y + busy.failed_height == pytest.approx(busy.valid_y)  # failed sits on top of valid
    assert busy.valid_y + busy.valid_height == pytest.approx(chart.baseline)
    assert chart.bars[0].valid_height == 0
    assert (chart.total_requests, chart.total_failures) == (120, 20)
    assert all(b.x + b.width <= chart.width for b in chart.bars)
    assert [bar.label is not None for bar in chart.bars].count(True) == 5  # every seventh day, ending today


@pytest.mark.parametrize(("peak", "ticks"), [(0, [0, 1]), (1, [0, 1]), (7, [0, 5, 10]), (130, [0, 100, 200]),
                                             (4999, [0, 2500, 5000])])
def test_the_axis_reads_in_round_whole_numbers(peak, ticks):
    chart = stacked_daily_chart([DayUsage(DAYS[0], peak, 0)])
    assert [value for _, value in chart.ticks] == ticks
    assert chart.ticks[0][0] == chart.baseline  # zero on the baseline
