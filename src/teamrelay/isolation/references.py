"""Owned ids a JSON request body refers to, wherever they sit in it.

A scan for string literals that look like owned ids finds `file_id`, `file_ids`,
`input_file_id`, `previous_response_id`, `vector_store_ids`, `conversation`, an `input_file`
part deep in Responses `input`, a tool's `vector_store_ids`, and fields added to the API later,
without parsing the body. JSON can spell an id with `\\u` escapes the scan would not see, so a
body with any `\\u` is parsed and every string in it checked instead. The scan reads UTF-8:
a body in another encoding, or one with `\\u` that does not parse, is refused (400), never
taken as naming no ids.
"""

from __future__ import annotations

import re
from typing import Any, Final

from teamrelay.body import check_json_text, parse_json
from teamrelay.isolation.owned import ID_PREFIXES, is_owned_id

_LITERAL: Final = re.compile(
    rb'"((?:' + b"|".join(re.escape(p.encode()) for p in ID_PREFIXES) + rb')[A-Za-z0-9_\-]{1,200})"'
)
_ESCAPE: Final = b"\\u"


def referenced_ids(body: bytes) -> set[str]:
    """Raises the 400 of `check_json_text` or `parse_json` for a body it cannot read."""
    # A one-byte search is a memchr, far cheaper than a two-byte one on a 1 KB body.
    backslash = body.find(b"\\")
    if backslash < 0 or body.find(_ESCAPE, backslash) < 0:
        check_json_text(body)
        return {match.decode() for match in _LITERAL.findall(body)}
    found: set[str] = set()
    _walk(parse_json(body), found)
    return found


def _walk(value: Any, found: set[str]) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if is_owned_id(item):
                found.add(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def form_value_ids(value: bytes) -> set[str]:
    """Owned ids a multipart field's value names: the whole value (`file_id=file-abc`), or
    any the JSON in it names (a form field holding `{"id": "video_1"}`)."""
    stripped = value.strip()
    if stripped[:1] in (b"{", b"["):
        return referenced_ids(stripped)
    text = stripped.decode("latin-1")
    return {text} if is_owned_id(text) else set()


def form_ids(fields: dict[str, list[bytes]]) -> set[str]:
    """Owned ids the simple fields of a form's head name, whatever the fields are called."""
    found: set[str] = set()
    for values in fields.values():
        for value in values:
            found |= form_value_ids(value)
    return found
