"""Just enough of multipart/form-data to apply policy to a form while it streams by.

The relay never re-encodes a form: it reads the simple fields that precede the first file part
(SDKs send `model` and `purpose` before the file) and, for batch input files, watches the file
part's bytes pass. Everything else about the form is the upstream's business.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from teamrelay.errors import RelayError

Sink = Callable[[bytes | None], str | None]

PEEK_LIMIT = 256 * 1024
_BOUNDARY = re.compile(rb'boundary="?([^";,]{1,200})"?', re.IGNORECASE)
_NAME = re.compile(rb'\bname="([^"]*)"', re.IGNORECASE)
_FILENAME = re.compile(rb"\bfilename\*?=", re.IGNORECASE)


def boundary_of(content_type: bytes) -> bytes | None:
    found = _BOUNDARY.search(content_type)
    return found.group(1) if found else None


@dataclass(slots=True)
class FormHead:
    """The simple fields before the first file part, and where that part's data starts."""

    fields: dict[str, bytes] = field(default_factory=dict)
    file_field: str | None = None
    file_data_at: int | None = None


def scan_head(data: bytes, boundary: bytes, *, final: bool) -> FormHead | None:
    """Parse the form's beginning; None while more bytes are needed to reach a file part."""
    head = FormHead()
    opener = b"--" + boundary
    delimiter = b"\r\n" + opener
    at = data.find(opener)
    if at < 0:
        return head if final else None
    at += len(opener)
    while True:
        if data[at : at + 2] == b"--" or (final and at >= len(data)):
            return head
        headers_end = data.find(b"\r\n\r\n", at)
        if headers_end < 0:
            return head if final else None
        headers = data[at:headers_end]
        start = headers_end + 4
        name_match = _NAME.search(headers)
        name = name_match.group(1).decode("latin-1") if name_match else ""
        if _FILENAME.search(headers):
            head.file_field, head.file_data_at = name, start
            return head
        end = data.find(delimiter, start)
        if end < 0:
            return head if final else None
        head.fields.setdefault(name, data[start:end])
        at = end + len(delimiter)


class FilePartWatcher:
    """Feeds the bytes of one file part to `sink` as the body streams; `sink` may refuse.

    Holds back at most the delimiter's length so a delimiter split across chunks is found.
    """

    def __init__(self, boundary: bytes, data_at: int, sink: Sink):
        self._delimiter = b"\r\n--" + boundary
        self._skip = data_at
        self._held = b""
        self._sink = sink
        self._done = False

    def __call__(self, chunk: bytes) -> None:
        if self._done:
            return
        if self._skip:
            dropped = min(self._skip, len(chunk))
            self._skip -= dropped
            chunk = chunk[dropped:]
        data = self._held + chunk
        end = data.find(self._delimiter)
        if end >= 0:
            self._done = True
            self._feed(data[:end])
            self._feed(None)
            return
        keep = len(self._delimiter) - 1
        self._held = data[-keep:] if len(data) > keep else data
        self._feed(data[: len(data) - len(self._held)])

    def finish(self) -> None:
        if not self._done:
            self._done = True
            self._feed(self._held)
            self._feed(None)

    def _feed(self, data: bytes | None) -> None:
        refusal = self._sink(data) if data is None or data else None
        if refusal is not None:
            raise RelayError(403, refusal, param="file", code="model_not_allowed")
