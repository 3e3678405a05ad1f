"""Budget windows: UTC days and months, on a clock tests can move."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from teamrelay.limits.policy import Span

Clock = Callable[[], datetime]


def system_clock(offset_seconds: float = 0.0) -> Clock:
    """UTC now, shifted by `offset_seconds` (RELAY_TEST_CLOCK_OFFSET, for tests only)."""
    if not offset_seconds:
        return lambda: datetime.now(UTC)
    shift = timedelta(seconds=offset_seconds)
    return lambda: datetime.now(UTC) + shift


@dataclass(frozen=True, slots=True)
class Window:
    span: Span
    start: datetime
    end: datetime

    @property
    def label(self) -> str:
        """What the budget row stores: `2026-11-24` or `2026-11`."""
        return self.start.strftime("%Y-%m-%d" if self.span == "day" else "%Y-%m")


def window_of(span: Span, now: datetime) -> Window:
    now = now.astimezone(UTC)
    if span == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return Window(span, start, start + timedelta(days=1))
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return Window(span, start, end)
