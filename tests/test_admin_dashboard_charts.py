"""Chart geometry for the dashboard's SVG: scaled to the largest value, days without gaps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from teamrelay.admin.charts import (
    BARS_WIDTH,
    MAX_BARS,
    MAX_TICKS,
    bars,
    columns,
    day_series,
    days_between,
)


def test_bars_scale_to_the_largest_value_and_keep_order() -> None:
    chart = bars("t", [("a", 10), ("b", 5), ("c", 0)])
    widths = [bar.width for bar in chart.bars]
    assert widths[0] > widths[1] > widths[2] == 0
    assert widths[1] == widths[0] / 2
    assert [bar.label for bar in chart.bars] == ["a", "b", "c"]
    assert all(bar.x + bar.width < BARS_WIDTH for bar in chart.bars)
    assert [bar.y for bar in chart.bars] == sorted(bar.y for bar in chart.bars)


def test_bars_past_the_limit_are_left_to_the_table() -> None:
    chart = bars("t", [(f"k{n}", 100 - n) for n in range(MAX_BARS + 3)])
    assert len(chart.bars) == MAX_BARS
    assert chart.hidden == 3


def test_an_empty_chart_says_so_and_divides_by_nothing() -> None:
    assert bars("t", []).empty
    assert columns("t", []).empty
    assert {bar.width for bar in bars("t", [("a", 0)]).bars} == {0}


def test_columns_stand_on_one_axis_with_a_few_labels() -> None:
    chart = columns("t", [(f"d{n}", n % 3) for n in range(31)])
    assert {round(bar.y + bar.height, 1) for bar in chart.bars} == {chart.bars[0].y}
    ticks = [bar for bar in chart.bars if bar.tick]
    assert len(ticks) <= MAX_TICKS + 1
    assert chart.bars[0].tick
    assert chart.bars[-1].tick


def test_day_series_covers_every_day_with_zeros() -> None:
    end = datetime(2026, 11, 25, 10, tzinfo=UTC)
    days = days_between(end - timedelta(days=7), end)
    assert days[0] == "2026-11-18"
    assert days[-1] == "2026-11-25"
    assert len(days) == 8
    series = day_series(days, {"2026-11-20": 4})
    assert series[2] == ("11-20", 4)
    assert sum(value for _, value in series) == 4
