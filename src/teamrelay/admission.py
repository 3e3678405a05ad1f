"""What a request must be before it goes upstream: a known body kind, a size, an allowed model.

JSON bodies are read whole (bounded by RELAY_MAX_JSON_BYTES) because policy needs them and they
are then sent as the same bytes; forms and SDP stream, with at most a peek at a form's head.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache

from starlette.types import Receive

from teamrelay.body import RequestBody
from teamrelay.catalog import JsonlModelGate, Operation
from teamrelay.config import Settings
from teamrelay.errors import RelayError, too_large, unsupported_media_type
from teamrelay.headers import REQUEST_ID
from teamrelay.multipart import PEEK_LIMIT, FilePartWatcher, boundary_of, scan_head
from teamrelay.routing import Router

_CLIENT_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


@lru_cache(maxsize=256)
def body_kind(content_type: bytes) -> str | None:
    """`json`, `multipart` or `sdp`: the only request bodies the OpenAI API takes."""
    media = content_type.split(b";", 1)[0].strip().lower()
    if media == b"application/json" or media.endswith(b"+json"):
        return "json"
    if media == b"multipart/form-data":
        return "multipart"
    if media == b"application/sdp":
        return "sdp"
    return None


@dataclass(slots=True)
class RequestHead:
    """What the hot path needs from the request headers, gathered in one pass."""

    key: str | None = None
    request_id: bytes | None = None
    content_type: bytes = b""
    content_length: int | None = None
    chunked: bool = False

    @classmethod
    def parse(cls, headers: list[tuple[bytes, bytes]]) -> RequestHead:
        """Lower-case ASGI names; of a repeated header the last one counts."""
        found = dict(headers)
        get = found.get
        head = cls(content_type=get(b"content-type", b""), chunked=b"transfer-encoding" in found)
        key = get(b"x-relay-key")
        if key is not None:
            head.key = key.strip().decode("latin-1") or None
        if head.key is None:
            bearer = get(b"authorization")
            if bearer is not None and bearer[:7].lower() == b"bearer ":
                head.key = bearer[7:].strip().decode("latin-1") or None
        length = get(b"content-length")
        if length is not None:
            head.content_length = int(length) if length.isdigit() else -1
        request_id = get(REQUEST_ID)
        if request_id is not None and _CLIENT_REQUEST_ID.fullmatch(request_id):
            head.request_id = request_id
        return head

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)


class Admission:
    def __init__(self, settings: Settings, router: Router) -> None:
        self.router = router
        self.allowlist = router.allowlist
        self._json_limit = settings.max_json_bytes
        self._body_limit = settings.max_body_bytes

    async def json_body(self, head: RequestHead, receive: Receive) -> bytes:
        """A JSON body the relay itself must read (the /v1/proxy envelope)."""
        if head.has_body and body_kind(head.content_type) != "json":
            raise unsupported_media_type(head.content_type.decode("latin-1"))
        self._check_length(head, self._json_limit)
        return await RequestBody(receive, self._json_limit).read() if head.has_body else b""

    async def body(
        self, head: RequestHead, operation: Operation, receive: Receive
    ) -> bytes | RequestBody | None:
        if not head.has_body:
            return None
        kind = body_kind(head.content_type)
        if kind is None or not self.router.accepts(operation, kind):
            raise unsupported_media_type(head.content_type.decode("latin-1"))
        limit = self._json_limit if kind == "json" else self._body_limit
        self._check_length(head, limit)
        body = RequestBody(receive, limit)
        if kind == "json":
            data = await body.read()
            if not self.allowlist.is_open:
                self.router.check_model(operation, data)
                self._check_upload_purpose(operation, data)
            return data
        if kind == "multipart" and not self.allowlist.is_open:
            await self._check_form(head, operation, body)
        return body

    def _check_length(self, head: RequestHead, limit: int) -> None:
        if head.content_length is not None and head.content_length < 0:
            raise RelayError(400, "Invalid Content-Length header.", code="invalid_request")
        if head.content_length is not None and head.content_length > limit:
            raise too_large(limit)

    def _check_upload_purpose(self, operation: Operation, data: bytes) -> None:
        """Parts of an Upload can't be tied to a model check, so batch input goes via /files."""
        if operation.operation_id != "createUpload":
            return
        try:
            purpose = json.loads(data).get("purpose")
        except (ValueError, AttributeError):
            purpose = None
        if purpose == "batch":
            raise RelayError(
                403,
                "With a model allowlist, upload batch input files with POST /v1/files, "
                "where each line's model is checked.",
                param="purpose",
                code="model_not_allowed",
            )

    async def _check_form(self, head: RequestHead, operation: Operation, body: RequestBody) -> None:
        is_batch_file = operation.operation_id == "createFile"
        if not (operation.runs_model or is_batch_file):
            return
        boundary = boundary_of(head.content_type)
        if boundary is None:
            raise RelayError(400, "multipart/form-data without a boundary.", code="invalid_body")
        data = await body.peek(
            lambda d: scan_head(d, boundary, final=False) is not None, PEEK_LIMIT
        )
        form = scan_head(data, boundary, final=True)
        assert form is not None  # final=True always answers
        if operation.runs_model:
            model = _form_model(form.fields, operation)
            if model is not None or not operation.model_optional:
                self.router.check_model_name(model)
        if is_batch_file and form.file_data_at is not None:
            purpose = form.fields.get("purpose")
            if purpose is None:
                raise RelayError(
                    403,
                    "With a model allowlist, send the 'purpose' field before the file.",
                    param="purpose",
                    code="model_not_allowed",
                )
            if purpose.strip() == b"batch":
                gate = JsonlModelGate(self.allowlist)
                watcher = FilePartWatcher(
                    boundary,
                    form.file_data_at,
                    lambda d: gate.finish() if d is None else gate.feed(d),
                )
                body.inspector = watcher
                body.on_complete = watcher.finish


def _form_model(fields: dict[str, bytes], operation: Operation) -> str | None:
    path = operation.model_paths[0]
    raw = fields.get(path[0])
    if raw is None:
        return None
    if len(path) == 1:
        return raw.decode("utf-8", "replace").strip()
    try:
        value = json.loads(raw)
        for part in path[1:]:
            value = value.get(part)
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None
