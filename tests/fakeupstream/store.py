"""The fake's objects (files, uploads, batches, vector stores, responses, ChatKit) and bytes
on disk."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from .errors import bad_request, not_found
from .generation import new_id

BACKGROUND_DELAY = 0.2
BATCH_DELAY = 0.05


@dataclass
class StoredFile:
    obj: dict[str, Any]
    path: Path

    def text(self) -> str:
        return self.path.read_text("utf-8", "replace")


@dataclass
class UploadState:
    obj: dict[str, Any]
    parts: dict[str, Path] = field(default_factory=dict)


class Store:
    """All objects live here; only the server's event loop touches them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.spool = root / "spool"
        self.blobs = root / "files"
        self.files: dict[str, StoredFile] = {}
        self.uploads: dict[str, UploadState] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.vector_stores: dict[str, dict[str, Any]] = {}
        self.vector_store_files: dict[str, dict[str, dict[str, Any]]] = {}
        self.responses: dict[str, dict[str, Any]] = {}
        self.response_bodies: dict[str, dict[str, Any]] = {}
        self.chatkit_sessions: dict[str, dict[str, Any]] = {}
        self.chatkit_threads: dict[str, dict[str, Any]] = {}
        self.chatkit_items: dict[str, list[dict[str, Any]]] = {}
        self.background_delay = BACKGROUND_DELAY
        self.batch_delay = BATCH_DELAY
        self._tasks: set[asyncio.Task[None]] = set()
        self._make_dirs()

    def _make_dirs(self) -> None:
        self.spool.mkdir(parents=True, exist_ok=True)
        self.blobs.mkdir(parents=True, exist_ok=True)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel_tasks(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def clear(self) -> None:
        await self.cancel_tasks()
        self.background_delay = BACKGROUND_DELAY
        self.batch_delay = BATCH_DELAY
        for mapping in (
            self.files,
            self.uploads,
            self.batches,
            self.vector_stores,
            self.vector_store_files,
            self.responses,
            self.response_bodies,
            self.chatkit_sessions,
            self.chatkit_threads,
            self.chatkit_items,
        ):
            mapping.clear()
        shutil.rmtree(self.blobs, ignore_errors=True)
        for leftover in self.spool.glob("*"):
            leftover.unlink(missing_ok=True)
        self._make_dirs()

    def add_file(self, source: Path, *, filename: str, purpose: str, size: int) -> dict[str, Any]:
        """Take ownership of `source` (moved, not copied) as a new File object."""
        file_id = new_id("file-", 22)
        path = self.blobs / file_id
        source.replace(path)
        obj = {
            "id": file_id,
            "object": "file",
            "bytes": size,
            "created_at": int(time.time()),
            "expires_at": None,
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "status_details": None,
        }
        self.files[file_id] = StoredFile(obj, path)
        return obj

    def add_file_bytes(self, data: bytes, *, filename: str, purpose: str) -> dict[str, Any]:
        staging = self.spool / new_id("staging-")
        staging.write_bytes(data)
        return self.add_file(staging, filename=filename, purpose=purpose, size=len(data))

    def add_org_files(self, count: int, *, purpose: str) -> list[str]:
        """`count` files made outside the relay (the organisation's others), sharing one
        one-byte blob on disk, so a test can hold tens of thousands of them cheaply."""
        blob = self.blobs / "org-files-blob"
        blob.write_bytes(b"x")
        made = []
        for _ in range(count):
            file_id = new_id("file-", 22)
            obj = {
                "id": file_id,
                "object": "file",
                "bytes": 1,
                "created_at": int(time.time()),
                "expires_at": None,
                "filename": "org.txt",
                "purpose": purpose,
                "status": "processed",
                "status_details": None,
            }
            self.files[file_id] = StoredFile(obj, blob)
            made.append(file_id)
        return made

    def add_chatkit_thread(self, user: str, text: str) -> dict[str, Any]:
        """A thread as ChatKit's widget makes it with a session's client secret: for `user`,
        holding one user message."""
        now = int(time.time())
        thread = {
            "id": new_id("cthr_", 24),
            "object": "chatkit.thread",
            "created_at": now,
            "title": None,
            "status": {"type": "active"},
            "user": user,
        }
        self.chatkit_threads[thread["id"]] = thread
        self.chatkit_items[thread["id"]] = [
            {
                "id": new_id("cthi_", 24),
                "object": "chatkit.thread_item",
                "created_at": now,
                "thread_id": thread["id"],
                "type": "chatkit.user_message",
                "content": [{"type": "input_text", "text": text}],
                "attachments": [],
                "inference_options": None,
            }
        ]
        return thread

    def file(self, file_id: str, param: str | None = None) -> StoredFile:
        stored = self.files.get(file_id)
        if stored is None:
            raise not_found("file", file_id, param)
        return stored


STORE = web.AppKey("store", Store)


def store_of(request: web.Request) -> Store:
    return request.app[STORE]


def cursor_page(
    objects: list[dict[str, Any]],
    query: Mapping[str, str],
    *,
    default_limit: int = 20,
    default_order: str = "desc",
) -> dict[str, Any]:
    """OpenAI's cursor list: `after`, `before`, `limit`, `order`, `has_more`, `first_id`,
    `last_id`."""
    order = query.get("order", default_order)
    if order not in ("asc", "desc"):
        raise bad_request(f"Invalid value for 'order': {order!r}.", "order")
    items = objects if order == "asc" else objects[::-1]
    after, before = query.get("after"), query.get("before")
    if after:
        ids = [obj["id"] for obj in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    if before:
        ids = [obj["id"] for obj in items]
        items = items[: ids.index(before)] if before in ids else []
    try:
        limit = int(query.get("limit", default_limit))
    except ValueError as exc:
        raise bad_request("Invalid value for 'limit'.", "limit") from exc
    page = items[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(items) > limit,
    }
