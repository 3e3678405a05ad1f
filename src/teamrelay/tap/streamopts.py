"""`stream_options.include_usage` added to a streamed request, and its traces taken back out.

With the option OpenAI (a) sends one extra chunk, `choices: []` with the usage, before
`data: [DONE]`, and (b) writes `"usage":null` into every other chunk. The relay asks for
it so the ledger gets real token counts, then removes both so the client receives the bytes
it would have received without the relay's addition. Both directions edit bytes in place;
nothing is parsed and written out again.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from teamrelay.tap.sse import parse_event

_MEMBER: Final = b'"stream_options":{"include_usage":true}'
_WS = re.compile(r"[ \t\n\r]*")
_WS_BYTES = re.compile(rb"[ \t\n\r]*")
_BOM = b"\xef\xbb\xbf"
_decoder = json.JSONDecoder()
_UNPARSED: Any = object()


def inject_include_usage(body: bytes, parsed: Any = _UNPARSED) -> bytes | None:
    """`body` asking for the usage chunk, or None when it already does or isn't a stream.

    `parsed`, when given, is `json.loads(body)` already done by the caller.
    """
    if parsed is _UNPARSED:
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError):
            return None
    if not isinstance(parsed, dict) or parsed.get("stream") is not True:
        return None
    if b"\x00" in body[:4]:
        return None  # UTF-16/32: not ours to edit byte-wise
    if "stream_options" not in parsed:
        start = len(_BOM) if body.startswith(_BOM) else 0
        brace = _skip_ws_bytes(body, start) + 1
        first = _skip_ws_bytes(body, brace)
        comma = b"" if body[first : first + 1] == b"}" else b","
        return body[:brace] + _MEMBER + comma + body[brace:]
    options = parsed["stream_options"]
    if isinstance(options, dict) and options.get("include_usage") is True:
        return None
    if options is not None and not isinstance(options, dict):
        return None  # invalid already: let the upstream say so
    return _rewrite_options(body, parsed, options)


def _rewrite_options(body: bytes, parsed: dict[str, Any], options: Any) -> bytes | None:
    try:
        text = body.decode("utf-8-sig" if body.startswith(_BOM) else "utf-8")
        top = _members(text, _skip_ws(text, 0))
        _, start, end = [m for m in top if m[0] == "stream_options"][-1]
        if options is None:
            edited = text[:start] + '{"include_usage":true}' + text[end:]
        else:
            inner = [m for m in _members(text, start) if m[0] == "include_usage"]
            if inner:
                _, value_start, value_end = inner[-1]
                edited = text[:value_start] + "true" + text[value_end:]
            else:
                empty = text[_skip_ws(text, start + 1)] == "}"
                insert = '"include_usage":true' + ("" if empty else ",")
                edited = text[: start + 1] + insert + text[start + 1 :]
        result = (_BOM if body.startswith(_BOM) else b"") + edited.encode("utf-8")
        wanted = dict(parsed, stream_options={**(options or {}), "include_usage": True})
        if json.loads(result) != wanted:
            return None
    except (ValueError, IndexError, RecursionError):
        return None
    return result


def _skip_ws_bytes(body: bytes, i: int) -> int:
    match = _WS_BYTES.match(body, i)
    if match is None:  # pragma: no cover - the pattern matches the empty string
        raise ValueError("unreachable")
    return match.end()


def _skip_ws(text: str, i: int) -> int:
    match = _WS.match(text, i)
    if match is None:  # pragma: no cover - the pattern matches the empty string
        raise ValueError("unreachable")
    return match.end()


def _members(text: str, brace: int) -> list[tuple[str, int, int]]:
    """(key, value start, value end) of each member of the object whose `{` is at `brace`."""
    if text[brace] != "{":
        raise ValueError("not an object")
    members: list[tuple[str, int, int]] = []
    i = _skip_ws(text, brace + 1)
    if text[i] == "}":
        return members
    while True:
        if text[i] != '"':
            raise ValueError("expected a key")
        key, i = _decoder.raw_decode(text, i)
        i = _skip_ws(text, i)
        if text[i] != ":":
            raise ValueError("expected ':'")
        value_start = _skip_ws(text, i + 1)
        _, value_end = _decoder.raw_decode(text, value_start)
        members.append((key, value_start, value_end))
        i = _skip_ws(text, value_end)
        if text[i] == "}":
            return members
        if text[i] != ",":
            raise ValueError("expected ',' or '}'")
        i = _skip_ws(text, i + 1)


# `"usage":null` as a member: after a comma, or first in its object (then with its comma).
_USAGE_NULL = re.compile(
    rb',[ \t]*"usage"[ \t]*:[ \t]*null(?=[ \t]*[,}])'
    rb'|(?<=\{)([ \t]*)"usage"[ \t]*:[ \t]*null(?:[ \t]*,[ \t]*|[ \t]*(?=\}))'
)


def _splice(raw: bytes, match: re.Match[bytes]) -> bytes:
    return raw[: match.start()] + (match.group(1) or b"") + raw[match.end() :]


def drop_usage_null(raw: bytes) -> bytes:
    """The event's bytes without its chunk's `"usage":null` member (unchanged if none)."""
    first = raw.find(b'"usage"')
    if first < 0:
        return raw
    if raw.find(b'"usage"', first + 1) < 0:
        # One candidate: match only around it rather than scanning the whole event.
        match = _USAGE_NULL.search(raw, max(0, first - 32), first + 64)
        if match is not None:
            return _splice(raw, match)
    matches = list(_USAGE_NULL.finditer(raw))
    if len(matches) == 1:
        return _splice(raw, matches[0])
    if not matches:
        return raw
    # Several candidates: keep the one whose removal takes `usage` off the top-level object.
    try:
        event = parse_event(raw)
        chunk = json.loads(event.data) if event else None
        if not isinstance(chunk, dict) or "usage" not in chunk or chunk["usage"] is not None:
            return raw
        wanted = {key: value for key, value in chunk.items() if key != "usage"}
        for match in matches:
            edited = _splice(raw, match)
            event = parse_event(edited)
            if event is not None and json.loads(event.data) == wanted:
                return edited
    except (ValueError, RecursionError):
        pass
    return raw


def is_usage_chunk(chunk: dict[str, Any]) -> bool:
    """The extra chunk `include_usage` adds: no choices, only the usage."""
    return chunk.get("choices") == [] and isinstance(chunk.get("usage"), dict)
