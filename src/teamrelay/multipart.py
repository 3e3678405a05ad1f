"""Just enough of multipart/form-data to apply policy to a form while it streams by.

The relay never re-encodes a form: it reads the simple fields that precede the first file part
(SDKs send `model` and `purpose` before the file) and, after that, watches the rest of the
form pass: the file part's bytes for batch input files, and the later parts' heads.

What it reads it reads strictly, and what it cannot read is refused with a 400, never taken
as "no such field": part heads per RFC 7578 §4.2 and RFC 2183 (`form-data` with `name=` and
`filename=` as a token or a quoted-string; `\\"` is the only escape, since parsers disagree
on the others), no parameter twice, no RFC 2231 `name*=`, no transfer encoding, and a field
a step reads given once, before the first file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Final

from teamrelay.errors import RelayError

Sink = Callable[[bytes | None], str | None]

PEEK_LIMIT = 256 * 1024
HEAD_LIMIT: Final = 16 * 1024
_VALUE_LIMIT: Final = 64 * 1024
_TOKEN: Final = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_TYPE: Final = re.compile(rb"[ \t]*(" + _TOKEN + rb"(?:/" + _TOKEN + rb")?)")
_PARAMETER: Final = re.compile(
    rb"[ \t]*;[ \t]*("
    + _TOKEN
    + rb")[ \t]*=[ \t]*(?:("
    + _TOKEN
    + rb')|"((?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\")*)")'
)
_HEADER: Final = re.compile(rb"(" + _TOKEN + rb"):[ \t]*([^\r\n]*?)[ \t]*")
_IDENTITY_ENCODINGS: Final = frozenset({b"7bit", b"8bit", b"binary"})


def unreadable_form(reason: str) -> RelayError:
    return RelayError(400, f"The multipart form could not be read: {reason}", code="invalid_body")


def parse_parameters(value: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    """`type; name=value; ...` of a Content-Type or Content-Disposition, names lower-cased.

    Raises the 400 for a value that does not follow the grammar or repeats a parameter.
    """
    value = value.rstrip(b" \t")
    kind = _TYPE.match(value)
    if kind is None:
        raise unreadable_form("a header has no type.")
    parameters: dict[bytes, bytes] = {}
    at = kind.end()
    while at < len(value):
        found = _PARAMETER.match(value, at)
        if found is None:
            raise unreadable_form("a header's parameters are malformed.")
        name = found.group(1).lower()
        if b"*" in name:
            raise unreadable_form("RFC 7578 forbids RFC 2231 parameters such as 'name*='.")
        if name in parameters:
            raise unreadable_form(f"a header gives '{name.decode()}' twice.")
        token, quoted = found.group(2), found.group(3)
        parameters[name] = token if token is not None else quoted.replace(b'\\"', b'"')
        at = found.end()
    return kind.group(1).lower(), parameters


def boundary_of(content_type: bytes) -> bytes:
    """The boundary of a multipart Content-Type; the 400 when there is none to read."""
    _, parameters = parse_parameters(content_type)
    boundary = parameters.get(b"boundary")
    if boundary is None or not 0 < len(boundary) <= 200:
        raise unreadable_form("multipart/form-data without a boundary.")
    return boundary


@dataclass(frozen=True, slots=True)
class PartHead:
    name: str
    filename: str | None


def parse_part_head(block: bytes) -> PartHead:
    """A part's header lines (without the blank line that ends them)."""
    disposition: bytes | None = None
    for line in block.split(b"\r\n") if block else ():
        header = _HEADER.fullmatch(line)
        if header is None:
            raise unreadable_form("a part has a malformed header line.")
        name = header.group(1).lower()
        if name == b"content-disposition":
            if disposition is not None:
                raise unreadable_form("a part has two Content-Disposition headers.")
            disposition = header.group(2)
        elif (
            name == b"content-transfer-encoding"
            and header.group(2).lower() not in _IDENTITY_ENCODINGS
        ):
            raise unreadable_form("parts may not use a Content-Transfer-Encoding.")
    if disposition is None:
        raise unreadable_form("a part has no Content-Disposition header.")
    kind, parameters = parse_parameters(disposition)
    field_name = parameters.get(b"name")
    if kind != b"form-data" or field_name is None:
        raise unreadable_form("a part's Content-Disposition is not form-data with a name.")
    filename = parameters.get(b"filename")
    return PartHead(
        field_name.decode("latin-1"), None if filename is None else filename.decode("latin-1")
    )


@dataclass(slots=True)
class FormHead:
    """The simple fields before the first file part, and where that part's data starts."""

    fields: dict[str, list[bytes]] = field(default_factory=dict)
    file_field: str | None = None
    file_data_at: int | None = None

    def value(self, name: str) -> bytes | None:
        """A field a step reads: it must be given at most once."""
        values = self.fields.get(name)
        if values is None:
            return None
        if len(values) > 1:
            raise unreadable_form(f"the field '{name[:100]}' is given more than once.")
        return values[0]


def scan_head(data: bytes, boundary: bytes, *, final: bool) -> FormHead | None:
    """Parse the form's beginning; None while more bytes are needed to reach a file part.

    With `final` (the body ended, or the peek limit was reached) a form that stops before its
    end or its first file part is refused: its later fields would go unread.
    """
    head = FormHead()
    opener = b"--" + boundary
    delimiter = b"\r\n" + opener

    def more() -> FormHead | None:
        if final:
            raise unreadable_form(
                f"its fields must end, or reach the first file, within {PEEK_LIMIT} bytes."
            )
        return None

    if not data.startswith(opener):
        if opener.startswith(data):
            return more()
        raise unreadable_form("the body does not start with the form's boundary.")
    at = len(opener)
    while True:
        if len(data) < at + 2:
            return more()
        if data[at : at + 2] == b"--":
            return head
        if data[at : at + 2] != b"\r\n":
            raise unreadable_form("a boundary is not followed by a line break.")
        headers_end = data.find(b"\r\n\r\n", at)
        if headers_end < 0:
            if len(data) - at > HEAD_LIMIT:
                raise unreadable_form("a part's headers are too long.")
            return more()
        part = parse_part_head(data[at + 2 : headers_end])
        start = headers_end + 4
        if part.filename is not None:
            head.file_field, head.file_data_at = part.name, start
            return head
        end = data.find(delimiter, start)
        if end < 0:
            return more()
        head.fields.setdefault(part.name, []).append(data[start:end])
        at = end + len(delimiter)


class FormWatcher:
    """Watches a form from its first file part's data on, as the body streams.

    Feeds that file part's bytes to `sink` (which may refuse), and refuses a later part named
    in `reads` (a field a step read before the file: a second one could be the one the
    upstream uses) or, with `check_value`, a later simple field whose value it refuses.
    Holds back at most the delimiter's length of file data, and one part head.
    """

    def __init__(
        self,
        boundary: bytes,
        data_at: int,
        sink: Sink | None = None,
        reads: Collection[str] = (),
        check_value: Callable[[str, bytes], None] | None = None,
    ):
        self._delimiter = b"\r\n--" + boundary
        self._skip = data_at
        self._held = b""
        self._sink = sink
        self._reads = reads
        self._check_value = check_value
        self._in_head = False
        self._first_file = True
        self._field: str | None = None
        self._value = b""
        self._done = False

    def __call__(self, chunk: bytes) -> None:
        if self._done:
            return
        if self._skip:
            dropped = min(self._skip, len(chunk))
            self._skip -= dropped
            chunk = chunk[dropped:]
        data = self._held + chunk
        self._held = b""
        while data and not self._done:
            data = self._head(data) if self._in_head else self._data(data)

    def _data(self, data: bytes) -> bytes:
        end = data.find(self._delimiter)
        if end < 0:
            keep = min(len(data), len(self._delimiter) - 1)
            self._part_data(data[: len(data) - keep])
            self._held = data[len(data) - keep :]
            return b""
        self._part_data(data[:end])
        self._part_end()
        self._in_head = True
        return data[end + len(self._delimiter) :]

    def _head(self, data: bytes) -> bytes:
        if len(data) < 2:
            self._held = data
            return b""
        if data[:2] == b"--":
            self._done = True
            return b""
        if data[:2] != b"\r\n":
            raise unreadable_form("a boundary is not followed by a line break.")
        end = data.find(b"\r\n\r\n")
        if end < 0:
            if len(data) > HEAD_LIMIT:
                raise unreadable_form("a part's headers are too long.")
            self._held = data
            return b""
        part = parse_part_head(data[2:end])
        if part.name in self._reads:
            raise unreadable_form(
                f"the field '{part.name[:100]}' must be given once, before the first file."
            )
        self._field = part.name if part.filename is None else None
        self._in_head = False
        return data[end + 4 :]

    def _part_data(self, data: bytes) -> None:
        if self._first_file:
            self._feed(data)
        elif self._field is not None and self._check_value is not None:
            self._value = (self._value + data)[:_VALUE_LIMIT]

    def _part_end(self) -> None:
        if self._first_file:
            self._first_file = False
            self._feed(None)
        elif self._field is not None and self._check_value is not None:
            self._check_value(self._field, self._value)
        self._field, self._value = None, b""

    def finish(self) -> None:
        """The body ended: a file part cut short still ends for `sink`."""
        if not self._done:
            self._done = True
            if self._first_file and not self._in_head:
                self._feed(self._held)
                self._feed(None)

    def _feed(self, data: bytes | None) -> None:
        if self._sink is None:
            return
        refusal = self._sink(data) if data is None or data else None
        if refusal is not None:
            raise RelayError(403, refusal, param="file", code="model_not_allowed")
