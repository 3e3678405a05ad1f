"""Per-key rate limits and budgets: the limits step of the request path."""

from teamrelay.limits.budget import Budgets, Reservation, over_budget
from teamrelay.limits.estimate import Estimate, estimate
from teamrelay.limits.gate import Admitted, Limits
from teamrelay.limits.policy import LIMIT_FIELDS, Cap, KeyLimits, checked_limits, parse_limits
from teamrelay.limits.rate import RateLimits
from teamrelay.limits.windows import Clock, Window, system_clock, window_of

__all__ = [
    "LIMIT_FIELDS",
    "Admitted",
    "Budgets",
    "Cap",
    "Clock",
    "Estimate",
    "KeyLimits",
    "Limits",
    "RateLimits",
    "Reservation",
    "Window",
    "checked_limits",
    "estimate",
    "over_budget",
    "parse_limits",
    "system_clock",
    "window_of",
]
