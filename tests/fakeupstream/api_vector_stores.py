"""Vector stores: objects, attached files, and a word-match search over the files' text."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from .errors import ApiError, not_found, require
from .generation import new_id
from .store import Store, cursor_page, store_of
from .wire import exchange_of, json_reply

routes = web.RouteTableDef()


def _vector_store(store: Store, store_id: str) -> dict[str, Any]:
    found = store.vector_stores.get(store_id)
    if found is None:
        raise not_found("vector store", store_id)
    return found


def _recount(store: Store, vector_store: dict[str, Any]) -> None:
    files = store.vector_store_files[vector_store["id"]]
    vector_store["file_counts"] = {
        "in_progress": 0,
        "completed": len(files),
        "failed": 0,
        "cancelled": 0,
        "total": len(files),
    }
    vector_store["usage_bytes"] = sum(entry["usage_bytes"] for entry in files.values())


def _attach(
    store: Store, vector_store: dict[str, Any], file_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    stored = store.file(file_id, "file_id")
    entry = {
        "id": file_id,
        "object": "vector_store.file",
        "usage_bytes": stored.obj["bytes"],
        "created_at": int(time.time()),
        "vector_store_id": vector_store["id"],
        "status": "completed",
        "last_error": None,
        "chunking_strategy": body.get("chunking_strategy")
        or {
            "type": "static",
            "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400},
        },
        "attributes": body.get("attributes") or {},
    }
    store.vector_store_files[vector_store["id"]][file_id] = entry
    _recount(store, vector_store)
    return entry


@routes.post("/v1/vector_stores")
async def create_vector_store(request: web.Request) -> web.StreamResponse:
    store = store_of(request)
    body = exchange_of(request).body.json()
    now = int(time.time())
    vector_store: dict[str, Any] = {
        "id": new_id("vs_", 32),
        "object": "vector_store",
        "created_at": now,
        "name": body.get("name"),
        "usage_bytes": 0,
        "file_counts": {},
        "status": "completed",
        "expires_after": body.get("expires_after"),
        "expires_at": None,
        "last_active_at": now,
        "metadata": body.get("metadata") or {},
    }
    for file_id in body.get("file_ids") or []:
        store.file(file_id, "file_ids")
    store.vector_stores[vector_store["id"]] = vector_store
    store.vector_store_files[vector_store["id"]] = {}
    for file_id in body.get("file_ids") or []:
        _attach(store, vector_store, file_id, body)
    _recount(store, vector_store)
    return json_reply(vector_store)


@routes.get("/v1/vector_stores")
async def list_vector_stores(request: web.Request) -> web.StreamResponse:
    return json_reply(cursor_page(list(store_of(request).vector_stores.values()), request.query))


@routes.get("/v1/vector_stores/{store_id}")
async def get_vector_store(request: web.Request) -> web.StreamResponse:
    return json_reply(_vector_store(store_of(request), request.match_info["store_id"]))


@routes.post("/v1/vector_stores/{store_id}")
async def modify_vector_store(request: web.Request) -> web.StreamResponse:
    vector_store = _vector_store(store_of(request), request.match_info["store_id"])
    body = exchange_of(request).body.json()
    for key in ("name", "metadata", "expires_after"):
        if key in body:
            vector_store[key] = body[key]
    return json_reply(vector_store)


@routes.delete("/v1/vector_stores/{store_id}")
async def delete_vector_store(request: web.Request) -> web.StreamResponse:
    store = store_of(request)
    store_id = request.match_info["store_id"]
    _vector_store(store, store_id)
    del store.vector_stores[store_id]
    del store.vector_store_files[store_id]
    return json_reply({"id": store_id, "object": "vector_store.deleted", "deleted": True})


@routes.post("/v1/vector_stores/{store_id}/files")
async def add_vector_store_file(request: web.Request) -> web.StreamResponse:
    store = store_of(request)
    vector_store = _vector_store(store, request.match_info["store_id"])
    body = exchange_of(request).body.json()
    require(body, "file_id")
    return json_reply(_attach(store, vector_store, body["file_id"], body))


@routes.get("/v1/vector_stores/{store_id}/files")
async def list_vector_store_files(request: web.Request) -> web.StreamResponse:
    store = store_of(request)
    vector_store = _vector_store(store, request.match_info["store_id"])
    entries = list(store.vector_store_files[vector_store["id"]].values())
    return json_reply(cursor_page(entries, request.query))


def _entry(request: web.Request) -> tuple[Store, dict[str, Any], dict[str, Any]]:
    store = store_of(request)
    vector_store = _vector_store(store, request.match_info["store_id"])
    file_id = request.match_info["file_id"]
    entry = store.vector_store_files[vector_store["id"]].get(file_id)
    if entry is None:
        raise not_found("file", file_id)
    return store, vector_store, entry


@routes.get("/v1/vector_stores/{store_id}/files/{file_id}")
async def get_vector_store_file(request: web.Request) -> web.StreamResponse:
    return json_reply(_entry(request)[2])


@routes.delete("/v1/vector_stores/{store_id}/files/{file_id}")
async def delete_vector_store_file(request: web.Request) -> web.StreamResponse:
    store, vector_store, entry = _entry(request)
    del store.vector_store_files[vector_store["id"]][entry["id"]]
    _recount(store, vector_store)
    return json_reply({"id": entry["id"], "object": "vector_store.file.deleted", "deleted": True})


@routes.get("/v1/vector_stores/{store_id}/files/{file_id}/content")
async def vector_store_file_content(request: web.Request) -> web.StreamResponse:
    store, _, entry = _entry(request)
    stored = store.file(entry["id"])
    return json_reply(
        {
            "object": "vector_store.file_content.page",
            "data": [{"type": "text", "text": stored.text()}],
            "has_more": False,
            "next_page": None,
        }
    )


def chunks_of(text: str) -> list[str]:
    """Paragraphs, the fake's unit of retrieval."""
    return [chunk.strip() for chunk in text.split("\n\n") if chunk.strip()]


def score(query_words: set[str], chunk: str) -> float:
    """The share of query words that occur in the chunk, case-insensitively."""
    words = set(chunk.lower().split())
    return len(query_words & words) / len(query_words) if query_words else 0.0


@routes.post("/v1/vector_stores/{store_id}/search")
async def search_vector_store(request: web.Request) -> web.StreamResponse:
    store = store_of(request)
    vector_store = _vector_store(store, request.match_info["store_id"])
    body = exchange_of(request).body.json()
    require(body, "query")
    queries = body["query"] if isinstance(body["query"], list) else [body["query"]]
    if not all(isinstance(query, str) for query in queries):
        raise ApiError(400, "Invalid type for 'query'.", param="query")
    query_words = {word.lower() for query in queries for word in query.split()}
    limit = int(body.get("max_num_results") or 10)
    hits = []
    for entry in store.vector_store_files[vector_store["id"]].values():
        stored = store.file(entry["id"])
        matched = [(score(query_words, chunk), chunk) for chunk in chunks_of(stored.text())]
        matched = [pair for pair in matched if pair[0] > 0]
        if matched:
            best = max(value for value, _ in matched)
            hits.append(
                {
                    "file_id": entry["id"],
                    "filename": stored.obj["filename"],
                    "score": best,
                    "attributes": entry["attributes"],
                    "content": [{"type": "text", "text": chunk} for _, chunk in matched],
                }
            )
    hits.sort(key=lambda hit: -hit["score"])
    return json_reply(
        {
            "object": "vector_store.search_results.page",
            "search_query": queries,
            "data": hits[:limit],
            "has_more": False,
            "next_page": None,
        }
    )
