"""GPT Actions wrappers: vector stores (create, list, get, delete, search, add files)."""

# No `from __future__ import annotations`: FastAPI reads these handlers' annotations, and
# they name the deadline dependency passed in as `Budget`.

from typing import Annotated, Any

from fastapi import APIRouter
from starlette.responses import Response

from teamrelay.actions import results
from teamrelay.actions.bodies import (
    AddFilesBody,
    SearchBody,
    VectorStoreBody,
    VectorStoreRef,
)
from teamrelay.actions.bridge import (
    Bridge,
    PageAfter,
    PageSize,
    id_path,
    ok_response,
    route_extra,
)
from teamrelay.actions.calls import segment
from teamrelay.actions.compact import JsonAnswer, fit_answer


def add_routes(keyed: APIRouter, bridge: Bridge, Budget: Any) -> None:
    calls = bridge.calls

    @keyed.get(
        "/actions/vector_stores",
        operation_id="listVectorStores",
        summary="List vector stores",
        description="The searchable file collections, newest first.",
        responses=ok_response("Vector stores.", results.LIST_STORES_SCHEMA),
        openapi_extra=route_extra(False, "listVectorStores"),
    )
    async def list_vector_stores(
        deadline: Budget,
        limit: PageSize = 20,
        after: PageAfter = None,
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
        responses=ok_response("The new vector store.", results.VECTOR_STORE_SCHEMA),
        openapi_extra=route_extra(True, "createVectorStore"),
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
        responses=ok_response("The vector store.", results.VECTOR_STORE_SCHEMA),
        openapi_extra=route_extra(False, "getVectorStore"),
    )
    async def get_vector_store(
        vector_store_id: Annotated[str, id_path("The vector store id.", "vs_abc123")],
        deadline: Budget,
    ) -> Response:
        found = await calls.json("GET", f"/vector_stores/{segment(vector_store_id)}", deadline)
        return JsonAnswer(results.vector_store_info(found))

    @keyed.post(
        "/actions/vector_stores/delete",
        operation_id="deleteVectorStore",
        summary="Delete a vector store",
        description="Delete a vector store (its files stay in OpenAI files).",
        responses=ok_response("What was deleted.", results.DELETED_SCHEMA),
        openapi_extra=route_extra(True, "deleteVectorStore"),
    )
    async def delete_vector_store(body: VectorStoreRef, deadline: Budget) -> Response:
        path = f"/vector_stores/{segment(body.vector_store_id)}"
        return JsonAnswer(results.deleted(await calls.json("DELETE", path, deadline)))

    @keyed.post(
        "/actions/vector_stores/search",
        operation_id="searchVectorStore",
        summary="Search a vector store",
        description="Find passages in a vector store's files that match a query.",
        responses=ok_response("Matching passages.", results.SEARCH_SCHEMA),
        openapi_extra=route_extra(False, "searchVectorStore"),
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
        responses=ok_response("The files and their status.", results.ADDED_SCHEMA),
        openapi_extra=route_extra(True, "createVectorStoreFile"),
    )
    async def add_files(body: AddFilesBody, deadline: Budget) -> Response:
        path = f"/vector_stores/{segment(body.vector_store_id)}/files"
        added = []
        for file_id in body.file_ids:
            entry = await calls.json("POST", path, deadline, body={"file_id": file_id})
            added.append({"file_id": entry.get("id"), "status": entry.get("status")})
        answer = {"vector_store_id": body.vector_store_id, "files": added}
        return JsonAnswer(fit_answer(answer, "Not every file fit in the answer."))
