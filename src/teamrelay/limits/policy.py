"""A key's limits as the relay enforces them, read from the key's `limits` mapping.

The mapping is stored with the key (`relay_keys.limits`, JSON) and edited with
`teamrelay keys create/update`; `LIMIT_FIELDS` is the one list of what it may hold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

Span = Literal["day", "month"]
Unit = Literal["usd", "tokens"]
ISOLATION_MODES: Final = ("per_key", "shared")


@dataclass(frozen=True, slots=True)
class LimitField:
    name: str
    kind: type[int] | type[float] | type[str]
    help: str


LIMIT_FIELDS: Final = (
    LimitField("rpm", int, "Requests per minute."),
    LimitField("tpm", int, "Tokens per minute (estimated before, reconciled after)."),
    LimitField("daily_usd", float, "Estimated cost per UTC day, in US dollars."),
    LimitField("monthly_usd", float, "Estimated cost per UTC month, in US dollars."),
    LimitField("daily_tokens", int, "Tokens (input + output) per UTC day."),
    LimitField("monthly_tokens", int, "Tokens (input + output) per UTC month."),
    LimitField("isolation", str, "per_key or shared: overrides RELAY_ISOLATION for this key."),
)
_BY_NAME: Final = {field.name: field for field in LIMIT_FIELDS}
_CAPS: Final[tuple[tuple[str, Span, Unit], ...]] = (
    ("daily_usd", "day", "usd"),
    ("daily_tokens", "day", "tokens"),
    ("monthly_usd", "month", "usd"),
    ("monthly_tokens", "month", "tokens"),
)


@dataclass(frozen=True, slots=True)
class Cap:
    """One budget: `amount` of `unit` per `span`."""

    span: Span
    unit: Unit
    amount: float

    @property
    def name(self) -> str:
        return f"{'daily' if self.span == 'day' else 'monthly'}_{self.unit}"

    def describe(self) -> str:
        period = "daily" if self.span == "day" else "monthly"
        if self.unit == "usd":
            return f"{period} budget of ${self.amount:,.2f}"
        return f"{period} budget of {int(self.amount):,} tokens"


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """Parsed once per key record; `priced` (admission needs a cost estimate in dollars) and
    `rated` are worked out here rather than on every request."""

    rpm: int | None = None
    tpm: int | None = None
    caps: tuple[Cap, ...] = ()
    isolation: str | None = None
    priced: bool = field(init=False)
    rated: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "priced", any(cap.unit == "usd" for cap in self.caps))
        object.__setattr__(self, "rated", self.rpm is not None or self.tpm is not None)


NO_LIMITS: Final = KeyLimits()


def check_value(name: str, value: Any) -> int | float | str:
    """A value as stored, or ValueError naming the limit."""
    field = _BY_NAME.get(name)
    if field is None:
        raise ValueError(f"unknown limit {name!r}; known: {', '.join(_BY_NAME)}")
    if field.kind is str:
        if value not in ISOLATION_MODES:
            raise ValueError(f"{name} must be one of {', '.join(ISOLATION_MODES)}")
        return str(value)
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number < 0 or (field.kind is int and number != int(number)):
        kind = "a whole number" if field.kind is int else "a number"
        raise ValueError(f"{name} must be {kind} >= 0, not {value!r}")
    return int(number) if field.kind is int else number


def checked_limits(limits: Mapping[str, Any]) -> dict[str, Any]:
    """The mapping to store: every entry checked, None values dropped."""
    return {name: check_value(name, value) for name, value in limits.items() if value is not None}


def parse_limits(limits: Mapping[str, Any]) -> KeyLimits:
    if not limits:
        return NO_LIMITS
    values = checked_limits(limits)
    caps = tuple(
        Cap(span, unit, float(values[name])) for name, span, unit in _CAPS if name in values
    )
    isolation = values.get("isolation")
    return KeyLimits(
        rpm=values.get("rpm"),
        tpm=values.get("tpm"),
        caps=caps,
        isolation=isolation if isinstance(isolation, str) else None,
    )
