"""The Responses API: create (JSON, SSE, background, WebSocket mode), retrieve, cancel, delete,
input items."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import WSMsgType, web

from . import generation, tools
from .errors import ApiError, bad_request, require
from .store import Store, store_of
from .wire import exchange_of, json_reply, sse_json_events

routes = web.RouteTableDef()


def _found(store: Store, response_id: str) -> dict[str, Any]:
    found = store.responses.get(response_id)
    if found is None:
        raise ApiError(404, f"Response with id '{response_id}' not found.")
    return found


async def _run_in_background(store: Store, response_id: str) -> None:
    body = store.response_bodies[response_id]
    await asyncio.sleep(store.background_delay / 2)
    if store.responses[response_id]["status"] != "queued":
        return
    store.responses[response_id]["status"] = "in_progress"
    await asyncio.sleep(store.background_delay / 2)
    if store.responses[response_id]["status"] != "in_progress":
        return
    words, cut = generation.plan_reply(
        body, generation.responses_prompt(body), None, "max_output_tokens"
    )
    done = generation.response_object(
        body,
        response_id=response_id,
        status="incomplete" if cut else "completed",
        words=words,
        cut=cut,
    ) | {"created_at": store.responses[response_id]["created_at"]}
    store.responses[response_id] = tools.with_tool_calls(done, tools.tool_items(body))


@routes.post("/v1/responses")
async def create_response(request: web.Request) -> web.StreamResponse:
    store = store_of(request)
    exchange = exchange_of(request)
    body = exchange.body.json()
    require(body, "model")
    previous = body.get("previous_response_id")
    if previous and previous not in store.responses:
        raise ApiError(
            404,
            f"Previous response with id '{previous}' not found.",
            param="previous_response_id",
        )
    response_id = generation.new_id("resp_", 48)
    keep = body.get("store", True) is not False
    if body.get("background") and not body.get("stream"):
        if not keep:
            raise bad_request("Background mode requires store=true.", "background")
        queued = generation.response_object(
            body, response_id=response_id, status="queued", words=None
        )
        store.responses[response_id] = queued
        store.response_bodies[response_id] = body
        store.spawn(_run_in_background(store, response_id))
        return json_reply(queued)
    if body.get("stream"):
        fault = exchange.fault
        events = tools.stream_with_tool_calls(
            generation.response_events(
                body, response_id, fault.sse_events if fault is not None else None
            ),
            tools.tool_items(body),
        )
        if keep:
            store.responses[response_id] = events[-1][1]["response"]
            store.response_bodies[response_id] = body
        return await sse_json_events(request, list(events), done=False)
    words, cut = generation.plan_reply(
        body, generation.responses_prompt(body), None, "max_output_tokens"
    )
    done = generation.response_object(
        body,
        response_id=response_id,
        status="incomplete" if cut else "completed",
        words=words,
        cut=cut,
    )
    done = tools.with_tool_calls(done, tools.tool_items(body))
    if keep:
        store.responses[response_id] = done
        store.response_bodies[response_id] = body
    return json_reply(done)


@routes.get("/v1/responses/{response_id}")
async def get_response(request: web.Request) -> web.StreamResponse:
    return json_reply(_found(store_of(request), request.match_info["response_id"]))


@routes.post("/v1/responses/{response_id}/cancel")
async def cancel_response(request: web.Request) -> web.StreamResponse:
    found = _found(store_of(request), request.match_info["response_id"])
    if not found.get("background"):
        raise bad_request("Only responses created with background=true can be cancelled.")
    if found["status"] in ("queued", "in_progress"):
        found["status"] = "cancelled"
    elif found["status"] != "cancelled":
        raise bad_request(f"Cannot cancel a response with status '{found['status']}'.")
    return json_reply(found)


@routes.delete("/v1/responses/{response_id}")
async def delete_response(request: web.Request) -> web.StreamResponse:
    store = store_of(request)
    response_id = request.match_info["response_id"]
    _found(store, response_id)
    del store.responses[response_id]
    store.response_bodies.pop(response_id, None)
    return json_reply({"id": response_id, "object": "response", "deleted": True})


@routes.get("/v1/responses/{response_id}/input_items")
async def input_items(request: web.Request) -> web.StreamResponse:
    store = store_of(request)
    response_id = request.match_info["response_id"]
    _found(store, response_id)
    raw = store.response_bodies.get(response_id, {}).get("input", [])
    messages = [{"role": "user", "content": raw}] if isinstance(raw, str) else raw
    items = []
    for index, message in enumerate(messages):
        content = message.get("content", "")
        if isinstance(content, str):
            content = [{"type": "input_text", "text": content}]
        items.append(
            {
                "id": f"msg_{response_id[5:21]}{index:04d}",
                "type": "message",
                "role": message.get("role", "user"),
                "status": "completed",
                "content": content,
            }
        )
    items.reverse()
    return json_reply(
        {
            "object": "list",
            "data": items,
            "first_id": items[0]["id"] if items else None,
            "last_id": items[-1]["id"] if items else None,
            "has_more": False,
        }
    )


@routes.get("/v1/responses")
async def responses_socket(request: web.Request) -> web.StreamResponse:
    """WebSocket mode: each `response.create` frame (the POST body's fields) streams its
    events as JSON frames; a bad frame gets an `error` event and the socket stays open."""
    store = store_of(request)
    ws = web.WebSocketResponse(heartbeat=None)
    if not ws.can_prepare(request).ok:
        raise bad_request("This endpoint only accepts WebSocket connections.")
    await ws.prepare(request)
    exchange_of(request).response = ws
    async for message in ws:
        if message.type is not WSMsgType.TEXT:
            continue
        event = json.loads(message.data)
        try:
            await _socket_response(ws, store, event)
        except ApiError as error:
            await ws.send_str(json.dumps({"type": "error", "status": error.status} | error.body()))
    return ws


async def _socket_response(ws: web.WebSocketResponse, store: Store, event: dict[str, Any]) -> None:
    if event.get("type") != "response.create":
        raise bad_request(f"Invalid value: '{event.get('type')}'.", "type")
    body = {k: v for k, v in event.items() if k not in ("type", "event_id")}
    require(body, "model")
    previous = body.get("previous_response_id")
    if previous and previous not in store.responses:
        raise ApiError(
            404,
            f"Previous response with id '{previous}' not found.",
            param="previous_response_id",
        )
    response_id = generation.new_id("resp_", 48)
    events = tools.stream_with_tool_calls(
        generation.response_events(body, response_id), tools.tool_items(body)
    )
    if body.get("store", True) is not False:
        store.responses[response_id] = events[-1][1]["response"]
        store.response_bodies[response_id] = body
    for _, payload in events:
        await ws.send_str(json.dumps(payload))
