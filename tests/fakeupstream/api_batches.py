"""Batches: each input line answered by the same logic as the live endpoint, quickly."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from .api_text import answer
from .errors import ApiError, bad_request, not_found, require
from .generation import new_id
from .store import Store, cursor_page, store_of
from .wire import exchange_of, json_reply

ENDPOINTS = (
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
)
routes = web.RouteTableDef()


def _line_result(line: str, endpoint: str) -> tuple[bool, dict[str, Any]]:
    """(succeeded, output line) for one JSONL input line."""
    result: dict[str, Any] = {"id": new_id("batch_req_", 32), "custom_id": None}
    try:
        request = json.loads(line)
        result["custom_id"] = request.get("custom_id")
        if request.get("url") != endpoint:
            raise bad_request(
                f"The URL provided for this request does not match the batch endpoint {endpoint}.",
                "url",
            )
        body = answer(endpoint, request.get("body") or {})
    except ApiError as error:
        response = {"status_code": error.status, "request_id": new_id("req_", 32)}
        return False, result | {"response": response | {"body": error.body()}, "error": None}
    except (ValueError, AttributeError):
        problem = {"code": "invalid_json_line", "message": "This line is not parseable as JSON."}
        return False, result | {"response": None, "error": problem}
    response = {"status_code": 200, "request_id": new_id("req_", 32), "body": body}
    return True, result | {"response": response, "error": None}


def _jsonl(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


async def _run(store: Store, batch: dict[str, Any]) -> None:
    await asyncio.sleep(store.batch_delay)
    if batch["status"] != "validating":
        return
    batch["status"] = "in_progress"
    batch["in_progress_at"] = int(time.time())
    lines = [line for line in store.file(batch["input_file_id"]).text().splitlines() if line]
    batch["request_counts"]["total"] = len(lines)
    outputs: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for line in lines:
        succeeded, result = _line_result(line, batch["endpoint"])
        (outputs if succeeded else errors).append(result)
    await asyncio.sleep(store.batch_delay)
    if batch["status"] != "in_progress":
        return
    batch["status"] = "finalizing"
    batch["finalizing_at"] = int(time.time())
    if outputs:
        batch["output_file_id"] = store.add_file_bytes(
            _jsonl(outputs), filename=f"{batch['id']}_output.jsonl", purpose="batch_output"
        )["id"]
    if errors:
        batch["error_file_id"] = store.add_file_bytes(
            _jsonl(errors), filename=f"{batch['id']}_error.jsonl", purpose="batch_output"
        )["id"]
    batch["request_counts"].update(completed=len(outputs), failed=len(errors))
    batch["status"] = "completed"
    batch["completed_at"] = int(time.time())


async def _finish_cancel(store: Store, batch: dict[str, Any]) -> None:
    await asyncio.sleep(store.batch_delay)
    batch["status"] = "cancelled"
    batch["cancelled_at"] = int(time.time())


def _batch(store: Store, batch_id: str) -> dict[str, Any]:
    batch = store.batches.get(batch_id)
    if batch is None:
        raise not_found("batch", batch_id)
    return batch


@routes.post("/v1/batches")
async def create_batch(request: web.Request) -> web.StreamResponse:
    store = store_of(request)
    body = exchange_of(request).body.json()
    require(body, "input_file_id", "endpoint", "completion_window")
    store.file(body["input_file_id"], "input_file_id")
    if body["endpoint"] not in ENDPOINTS:
        raise bad_request(f"Invalid endpoint: {body['endpoint']}", "endpoint")
    if body["completion_window"] != "24h":
        raise bad_request("Invalid completion_window: only '24h' is supported.")
    now = int(time.time())
    batch: dict[str, Any] = {
        "id": new_id("batch_", 32),
        "object": "batch",
        "endpoint": body["endpoint"],
        "errors": None,
        "input_file_id": body["input_file_id"],
        "completion_window": "24h",
        "status": "validating",
        "output_file_id": None,
        "error_file_id": None,
        "created_at": now,
        "in_progress_at": None,
        "expires_at": now + 86400,
        "finalizing_at": None,
        "completed_at": None,
        "failed_at": None,
        "expired_at": None,
        "cancelling_at": None,
        "cancelled_at": None,
        "request_counts": {"total": 0, "completed": 0, "failed": 0},
        "metadata": body.get("metadata"),
    }
    store.batches[batch["id"]] = batch
    store.spawn(_run(store, batch))
    return json_reply(batch)


@routes.get("/v1/batches")
async def list_batches(request: web.Request) -> web.StreamResponse:
    batches = list(store_of(request).batches.values())
    return json_reply(cursor_page(batches, {**request.query, "order": "desc"}))


@routes.get("/v1/batches/{batch_id}")
async def get_batch(request: web.Request) -> web.StreamResponse:
    return json_reply(_batch(store_of(request), request.match_info["batch_id"]))


@routes.post("/v1/batches/{batch_id}/cancel")
async def cancel_batch(request: web.Request) -> web.StreamResponse:
    store = store_of(request)
    batch = _batch(store, request.match_info["batch_id"])
    if batch["status"] not in ("validating", "in_progress", "finalizing", "cancelling"):
        raise bad_request(f"Cannot cancel a batch with status '{batch['status']}'.")
    if batch["status"] != "cancelling":
        batch["status"] = "cancelling"
        batch["cancelling_at"] = int(time.time())
        store.spawn(_finish_cancel(store, batch))
    return json_reply(batch)
