"""The tap on the request path: usage and ids read from answers as they pass."""

from teamrelay.tap.estimate import estimate_request_tokens, output_cap
from teamrelay.tap.sse import Event, EventSplitter, Piece, parse_event
from teamrelay.tap.streamopts import inject_include_usage
from teamrelay.tap.taps import JsonTap, SseTap, Tap
from teamrelay.tap.usage import Usage

__all__ = [
    "Event",
    "EventSplitter",
    "JsonTap",
    "Piece",
    "SseTap",
    "Tap",
    "Usage",
    "estimate_request_tokens",
    "inject_include_usage",
    "output_cap",
    "parse_event",
]
