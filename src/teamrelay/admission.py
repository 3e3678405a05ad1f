"""What a request must be before it goes upstream: a known body kind, a size, an allowed model.

JSON bodies are read whole (bounded by RELAY_MAX_JSON_BYTES) because policy needs them and they
are then sent as the same bytes; forms and SDP stream, with at most a peek at a form's head.
Every JSON body must be UTF-8 (`check_json_text`), for every key: the model allowlist, the
isolation scan, the stream flag and the estimates all read it as UTF-8, and the OpenAI API
takes nothing else either.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from starlette.types import Receive

from teamrelay.body import RequestBody, check_json_text, parse_json
from teamrelay.catalog import JsonlModelGate, Operation
from teamrelay.config import Settings
from teamrelay.errors import RelayError, too_large, unsupported_media_type
from teamrelay.headers import REQUEST_ID
from teamrelay.isolation.references import form_value_ids
from teamrelay.multipart import PEEK_LIMIT, FormHead, FormWatcher, boundary_of, scan_head
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
        if not head.has_body:
            return b""
        data = await RequestBody(receive, self._json_limit).read()
        check_json_text(data)
        return data

    async def body(
        self, head: RequestHead, operation: Operation, receive: Receive, *, reads_ids: bool = False
    ) -> bytes | RequestBody | None:
        """`reads_ids`: isolation will check the ids the body names (a confined key)."""
        if not head.has_body:
            return None
        kind = body_kind(head.content_type)
        if kind is None or not self.router.accepts(operation, kind):
            raise unsupported_media_type(head.content_type.decode("latin-1"))
        limit = self._json_limit if kind == "json" else self._body_limit
        self._check_length(head, limit)
        body = RequestBody(receive, limit, kind)
        if kind == "json":
            data = await body.read()
            check_json_text(data)
            if not self.allowlist.is_open:
                self.router.check_model(operation, data)
                self._check_upload_purpose(operation, data)
            return data
        if kind == "multipart":
            await self._read_form(head, operation, body, reads_ids)
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
        document = parse_json(data, object_pairs_hook=_unique_purpose)
        purpose = document.get("purpose") if isinstance(document, dict) else None
        if purpose == "batch":
            raise RelayError(
                403,
                "With a model allowlist, upload batch input files with POST /v1/files, "
                "where each line's model is checked.",
                param="purpose",
                code="model_not_allowed",
            )

    async def _read_form(
        self, head: RequestHead, operation: Operation, body: RequestBody, reads_ids: bool
    ) -> None:
        """The form's head, for the steps that read a form: the allowlist (model, purpose),
        and isolation (`reads_ids`: ids in any field). Kept on `body.form`; the rest of the
        form is watched as it streams so no field a step read comes again after the file."""
        is_batch_file = operation.operation_id == "createFile"
        checks_model = not self.allowlist.is_open and (operation.runs_model or is_batch_file)
        if not (checks_model or reads_ids):
            return
        boundary = boundary_of(head.content_type)
        data = await body.peek(
            lambda d: scan_head(d, boundary, final=False) is not None, PEEK_LIMIT
        )
        form = scan_head(data, boundary, final=True)
        assert form is not None  # final=True always answers or raises
        body.form = form
        reads: set[str] = set()
        sink = None
        if checks_model and operation.runs_model:
            field_name = operation.model_paths[0][0]
            reads.add(field_name)
            model = _form_model(form, operation)
            if model is not None or not operation.model_optional:
                self.router.check_model_name(model)
        if checks_model and is_batch_file:
            reads.add("purpose")
            purpose = form.value("purpose")
            if form.file_data_at is not None and purpose is None:
                raise RelayError(
                    403,
                    "With a model allowlist, send the 'purpose' field before the file.",
                    param="purpose",
                    code="model_not_allowed",
                )
            if (
                form.file_data_at is not None
                and purpose is not None
                and purpose.strip() == b"batch"
            ):
                assert form.file_field is not None
                reads.add(form.file_field)
                gate = JsonlModelGate(self.allowlist)
                sink = lambda d: gate.finish() if d is None else gate.feed(d)  # noqa: E731
        if form.file_data_at is None:
            return
        watcher = FormWatcher(
            boundary,
            form.file_data_at,
            sink,
            reads,
            _refuse_late_ids if reads_ids else None,
        )
        body.inspector = watcher
        body.on_complete = watcher.finish


def _refuse_late_ids(name: str, value: bytes) -> None:
    """Isolation checks ids before anything goes upstream: after the file is too late."""
    if form_value_ids(value):
        raise RelayError(
            400,
            f"The field '{name[:100]}' names an object: send such fields before the first file.",
            param=name[:100],
            code="invalid_body",
        )


def _unique_purpose(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """Parsers disagree on which of two `purpose` keys wins: refuse the question."""
    if sum(key == "purpose" for key, _ in pairs) > 1:
        raise ValueError("'purpose' is given twice")
    return dict(pairs)


def _form_model(form: FormHead, operation: Operation) -> str | None:
    path = operation.model_paths[0]
    raw = form.value(path[0])
    if raw is None:
        return None
    if len(path) == 1:
        return raw.decode("utf-8", "replace").strip()
    value = parse_json(raw)
    for part in path[1:]:
        value = value.get(part) if isinstance(value, dict) else None
    return value if isinstance(value, str) else None
