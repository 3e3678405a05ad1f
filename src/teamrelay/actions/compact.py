"""Answers a model can read, always under the Actions payload cap.

ChatGPT counts characters of the JSON it receives (limits.MAX_PAYLOAD_CHARS), so every
answer is measured as the exact text sent: `dumps` here is the only serializer the
wrappers use, and `fit` cuts what does not fit, saying so with `truncated: true`.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from teamrelay.actions.limits import ANSWER_CHARS

_CUT_MARK = " …[truncated]"
_MAX_ROUNDS = 64


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def size(value: Any) -> int:
    return len(dumps(value))


class JsonAnswer(Response):
    """JSON sent as measured: the same text `fit` counted."""

    media_type = "application/json"

    def __init__(self, content: Any, status_code: int = 200, headers: dict[str, str] | None = None):
        super().__init__(dumps(content).encode(), status_code=status_code, headers=headers)


def page_text(text: str, offset: int, room: int) -> tuple[str, int | None]:
    """`text[offset:]` cut to `room` characters, and where the next page starts (or None)."""
    offset = max(0, min(offset, len(text)))
    end = offset + max(0, room)
    if end >= len(text):
        return text[offset:], None
    return text[offset:end], end


def _largest(
    value: Any, kind: type[str] | type[list[Any]], path: tuple[Any, ...] = ()
) -> tuple[int, tuple[Any, ...]]:
    """The biggest leaf of `kind` (a string, or a list of more than one item), by size."""
    best = (-1, path)
    if (kind is str and isinstance(value, str)) or (
        kind is list and isinstance(value, list) and len(value) > 1
    ):
        best = (size(value), path)
    children: list[tuple[Any, Any]] = []
    if isinstance(value, dict):
        children = list(value.items())
    elif isinstance(value, list):
        children = list(enumerate(value))
    for key, child in children:
        if isinstance(child, dict | list | str):
            found = _largest(child, kind, (*path, key))
            if found[0] > best[0]:
                best = found
    return best


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


def _set(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    _get(value, path[:-1])[path[-1]] = new
    return value


def _shrink(leaf: str | list[Any], excess: int) -> str | list[Any]:
    if isinstance(leaf, str):
        if len(leaf) <= len(_CUT_MARK):
            return ""
        keep = max(0, len(leaf) - excess - len(_CUT_MARK) - 8)
        return leaf[:keep] + _CUT_MARK
    items = list(leaf)
    removed = 0
    while items and removed < excess:
        removed += size(items.pop()) + 1
    return items


def fit(value: Any, limit: int = ANSWER_CHARS) -> tuple[Any, bool]:
    """Cut the largest strings and lists until `value` serializes within `limit` characters.

    A generic last resort for answers the wrappers cannot page themselves (the proxy).
    """
    if size(value) <= limit:
        return value, False
    value = json.loads(dumps(value))
    for _ in range(_MAX_ROUNDS):
        excess = size(value) - limit
        if excess <= 0:
            return value, True
        text_size, path = _largest(value, str)
        if text_size < min(excess, 2000):
            list_size, list_path = _largest(value, list)
            if list_size > 0:
                path = list_path
        if text_size < 0 and path == ():
            break
        value = _set(value, path, _shrink(_get(value, path), excess))
    return {"truncated": True, "error": "The answer was too large to show."}, True


def fit_answer(value: dict[str, Any], hint: str, limit: int = ANSWER_CHARS) -> dict[str, Any]:
    """`fit`, then mark the answer as cut and say how to get the rest."""
    room = limit - len(hint) - 64
    fitted, cut = fit(value, room)
    if not cut:
        return value
    if not isinstance(fitted, dict):
        fitted = {"data": fitted}
    return {**fitted, "truncated": True, "hint": hint}
