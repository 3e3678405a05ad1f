"""Bar charts laid out on the server, drawn as inline SVG by the templates (no script needed).

Geometry only: labels stay plain strings so the template escapes them like any other text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

ROW = 26
LABEL_WIDTH = 180
BARS_WIDTH = 960
COLUMNS_HEIGHT = 220
AXIS = 22
MAX_BARS = 12
MAX_TICKS = 10


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: int
    x: float
    y: float
    width: float
    height: float
    tick: bool = True  # whether the label is drawn (crowded day axes skip some)


@dataclass(frozen=True, slots=True)
class Chart:
    kind: Literal["bars", "columns"]
    title: str
    width: int
    height: int
    bars: tuple[Bar, ...]
    hidden: int = 0  # groups past MAX_BARS, left to the table

    @property
    def empty(self) -> bool:
        return not self.bars


def _scale(value: int, maximum: int, room: float) -> float:
    return 0.0 if maximum <= 0 else round(room * value / maximum, 1)


def bars(title: str, items: Sequence[tuple[str, int]]) -> Chart:
    """Horizontal bars, largest first as given; labels on the left, values past each bar."""
    shown = items[:MAX_BARS]
    room = BARS_WIDTH - LABEL_WIDTH - 60
    maximum = max((value for _, value in shown), default=0)
    laid = tuple(
        Bar(label, value, LABEL_WIDTH, index * ROW + 4, _scale(value, maximum, room), ROW - 8)
        for index, (label, value) in enumerate(shown)
    )
    return Chart("bars", title, BARS_WIDTH, max(len(laid), 1) * ROW, laid, len(items) - len(shown))


def columns(title: str, items: Sequence[tuple[str, int]]) -> Chart:
    """Vertical columns in the given order (days, oldest first), labels under the axis."""
    width = max(BARS_WIDTH, len(items) * 22)
    slot = width / max(len(items), 1)
    room = COLUMNS_HEIGHT - 2 * AXIS
    maximum = max((value for _, value in items), default=0)
    step = -(-len(items) // MAX_TICKS)
    laid = []
    for index, (label, value) in enumerate(items):
        height = _scale(value, maximum, room)
        x = round(index * slot + slot * 0.15, 1)
        tick = index % step == 0 or index == len(items) - 1
        laid.append(Bar(label, value, x, AXIS + room - height, round(slot * 0.7, 1), height, tick))
    return Chart("columns", title, int(width), COLUMNS_HEIGHT, tuple(laid))


def days_between(start: datetime, end: datetime) -> list[str]:
    """Every UTC day from `start` to `end` inclusive, as the ledger's `YYYY-MM-DD`."""
    first, last = start.date(), end.date()
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def day_series(days: Iterable[str], counts: dict[str, int]) -> list[tuple[str, int]]:
    """One column per day, zero where the ledger has none; labels shortened to `MM-DD`."""
    return [(_short(day), counts.get(day, 0)) for day in days]


def _short(day: str) -> str:
    try:
        return date.fromisoformat(day).strftime("%m-%d")
    except ValueError:
        return day
