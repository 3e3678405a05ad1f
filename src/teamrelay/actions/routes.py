"""The GPT Actions wrappers: curated OpenAI operations as compact JSON calls a GPT can make.

Every wrapper authenticates with the relay key, runs within RELAY_ACTIONS_ANSWER_BUDGET
(under ChatGPT's 45 s), answers under 100,000 characters, and passes upstream refusals on
(a 429 always with Retry-After). The route metadata here is the Actions schema's source:
schema.py generates `/openapi.actions.json` from these routes at start-up.
"""

# No `from __future__ import annotations`: FastAPI reads these handlers' annotations, and
# they name closures (the dependencies) that string annotations could not resolve.

import asyncio
import base64
import codecs
import json
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import aiohttp
import yaml
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.routing import APIRoute
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from teamrelay.accounting import Ticket, wrapper_entry
from teamrelay.actions import results
from teamrelay.actions.bodies import (
    AddFilesBody,
    AskBody,
    BatchBody,
    BatchRef,
    EmbedBody,
    FileRefBody,
    ImageBody,
    ProxyBody,
    ResponseRef,
    SearchBody,
    UploadBody,
    VectorStoreBody,
    VectorStoreRef,
)
from teamrelay.actions.calls import CALLER, Deadline, OpenAICalls, Passthrough, segment
from teamrelay.actions.compact import JsonAnswer, fit_answer
from teamrelay.actions.files_in import (
    Fetcher,
    FileRef,
    HostRules,
    LinkBody,
    describe,
    parse_refs,
    upload_form,
)
from teamrelay.actions.files_out import (
    DOWNLOAD_PATH,
    PURPOSE_BLOB,
    PURPOSE_FILE,
    BlobCache,
    LinkSigner,
    content_disposition,
    derive_key,
    guess_type,
    inline,
    inline_size,
)
from teamrelay.actions.limits import ANSWER_CHARS, MAX_FILE_OUT_BYTES
from teamrelay.actions.schema import ActionsSchema
from teamrelay.admission import RequestHead
from teamrelay.catalog import parse_envelope
from teamrelay.errors import RelayError
from teamrelay.gateway import Relay, new_request_id
from teamrelay.keys.store import KeyRecord
from teamrelay.limits.gate import Admitted

_PENDING = frozenset({"queued", "in_progress"})
_MAX_BODY = 1024 * 1024
_IDS = r"^[A-Za-z0-9_.:\-]{1,128}$"
_CHUNK = 64 * 1024


class ActionsRoute(APIRoute):
    """Sends an upstream refusal on as it came, instead of as a relay error."""

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                response: Response = await handler(request)
            except Passthrough as refusal:
                return Response(refusal.body, refusal.status, headers=refusal.headers)
            return response

        return run


def _ok(description: str, schema: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    return {200: {"description": description, "content": {"application/json": {"schema": schema}}}}


def _extra(consequential: bool, *wraps: str) -> dict[str, Any]:
    return {"x-openai-isConsequential": consequential, "x-relay-wraps": list(wraps)}


def _id_path(description: str, example: str) -> Any:
    return Path(pattern=_IDS, description=description, examples=[example])


class Bridge:
    """What the wrappers share: upstream calls, the link signer, the file fetcher, the schema."""

    def __init__(self, relay: Relay) -> None:
        settings = relay.settings
        self.relay = relay
        self.settings = settings
        self.budget = settings.actions_answer_budget
        self.calls = OpenAICalls(
            relay.upstream,
            relay.upstream_headers,
            relay.router.catalog,
            relay.router.policy,
            relay.isolation,
        )
        secret = settings.signing_key.get_secret_value() if settings.signing_key else None
        key = derive_key(secret, settings.openai_api_key.get_secret_value())
        self.signer = LinkSigner(key, settings.actions_link_ttl)
        self.blobs = BlobCache(settings.actions_link_ttl)
        rules = HostRules(
            settings.actions_file_hosts, allow_loopback=settings.actions_allow_loopback
        )
        self.fetcher = Fetcher(rules, settings.actions_max_file_bytes, settings.actions_ca_file)
        self.schema = ActionsSchema(relay, self.calls)

    def base_url(self, request: Request) -> str:
        return self.settings.public_url or str(request.base_url).rstrip("/")

    def link(self, request: Request, purpose: str, obj: str, name: str, mime: str) -> str:
        token = self.signer.sign(purpose, obj, name, mime)
        return f"{self.base_url(request)}{DOWNLOAD_PATH}{token}"

    async def settle(self, response: dict[str, Any], deadline: Deadline) -> dict[str, Any]:
        """Poll a background response until it ends or the budget is nearly spent."""
        interval = 0.2
        while response.get("status") in _PENDING:
            if deadline.remaining() < interval + 0.5:
                return response
            await asyncio.sleep(interval)
            interval = min(interval * 1.5, 2.0)
            poll = Deadline(deadline.at - 0.3)
            try:
                response = await self.calls.json(
                    "GET", f"/responses/{segment(str(response.get('id')))}", poll
                )
            except RelayError as exc:
                if exc.status == 504:
                    return response
                raise
        return response

    async def upload_bytes(
        self, data: bytes, name: str, purpose: str, deadline: Deadline
    ) -> dict[str, Any]:
        async def once() -> AsyncIterator[bytes]:
            yield data

        ref = FileRef("", name, guess_type(name))
        form = upload_form(purpose, ref, once())
        created: dict[str, Any] = await self.calls.json_form("/files", form, deadline)
        return created


def actions_router(relay: Relay) -> APIRouter:
    """The wrapper routes (keyed), the signed download route and the schema routes (public)."""
    bridge = Bridge(relay)
    calls = bridge.calls

    async def caller(request: Request) -> KeyRecord | None:
        head = RequestHead.parse(request.scope["headers"])
        identity = await relay.authenticate(head, "actions")
        request.state.key = identity
        CALLER.set(identity)
        if head.content_length is not None and head.content_length > _MAX_BODY:
            raise RelayError(413, "Actions requests are small JSON.", code="request_too_large")
        if identity is not None and identity.limits:
            request.state.admitted = await _admit(identity, request)
        return identity

    async def _admit(key: KeyRecord, request: Request) -> Admitted | None:
        """The key's rate limits and budget, charged to the first OpenAI operation it wraps."""
        route = request.scope.get("route")
        wraps = (getattr(route, "openapi_extra", None) or {}).get("x-relay-wraps", [])
        operation = relay.router.catalog.by_id.get(wraps[0]) if wraps else None
        if operation is None:
            return None
        return await relay.limits.admit(key, operation, await request.body())

    def new_deadline() -> Deadline:
        return Deadline.after(bridge.budget)

    Budget = Annotated[Deadline, Depends(new_deadline)]

    class Route(ActionsRoute):
        def get_route_handler(self) -> Callable[[Request], Any]:
            handler = super().get_route_handler()
            wraps = (self.openapi_extra or {}).get("x-relay-wraps", [])
            name = self.operation_id or self.name
            keyed_route = any(d.dependency is caller for d in self.dependencies)

            async def run(request: Request) -> Response:
                ticket = Ticket.open(request.method, request.url.path, new_request_id())
                answer: Response | None = None
                try:
                    for operation_id in wraps:
                        calls.check(operation_id)
                    answer = await handler(request)
                    return answer
                except RelayError as error:
                    ticket.refusal = error
                    raise
                except Passthrough as refused:
                    ticket.refusal = RelayError(
                        refused.status, "", code=f"upstream_{refused.status}"
                    )
                    raise
                finally:
                    if keyed_route:
                        ticket.key = getattr(request.state, "key", None)
                        entry = wrapper_entry(ticket, f"actions.{name}", answer)
                        relay.settle(entry, getattr(request.state, "admitted", None))

            return run

    router = APIRouter(route_class=Route)
    keyed = APIRouter(route_class=Route, dependencies=[Depends(caller)])

    # Models and answers

    @keyed.post(
        "/actions/ask",
        operation_id="askModel",
        summary="Ask an OpenAI model",
        description=(
            "Ask a model (Responses API), optionally searching vector stores or the web. "
            "Long work comes back as status in_progress with a response_id: then call "
            "getAnswer."
        ),
        responses=_ok("The answer, or its progress.", results.ANSWER_SCHEMA),
        openapi_extra=_extra(True, "createResponse", "getResponse"),
    )
    async def ask(body: AskBody, deadline: Budget) -> Response:
        model = body.model or bridge.settings.default_model
        relay.router.check_model_name(model)
        request: dict[str, Any] = {
            "model": model,
            "input": body.input,
            "background": True,
            "store": True,
        }
        tools: list[dict[str, Any]] = []
        if body.vector_store_ids:
            tools.append({"type": "file_search", "vector_store_ids": body.vector_store_ids})
        if body.web_search:
            tools.append({"type": "web_search"})
        if tools:
            request["tools"] = tools
        for key in ("instructions", "previous_response_id", "max_output_tokens"):
            if getattr(body, key) is not None:
                request[key] = getattr(body, key)
        created = await calls.json("POST", "/responses", deadline, body=request)
        return JsonAnswer(results.answer(await bridge.settle(created, deadline)))

    @keyed.get(
        "/actions/answers/{response_id}",
        operation_id="getAnswer",
        summary="Get a model's answer",
        description=(
            "Fetch an answer by response_id: waits briefly while it is still running. "
            "Pass offset to read on when the text was truncated."
        ),
        responses=_ok("The answer, or its progress.", results.ANSWER_SCHEMA),
        openapi_extra=_extra(False, "getResponse"),
    )
    async def get_answer(
        response_id: Annotated[str, _id_path("The response_id from askModel.", "resp_abc123")],
        deadline: Budget,
        offset: Annotated[
            int, Query(ge=0, description="Where to continue a truncated text.", examples=[0])
        ] = 0,
    ) -> Response:
        found = await calls.json("GET", f"/responses/{segment(response_id)}", deadline)
        return JsonAnswer(results.answer(await bridge.settle(found, deadline), offset))

    @keyed.post(
        "/actions/answers/cancel",
        operation_id="cancelAnswer",
        summary="Stop a running answer",
        description="Cancel an answer that is still in progress.",
        responses=_ok("The cancelled answer.", results.ANSWER_SCHEMA),
        openapi_extra=_extra(True, "cancelResponse"),
    )
    async def cancel_answer(body: ResponseRef, deadline: Budget) -> Response:
        path = f"/responses/{segment(body.response_id)}/cancel"
        return JsonAnswer(results.answer(await calls.json("POST", path, deadline, body={})))

    @keyed.post(
        "/actions/embeddings",
        operation_id="embedText",
        summary="Embed texts as vectors",
        description="Turn texts into embedding vectors (for similarity or clustering).",
        responses=_ok("The vectors.", results.EMBEDDINGS_SCHEMA),
        openapi_extra=_extra(True, "createEmbedding"),
    )
    async def embed(body: EmbedBody, deadline: Budget) -> Response:
        relay.router.check_model_name(body.model)
        request = body.model_dump(exclude_none=True)
        return JsonAnswer(
            results.embeddings(await calls.json("POST", "/embeddings", deadline, body=request))
        )

    @keyed.get(
        "/actions/models",
        operation_id="listModels",
        summary="List available models",
        description="The model ids this relay lets you use.",
        responses=_ok("Model ids.", results.MODELS_SCHEMA),
        openapi_extra=_extra(False, "listModels"),
    )
    async def list_models(deadline: Budget) -> Response:
        found = await calls.json("GET", "/models", deadline)
        allowlist = relay.router.allowlist
        ids = [i for i in results.model_ids(found) if allowlist.allows(i)]
        return JsonAnswer(fit_answer({"models": ids}, "Not every id fit."))

    @keyed.post(
        "/actions/images",
        operation_id="generateImage",
        summary="Generate an image",
        description="Create images from a prompt; they come back as files shown in the chat.",
        responses=_ok("The images, as files.", results.FILE_RESPONSE_SCHEMA),
        openapi_extra=_extra(True, "createImage"),
    )
    async def generate_image(body: ImageBody, request: Request, deadline: Budget) -> Response:
        relay.router.check_model_name(body.model)
        payload = body.model_dump(exclude_none=True)
        if body.model.startswith("dall-e"):
            payload["response_format"] = "b64_json"
        made = await calls.json("POST", "/images/generations", deadline, body=payload)
        kind = str(made.get("output_format") or "png")
        files: list[Any] = []
        room = ANSWER_CHARS - 2000
        for index, item in enumerate(made.get("data") or []):
            if isinstance(item.get("url"), str):
                files.append(item["url"])
                continue
            data = base64.b64decode(item.get("b64_json") or "")
            name, mime = f"image-{index + 1}.{kind}", f"image/{kind}"
            if inline_size(len(data), name, mime) <= room:
                files.append(inline(name, mime, data))
                room -= inline_size(len(data), name, mime)
            else:
                key = bridge.blobs.put(data)
                files.append(bridge.link(request, PURPOSE_BLOB, key, name, mime))
        answer: dict[str, Any] = {"openaiFileResponse": files}
        if made.get("usage"):
            answer["usage"] = made["usage"]
        return JsonAnswer(answer)

    # Vector stores

    @keyed.get(
        "/actions/vector_stores",
        operation_id="listVectorStores",
        summary="List vector stores",
        description="The searchable file collections, newest first.",
        responses=_ok("Vector stores.", results.LIST_STORES_SCHEMA),
        openapi_extra=_extra(False, "listVectorStores"),
    )
    async def list_vector_stores(
        deadline: Budget,
        limit: Annotated[int, Query(ge=1, le=100, description="Page size.", examples=[20])] = 20,
        after: Annotated[
            str | None, Query(pattern=_IDS, description="next_after from the previous page.")
        ] = None,
    ) -> Response:
        query = {"limit": limit, "after": after}
        found = await calls.json("GET", "/vector_stores", deadline, query=query)
        items = [results.vector_store_info(o) for o in found.get("data") or []]
        return JsonAnswer(results.listing("vector_stores", items, bool(found.get("has_more"))))

    @keyed.post(
        "/actions/vector_stores",
        operation_id="createVectorStore",
        summary="Create a vector store",
        description="Make a new searchable collection, optionally with files already uploaded.",
        responses=_ok("The new vector store.", results.VECTOR_STORE_SCHEMA),
        openapi_extra=_extra(True, "createVectorStore"),
    )
    async def create_vector_store(body: VectorStoreBody, deadline: Budget) -> Response:
        request: dict[str, Any] = {"name": body.name}
        if body.file_ids:
            request["file_ids"] = body.file_ids
        if body.expires_after_days:
            request["expires_after"] = {"anchor": "last_active_at", "days": body.expires_after_days}
        made = await calls.json("POST", "/vector_stores", deadline, body=request)
        return JsonAnswer(results.vector_store_info(made))

    @keyed.get(
        "/actions/vector_stores/{vector_store_id}",
        operation_id="getVectorStore",
        summary="Get a vector store",
        description="A vector store's status and file counts.",
        responses=_ok("The vector store.", results.VECTOR_STORE_SCHEMA),
        openapi_extra=_extra(False, "getVectorStore"),
    )
    async def get_vector_store(
        vector_store_id: Annotated[str, _id_path("The vector store id.", "vs_abc123")],
        deadline: Budget,
    ) -> Response:
        found = await calls.json("GET", f"/vector_stores/{segment(vector_store_id)}", deadline)
        return JsonAnswer(results.vector_store_info(found))

    @keyed.post(
        "/actions/vector_stores/delete",
        operation_id="deleteVectorStore",
        summary="Delete a vector store",
        description="Delete a vector store (its files stay in OpenAI files).",
        responses=_ok("What was deleted.", results.DELETED_SCHEMA),
        openapi_extra=_extra(True, "deleteVectorStore"),
    )
    async def delete_vector_store(body: VectorStoreRef, deadline: Budget) -> Response:
        path = f"/vector_stores/{segment(body.vector_store_id)}"
        return JsonAnswer(results.deleted(await calls.json("DELETE", path, deadline)))

    @keyed.post(
        "/actions/vector_stores/search",
        operation_id="searchVectorStore",
        summary="Search a vector store",
        description="Find passages in a vector store's files that match a query.",
        responses=_ok("Matching passages.", results.SEARCH_SCHEMA),
        openapi_extra=_extra(False, "searchVectorStore"),
    )
    async def search_vector_store(body: SearchBody, deadline: Budget) -> Response:
        path = f"/vector_stores/{segment(body.vector_store_id)}/search"
        request = {"query": body.query, "max_num_results": body.max_num_results}
        return JsonAnswer(
            results.search_hits(await calls.json("POST", path, deadline, body=request))
        )

    @keyed.post(
        "/actions/vector_stores/add_files",
        operation_id="addFilesToVectorStore",
        summary="Add files to a vector store",
        description="Index uploaded OpenAI files in a vector store so they can be searched.",
        responses=_ok("The files and their status.", results.ADDED_SCHEMA),
        openapi_extra=_extra(True, "createVectorStoreFile"),
    )
    async def add_files(body: AddFilesBody, deadline: Budget) -> Response:
        path = f"/vector_stores/{segment(body.vector_store_id)}/files"
        added = []
        for file_id in body.file_ids:
            entry = await calls.json("POST", path, deadline, body={"file_id": file_id})
            added.append({"file_id": entry.get("id"), "status": entry.get("status")})
        answer = {"vector_store_id": body.vector_store_id, "files": added}
        return JsonAnswer(fit_answer(answer, "Not every file fit in the answer."))

    # Files

    @keyed.post(
        "/actions/files/upload",
        operation_id="uploadChatFiles",
        summary="Store chat files in OpenAI",
        description=(
            "Upload the files the user attached in this chat to OpenAI files, and optionally "
            "add them to a vector store for searching."
        ),
        responses=_ok("The new OpenAI files.", results.UPLOADED_SCHEMA),
        openapi_extra=_extra(True, "createFile"),
    )
    async def upload_chat_files(body: UploadBody, deadline: Budget) -> Response:
        refs = parse_refs(body.openaiFileIdRefs)
        for ref in refs:
            bridge.fetcher.rules.check_url(ref.url)
        if body.vector_store_id:
            calls.check("createVectorStoreFile")
        stored = []
        async with bridge.fetcher.session() as session:
            for ref in refs:
                response = await bridge.fetcher.open(session, ref, deadline)
                stream = LinkBody(response, bridge.fetcher)
                try:
                    form = upload_form(body.purpose, ref, stream.chunks())
                    try:
                        created = await calls.json_form("/files", form, deadline)
                    except RelayError:
                        stream.raise_failure()
                        raise
                finally:
                    response.release()
                stored.append(describe(ref, created))
        if body.vector_store_id:
            path = f"/vector_stores/{segment(body.vector_store_id)}/files"
            for entry in stored:
                await calls.json("POST", path, deadline, body={"file_id": entry["file_id"]})
        answer: dict[str, Any] = {"files": stored}
        if body.vector_store_id:
            answer["vector_store_id"] = body.vector_store_id
        return JsonAnswer(answer)

    @keyed.get(
        "/actions/files",
        operation_id="listFiles",
        summary="List OpenAI files",
        description="Uploaded files, newest first; filter by purpose.",
        responses=_ok("Files.", results.LIST_FILES_SCHEMA),
        openapi_extra=_extra(False, "listFiles"),
    )
    async def list_files(
        deadline: Budget,
        purpose: Annotated[
            str | None, Query(description="assistants, batch, batch_output, user_data...")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=100, description="Page size.", examples=[20])] = 20,
        after: Annotated[
            str | None, Query(pattern=_IDS, description="next_after from the previous page.")
        ] = None,
    ) -> Response:
        query = {"purpose": purpose, "limit": limit, "after": after, "order": "desc"}
        found = await calls.json("GET", "/files", deadline, query=query)
        items = [results.file_info(o) for o in found.get("data") or []]
        return JsonAnswer(results.listing("files", items, bool(found.get("has_more"))))

    @keyed.get(
        "/actions/files/{file_id}",
        operation_id="getFile",
        summary="Get a file's details",
        description="Name, size, purpose and status of an OpenAI file.",
        responses=_ok("The file.", results.FILE_SCHEMA),
        openapi_extra=_extra(False, "retrieveFile"),
    )
    async def get_file(
        file_id: Annotated[str, _id_path("The file id.", "file-abc123")], deadline: Budget
    ) -> Response:
        return JsonAnswer(
            results.file_info(await calls.json("GET", f"/files/{segment(file_id)}", deadline))
        )

    @keyed.post(
        "/actions/files/delete",
        operation_id="deleteFile",
        summary="Delete an OpenAI file",
        description="Delete a file for good.",
        responses=_ok("What was deleted.", results.DELETED_SCHEMA),
        openapi_extra=_extra(True, "deleteFile"),
    )
    async def delete_file(body: FileRefBody, deadline: Budget) -> Response:
        found = await calls.json("DELETE", f"/files/{segment(body.file_id)}", deadline)
        return JsonAnswer(results.deleted(found))

    @keyed.get(
        "/actions/files/{file_id}/content",
        operation_id="getFileContent",
        summary="Give the user a file",
        description="Return an OpenAI file's content as a file in the chat (images, PDFs, data).",
        responses=_ok("The file, for the chat.", results.FILE_RESPONSE_SCHEMA),
        openapi_extra=_extra(False, "retrieveFile", "downloadFile"),
    )
    async def get_file_content(
        file_id: Annotated[str, _id_path("The file id.", "file-abc123")],
        request: Request,
        deadline: Budget,
    ) -> Response:
        meta = await calls.json("GET", f"/files/{segment(file_id)}", deadline)
        info = results.file_info(meta)
        name = str(meta.get("filename") or file_id)
        mime = guess_type(name)
        count = meta.get("bytes")
        if isinstance(count, int) and inline_size(count, name, mime) <= ANSWER_CHARS - 2000:
            response = await calls.open("GET", f"/files/{segment(file_id)}/content", deadline)
            try:
                data = await response.content.read(count + 1)
            finally:
                response.release()
            return JsonAnswer({"openaiFileResponse": [inline(name, mime, data)], "file": info})
        url = bridge.link(request, PURPOSE_FILE, file_id, name, mime)
        if isinstance(count, int) and count <= MAX_FILE_OUT_BYTES:
            return JsonAnswer({"openaiFileResponse": [url], "file": info})
        hint = "Too big to attach in ChatGPT (10 MB): give the user download_url (minutes)."
        return JsonAnswer({"file": info, "download_url": url, "hint": hint})

    @keyed.get(
        "/actions/files/{file_id}/text",
        operation_id="readFileText",
        summary="Read a file as text",
        description=(
            "Read a text file (for example batch results, .jsonl, .csv, .md) page by page; "
            "pass next_offset as offset to read on."
        ),
        responses=_ok("A page of text.", results.TEXT_SCHEMA),
        openapi_extra=_extra(False, "retrieveFile", "downloadFile"),
    )
    async def read_file_text(
        file_id: Annotated[str, _id_path("The file id.", "file-abc123")],
        deadline: Budget,
        offset: Annotated[int, Query(ge=0, description="Character to start at.", examples=[0])] = 0,
    ) -> Response:
        meta = await calls.json("GET", f"/files/{segment(file_id)}", deadline)
        response = await calls.open("GET", f"/files/{segment(file_id)}/content", deadline)
        try:
            window, more = await _text_window(response, offset, ANSWER_CHARS)
        finally:
            response.release()

        def hint(n: int) -> str:
            return f"More text follows: call readFileText with file_id {file_id} and offset {n}."

        base = {"file": results.file_info(meta)}
        return JsonAnswer(results.paged(base, "text", window, offset, hint, more=more))

    # Batches

    @keyed.post(
        "/actions/batches",
        operation_id="createBatch",
        summary="Start a batch job",
        description=(
            "Run many requests at half price within 24 h: give the requests (or an uploaded "
            ".jsonl file id). Check progress with getBatch."
        ),
        responses=_ok("The batch.", results.BATCH_SCHEMA),
        openapi_extra=_extra(True, "createBatch"),
    )
    async def create_batch(body: BatchBody, deadline: Budget) -> Response:
        input_file_id = body.input_file_id
        if body.requests:
            calls.check("createFile")
            lines = []
            for item in body.requests:
                model = item.body.get("model")
                relay.router.check_model_name(model if isinstance(model, str) else None)
                line = {"custom_id": item.custom_id, "method": "POST", "url": body.endpoint}
                lines.append(json.dumps({**line, "body": item.body}) + "\n")
            data = "".join(lines).encode()
            uploaded = await bridge.upload_bytes(data, "batch-input.jsonl", "batch", deadline)
            input_file_id = uploaded.get("id")
        if not input_file_id:
            raise RelayError(400, "Give requests or input_file_id.", param="requests")
        request: dict[str, Any] = {
            "input_file_id": input_file_id,
            "endpoint": body.endpoint,
            "completion_window": "24h",
        }
        if body.metadata:
            request["metadata"] = body.metadata
        return JsonAnswer(
            results.batch_info(await calls.json("POST", "/batches", deadline, body=request))
        )

    @keyed.get(
        "/actions/batches",
        operation_id="listBatches",
        summary="List batch jobs",
        description="Batch jobs, newest first.",
        responses=_ok("Batches.", results.LIST_BATCHES_SCHEMA),
        openapi_extra=_extra(False, "listBatches"),
    )
    async def list_batches(
        deadline: Budget,
        limit: Annotated[int, Query(ge=1, le=100, description="Page size.", examples=[20])] = 20,
        after: Annotated[
            str | None, Query(pattern=_IDS, description="next_after from the previous page.")
        ] = None,
    ) -> Response:
        found = await calls.json(
            "GET", "/batches", deadline, query={"limit": limit, "after": after}
        )
        items = [results.batch_info(o) for o in found.get("data") or []]
        return JsonAnswer(results.listing("batches", items, bool(found.get("has_more"))))

    @keyed.get(
        "/actions/batches/{batch_id}",
        operation_id="getBatch",
        summary="Check a batch job",
        description=(
            "A batch's status and counts; when completed, read output_file_id with readFileText."
        ),
        responses=_ok("The batch.", results.BATCH_SCHEMA),
        openapi_extra=_extra(False, "retrieveBatch"),
    )
    async def get_batch(
        batch_id: Annotated[str, _id_path("The batch id.", "batch_abc123")], deadline: Budget
    ) -> Response:
        found = await calls.json("GET", f"/batches/{segment(batch_id)}", deadline)
        return JsonAnswer(results.batch_info(found))

    @keyed.post(
        "/actions/batches/cancel",
        operation_id="cancelBatch",
        summary="Cancel a batch job",
        description="Stop a batch; finished requests are kept.",
        responses=_ok("The batch.", results.BATCH_SCHEMA),
        openapi_extra=_extra(True, "cancelBatch"),
    )
    async def cancel_batch(body: BatchRef, deadline: Budget) -> Response:
        path = f"/batches/{segment(body.batch_id)}/cancel"
        return JsonAnswer(results.batch_info(await calls.json("POST", path, deadline, body={})))

    # Everything else

    @keyed.post(
        "/actions/proxy",
        operation_id="callOpenAI",
        summary="Call another OpenAI API endpoint",
        description=(
            "Any allowlisted JSON call of the OpenAI API not covered above, for example "
            "GET /v1/models/{model} or POST /v1/moderations. No streaming, no uploads."
        ),
        responses=_ok("The API's answer.", results.ANY_SCHEMA),
        openapi_extra=_extra(True),
    )
    async def call_openai(body: ProxyBody, deadline: Budget) -> Response:
        proxied = parse_envelope(
            body.model_dump(exclude_none=True), relay.router.catalog, relay.router.policy
        )
        if proxied.body is not None:
            relay.router.check_model(proxied.operation, proxied.body)
        target = proxied.path[3:] + (f"?{proxied.query_string}" if proxied.query_string else "")
        data = None if proxied.body is None else proxied.body
        response = await calls.open(
            proxied.method,
            target,
            deadline,
            data=data,
            content_type="application/json" if data is not None else None,
        )
        try:
            raw = await response.read()
        finally:
            response.release()
        value = json.loads(raw) if raw else {}
        wrapped = value if isinstance(value, dict) else {"data": value}
        hint = "The answer was cut: ask for less (a smaller limit or a narrower call)."
        return JsonAnswer(fit_answer(wrapped, hint))

    # Public: signed downloads and the schema

    @router.get("/actions/download/{token}", include_in_schema=False)
    async def download(token: str) -> Response:
        link = bridge.signer.verify(token)
        headers = {
            "content-disposition": content_disposition(link.name),
            "cache-control": "private, no-store",
        }
        if link.purpose == PURPOSE_BLOB:
            data = bridge.blobs.get(link.object)
            if data is None:
                raise RelayError(410, "This download link has expired.", code="link_expired")
            return Response(data, media_type=link.mime_type, headers=headers)
        calls.check("downloadFile")
        deadline = Deadline.after(bridge.settings.read_timeout)
        response = await calls.open("GET", f"/files/{segment(link.object)}/content", deadline)
        if response.content_length is not None:
            headers["content-length"] = str(response.content_length)

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.content.iter_chunked(_CHUNK):
                    yield chunk
            finally:
                response.release()

        return StreamingResponse(
            body(),
            media_type=link.mime_type,
            headers=headers,
            background=BackgroundTask(response.release),
        )

    @router.get("/openapi.actions.json", include_in_schema=False)
    async def schema_json(request: Request) -> Response:
        document = bridge.schema.served(request.app, bridge.base_url(request))
        return JsonAnswer(document)

    @router.get("/openapi.actions.yaml", include_in_schema=False)
    async def schema_yaml(request: Request) -> Response:
        document = bridge.schema.served(request.app, bridge.base_url(request))
        text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
        return Response(text, media_type="application/yaml")

    async def warm() -> None:
        app = relay.local
        if isinstance(app, FastAPI):
            app.state.actions_schema = bridge.schema
        bridge.schema.document(app)

    relay.startup.append(warm)
    router.include_router(keyed)
    return router


async def _text_window(
    response: aiohttp.ClientResponse, offset: int, chars: int
) -> tuple[str, bool]:
    """Characters `offset` to `offset + chars` of a UTF-8 stream, holding no more than that."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    skipped = 0
    pieces: list[str] = []
    held = 0
    async for chunk in response.content.iter_chunked(_CHUNK):
        text = decoder.decode(chunk)
        if skipped < offset:
            drop = min(len(text), offset - skipped)
            text, skipped = text[drop:], skipped + drop
        if text:
            pieces.append(text)
            held += len(text)
        if held > chars:
            window = "".join(pieces)
            return window[:chars], True
    pieces.append(decoder.decode(b"", final=True))
    return "".join(pieces), False
