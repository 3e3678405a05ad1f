"""GPT Actions wrappers: files from the chat in, and files, content and text back out."""

# No `from __future__ import annotations`: FastAPI reads these handlers' annotations, and
# they name the deadline dependency passed in as `Budget`.

import codecs
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from teamrelay.actions import results
from teamrelay.actions.bodies import (
    FileRefBody,
    UploadBody,
)
from teamrelay.actions.bridge import (
    Bridge,
    PageAfter,
    PageSize,
    id_path,
    ok_response,
    route_extra,
)
from teamrelay.actions.calls import Streamed, segment
from teamrelay.actions.compact import JsonAnswer
from teamrelay.actions.files_in import (
    LinkBody,
    describe,
    parse_refs,
    upload_form,
)
from teamrelay.actions.files_out import (
    PURPOSE_FILE,
    guess_type,
    inline,
    inline_size,
)
from teamrelay.actions.limits import ANSWER_CHARS, MAX_FILE_OUT_BYTES
from teamrelay.errors import RelayError


def add_routes(keyed: APIRouter, bridge: Bridge, Budget: Any) -> None:
    calls = bridge.calls

    @keyed.post(
        "/actions/files/upload",
        operation_id="uploadChatFiles",
        summary="Store chat files in OpenAI",
        description=(
            "Upload the files the user attached in this chat to OpenAI files, and optionally "
            "add them to a vector store for searching."
        ),
        responses=ok_response("The new OpenAI files.", results.UPLOADED_SCHEMA),
        openapi_extra=route_extra(True, "createFile"),
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
        responses=ok_response("Files.", results.LIST_FILES_SCHEMA),
        openapi_extra=route_extra(False, "listFiles"),
    )
    async def list_files(
        deadline: Budget,
        purpose: Annotated[
            str | None, Query(description="assistants, batch, batch_output, user_data...")
        ] = None,
        limit: PageSize = 20,
        after: PageAfter = None,
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
        responses=ok_response("The file.", results.FILE_SCHEMA),
        openapi_extra=route_extra(False, "retrieveFile"),
    )
    async def get_file(
        file_id: Annotated[str, id_path("The file id.", "file-abc123")], deadline: Budget
    ) -> Response:
        return JsonAnswer(
            results.file_info(await calls.json("GET", f"/files/{segment(file_id)}", deadline))
        )

    @keyed.post(
        "/actions/files/delete",
        operation_id="deleteFile",
        summary="Delete an OpenAI file",
        description="Delete a file for good.",
        responses=ok_response("What was deleted.", results.DELETED_SCHEMA),
        openapi_extra=route_extra(True, "deleteFile"),
    )
    async def delete_file(body: FileRefBody, deadline: Budget) -> Response:
        found = await calls.json("DELETE", f"/files/{segment(body.file_id)}", deadline)
        return JsonAnswer(results.deleted(found))

    @keyed.get(
        "/actions/files/{file_id}/content",
        operation_id="getFileContent",
        summary="Give the user a file",
        description="Return an OpenAI file's content as a file in the chat (images, PDFs, data).",
        responses=ok_response("The file, for the chat.", results.FILE_RESPONSE_SCHEMA),
        openapi_extra=route_extra(False, "retrieveFile", "downloadFile"),
    )
    async def get_file_content(
        file_id: Annotated[str, id_path("The file id.", "file-abc123")],
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
                data = await response.read(count + 1)
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
        responses=ok_response("A page of text.", results.TEXT_SCHEMA),
        openapi_extra=route_extra(False, "retrieveFile", "downloadFile"),
    )
    async def read_file_text(
        file_id: Annotated[str, id_path("The file id.", "file-abc123")],
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


async def _text_window(response: Streamed, offset: int, chars: int) -> tuple[str, bool]:
    """Characters `offset` to `offset + chars` of a UTF-8 stream, holding no more than that."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    skipped = 0
    pieces: list[str] = []
    held = 0
    async for chunk in response.chunks():
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
