"""Files and Uploads: multipart in, byte-identical content out."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from .errors import ApiError, bad_request, missing, not_found, require
from .generation import new_id
from .intake import Part
from .store import Store, UploadState, cursor_page, store_of
from .wire import Streamer, exchange_of, json_reply

CHUNK = 64 * 1024
routes = web.RouteTableDef()


def _file_part(request: web.Request, name: str) -> Part:
    part = exchange_of(request).body.file(name)
    if part is None:
        raise missing(name)
    return part


@routes.post("/v1/files")
async def create_file(request: web.Request) -> web.StreamResponse:
    body = exchange_of(request).body
    part = _file_part(request, "file")
    purpose = body.field("purpose")
    if not purpose:
        raise missing("purpose")
    assert part.path is not None
    obj = store_of(request).add_file(
        part.path, filename=part.filename or "file", purpose=purpose, size=part.size
    )
    seconds = body.field("expires_after[seconds]")
    if seconds is not None and seconds.isdigit():
        obj["expires_at"] = obj["created_at"] + int(seconds)
    return json_reply(obj)


@routes.get("/v1/files")
async def list_files(request: web.Request) -> web.StreamResponse:
    purpose = request.query.get("purpose")
    objects = [
        stored.obj
        for stored in store_of(request).files.values()
        if purpose is None or stored.obj["purpose"] == purpose
    ]
    return json_reply(cursor_page(objects, request.query, default_limit=10000))


@routes.get("/v1/files/{file_id}")
async def get_file(request: web.Request) -> web.StreamResponse:
    return json_reply(store_of(request).file(request.match_info["file_id"]).obj)


@routes.delete("/v1/files/{file_id}")
async def delete_file(request: web.Request) -> web.StreamResponse:
    store = store_of(request)
    file_id = request.match_info["file_id"]
    stored = store.file(file_id)
    del store.files[file_id]
    stored.path.unlink(missing_ok=True)
    return json_reply({"id": file_id, "object": "file", "deleted": True})


@routes.get("/v1/files/{file_id}/content")
async def file_content(request: web.Request) -> web.StreamResponse:
    stored = store_of(request).file(request.match_info["file_id"])
    streamer = await Streamer.open(
        request, content_type="application/octet-stream", content_length=stored.obj["bytes"]
    )
    with stored.path.open("rb") as source:
        while chunk := source.read(CHUNK):
            await streamer.write(chunk)
    await streamer.finish()
    return streamer.response


def _upload(store: Store, upload_id: str) -> UploadState:
    upload = store.uploads.get(upload_id)
    if upload is None:
        raise not_found("upload", upload_id)
    return upload


def _pending(upload: UploadState) -> None:
    status = upload.obj["status"]
    if status != "pending":
        raise bad_request(f"Upload {upload.obj['id']} is already {status}.")


@routes.post("/v1/uploads")
async def create_upload(request: web.Request) -> web.StreamResponse:
    body = exchange_of(request).body.json()
    require(body, "bytes", "filename", "mime_type", "purpose")
    now = int(time.time())
    obj: dict[str, Any] = {
        "id": new_id("upload_", 24),
        "object": "upload",
        "bytes": body["bytes"],
        "created_at": now,
        "expires_at": now + 3600,
        "filename": body["filename"],
        "purpose": body["purpose"],
        "status": "pending",
        "file": None,
    }
    store_of(request).uploads[obj["id"]] = UploadState(obj)
    return json_reply(obj)


@routes.post("/v1/uploads/{upload_id}/parts")
async def add_upload_part(request: web.Request) -> web.StreamResponse:
    store = store_of(request)
    upload = _upload(store, request.match_info["upload_id"])
    _pending(upload)
    part = _file_part(request, "data")
    assert part.path is not None
    part_id = new_id("part_", 24)
    destination = store.blobs / part_id
    part.path.replace(destination)
    upload.parts[part_id] = destination
    return json_reply(
        {
            "id": part_id,
            "object": "upload.part",
            "created_at": int(time.time()),
            "upload_id": upload.obj["id"],
        }
    )


def _concatenate(sources: list[Path], destination: Path) -> int:
    with destination.open("wb") as sink:
        for source in sources:
            with source.open("rb") as piece:
                shutil.copyfileobj(piece, sink, 1024 * 1024)
    return destination.stat().st_size


@routes.post("/v1/uploads/{upload_id}/complete")
async def complete_upload(request: web.Request) -> web.StreamResponse:
    store = store_of(request)
    upload = _upload(store, request.match_info["upload_id"])
    _pending(upload)
    body = exchange_of(request).body.json()
    require(body, "part_ids")
    part_ids = body["part_ids"]
    unknown = [part_id for part_id in part_ids if part_id not in upload.parts]
    if unknown:
        raise bad_request(f"Invalid part ID: {unknown[0]}", "part_ids")
    staging = store.spool / new_id("concat-")
    size = await asyncio.to_thread(
        _concatenate, [upload.parts[part_id] for part_id in part_ids], staging
    )
    if size != upload.obj["bytes"]:
        staging.unlink(missing_ok=True)
        raise ApiError(
            400,
            f"The number of bytes uploaded ({size}) does not match the number of bytes "
            f"specified when creating the Upload ({upload.obj['bytes']}).",
        )
    file_obj = store.add_file(
        staging, filename=upload.obj["filename"], purpose=upload.obj["purpose"], size=size
    )
    for path in upload.parts.values():
        path.unlink(missing_ok=True)
    upload.obj["status"] = "completed"
    upload.obj["file"] = file_obj
    return json_reply(upload.obj)


@routes.post("/v1/uploads/{upload_id}/cancel")
async def cancel_upload(request: web.Request) -> web.StreamResponse:
    upload = _upload(store_of(request), request.match_info["upload_id"])
    _pending(upload)
    for path in upload.parts.values():
        path.unlink(missing_ok=True)
    upload.obj["status"] = "cancelled"
    return json_reply(upload.obj)
