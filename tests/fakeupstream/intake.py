"""Reading request bodies as they arrive: hashed chunk by chunk, multipart parts spooled to disk."""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from aiohttp import web
from python_multipart.exceptions import ParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from .errors import bad_request
from .records import BODY_KEEP_LIMIT

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

JSON_KEEP_LIMIT = 64 * 1024 * 1024
NOT_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
    "sent was not valid JSON.)"
)


@dataclass
class Part:
    """One multipart part: fields stay in memory, file parts live in a spool file."""

    name: str
    filename: str | None
    content_type: str | None
    size: int = 0
    sha256: str = ""
    path: Path | None = None
    value: bytes = b""

    def read_bytes(self) -> bytes:
        return self.path.read_bytes() if self.path is not None else self.value

    def text(self) -> str:
        return self.value.decode("utf-8", "replace")


@dataclass
class Body:
    sha256: str
    size: int
    content_type: str
    data: bytes | None = None
    parts: list[Part] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        if not self.data:
            raise bad_request(NOT_JSON)
        try:
            value = json.loads(self.data)
        except ValueError as exc:
            raise bad_request(NOT_JSON) from exc
        if not isinstance(value, dict):
            raise bad_request("The request body must be a JSON object.")
        return value

    def field(self, name: str) -> str | None:
        for part in self.parts:
            if part.name == name and part.path is None:
                return part.text()
        return None

    def file(self, name: str) -> Part | None:
        for part in self.parts:
            if part.name == name and part.path is not None:
                return part
        return None

    def discard(self) -> None:
        """Remove spool files nobody claimed (a stored file's part is moved away first)."""
        for part in self.parts:
            if part.path is not None:
                part.path.unlink(missing_ok=True)


class _PartCollector:
    def __init__(self, spool_dir: Path) -> None:
        self.spool_dir = spool_dir
        self.parts: list[Part] = []
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, str] = {}
        self._sink: IO[bytes] | None = None
        self._value = bytearray()
        self._hash = hashlib.sha256()
        self._size = 0

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda d, s, e: self._header_name.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._header_value.extend(d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_part_end": self._end,
        }

    def _begin(self) -> None:
        self._headers = {}
        self._value = bytearray()
        self._hash = hashlib.sha256()
        self._size = 0

    def _header_end(self) -> None:
        name = self._header_name.decode("latin-1").lower()
        self._headers[name] = self._header_value.decode("utf-8", "replace")
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get("content-disposition", ""))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        filename = params.get(b"filename")
        part = Part(
            name=name,
            filename=filename.decode("utf-8", "replace") if filename is not None else None,
            content_type=self._headers.get("content-type"),
        )
        if part.filename is not None:
            handle = tempfile.NamedTemporaryFile(dir=self.spool_dir, delete=False)  # noqa: SIM115
            part.path = Path(handle.name)
            self._sink = handle
        self.parts.append(part)

    def _data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        self._hash.update(chunk)
        self._size += len(chunk)
        if self._sink is not None:
            self._sink.write(chunk)
        else:
            self._value.extend(chunk)

    def _end(self) -> None:
        part = self.parts[-1]
        part.size = self._size
        part.sha256 = self._hash.hexdigest()
        if self._sink is not None:
            self._sink.close()
            self._sink = None
        else:
            part.value = bytes(self._value)

    def abandon(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None
        for part in self.parts:
            if part.path is not None:
                part.path.unlink(missing_ok=True)


async def read_body(request: web.Request, spool_dir: Path) -> tuple[Body, bytes | None]:
    """Consume the whole request body; return it and the copy to log (None when over 1 MiB).

    Bytes are hashed as they arrive and multipart file parts go straight to disk, so a
    large upload never sits in memory.
    """
    content_type = request.headers.get("Content-Type", "")
    mime, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    collector: _PartCollector | None = None
    parser: MultipartParser | None = None
    if mime == b"multipart/form-data" and boundary:
        collector = _PartCollector(spool_dir)
        parser = MultipartParser(boundary, collector.callbacks())
    keep_limit = BODY_KEEP_LIMIT if parser is not None else JSON_KEEP_LIMIT
    digest = hashlib.sha256()
    size = 0
    kept = bytearray()
    try:
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            size += len(chunk)
            if size <= keep_limit:
                kept.extend(chunk)
            if parser is not None:
                parser.write(chunk)
        if parser is not None:
            parser.finalize()
    except ParseError as exc:
        if collector is not None:
            collector.abandon()
        raise bad_request(f"Could not parse multipart form: {exc}") from exc
    except BaseException:
        if collector is not None:
            collector.abandon()
        raise
    whole = bytes(kept) if size <= keep_limit else None
    body = Body(
        sha256=digest.hexdigest(),
        size=size,
        content_type=content_type,
        data=whole if parser is None else None,
        parts=collector.parts if collector is not None else [],
    )
    logged = whole if size <= BODY_KEEP_LIMIT else None
    return body, logged
