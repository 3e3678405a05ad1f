"""A cheap upper-ish guess of a request's tokens, for budget checks before the answer."""

from __future__ import annotations

import re

_MAX_TOKENS = re.compile(rb'"max_(?:output_|completion_)?tokens"\s*:\s*(\d{1,12})')
BYTES_PER_TOKEN = 4


def estimate_request_tokens(body: bytes) -> int:
    """Input as bytes/4 plus the largest output cap the body sets; no JSON parse.

    Base64 images and audio in the body count as text here, so this overestimates them.
    """
    return -(-len(body) // BYTES_PER_TOKEN) + output_cap(body)


def output_cap(body: bytes) -> int:
    """The largest `max_*tokens` the body sets, 0 when it sets none."""
    caps = _MAX_TOKENS.findall(body)
    return max(map(int, caps)) if caps else 0
