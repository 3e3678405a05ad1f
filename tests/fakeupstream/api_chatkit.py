"""ChatKit: sessions made by the API, threads made by ChatKit's own front end.

A session (`POST /v1/chatkit/sessions`) names the end `user` whose threads its client secret
reaches. Threads and their items are created by the ChatKit widget with that secret, never
through the API, so the fake makes them with `Store.add_chatkit_thread`; the API lists,
reads and deletes them (`user` filters the list).
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from .errors import bad_request, not_found, require
from .generation import new_id
from .store import Store, cursor_page, store_of
from .wire import exchange_of, json_reply

routes = web.RouteTableDef()
SESSION_SECONDS = 600


@routes.post("/v1/chatkit/sessions")
async def create_session(request: web.Request) -> web.StreamResponse:
    body = exchange_of(request).body.json()
    require(body, "workflow", "user")
    workflow = body["workflow"]
    if not isinstance(workflow, dict) or not isinstance(workflow.get("id"), str):
        raise bad_request("Missing required parameter: 'workflow.id'.", "workflow.id")
    user = body["user"]
    if not isinstance(user, str) or not user:
        raise bad_request("Invalid 'user': expected a non-empty string.", "user")
    limit = (body.get("rate_limits") or {}).get("max_requests_per_1_minute", 10)
    session: dict[str, Any] = {
        "id": new_id("cksess_", 32),
        "object": "chatkit.session",
        "expires_at": int(time.time()) + SESSION_SECONDS,
        "client_secret": new_id("ek_", 40),
        "workflow": {
            "id": workflow["id"],
            "version": workflow.get("version"),
            "state_variables": workflow.get("state_variables"),
            "tracing": {"enabled": True},
        },
        "user": user,
        "rate_limits": {"max_requests_per_1_minute": limit},
        "max_requests_per_1_minute": limit,
        "status": "active",
        "chatkit_configuration": {
            "automatic_thread_titling": {"enabled": True},
            "file_upload": {"enabled": False, "max_file_size": None, "max_files": None},
            "history": {"enabled": True, "recent_threads": None},
        },
    }
    store_of(request).chatkit_sessions[session["id"]] = session
    return json_reply(session)


@routes.post("/v1/chatkit/sessions/{session_id}/cancel")
async def cancel_session(request: web.Request) -> web.StreamResponse:
    session_id = request.match_info["session_id"]
    session = store_of(request).chatkit_sessions.get(session_id)
    if session is None:
        raise not_found("session", session_id)
    session["status"] = "cancelled"
    return json_reply(session)


def _thread(store: Store, thread_id: str) -> dict[str, Any]:
    thread = store.chatkit_threads.get(thread_id)
    if thread is None:
        raise not_found("thread", thread_id)
    return thread


@routes.get("/v1/chatkit/threads")
async def list_threads(request: web.Request) -> web.StreamResponse:
    user = request.query.get("user")
    threads = [
        thread
        for thread in store_of(request).chatkit_threads.values()
        if user is None or thread["user"] == user
    ]
    return json_reply(cursor_page(threads, request.query))


@routes.get("/v1/chatkit/threads/{thread_id}")
async def get_thread(request: web.Request) -> web.StreamResponse:
    return json_reply(_thread(store_of(request), request.match_info["thread_id"]))


@routes.delete("/v1/chatkit/threads/{thread_id}")
async def delete_thread(request: web.Request) -> web.StreamResponse:
    store = store_of(request)
    thread_id = _thread(store, request.match_info["thread_id"])["id"]
    del store.chatkit_threads[thread_id]
    store.chatkit_items.pop(thread_id, None)
    return json_reply({"id": thread_id, "object": "chatkit.thread.deleted", "deleted": True})


@routes.get("/v1/chatkit/threads/{thread_id}/items")
async def list_thread_items(request: web.Request) -> web.StreamResponse:
    store = store_of(request)
    thread_id = _thread(store, request.match_info["thread_id"])["id"]
    return json_reply(cursor_page(store.chatkit_items.get(thread_id, []), request.query))
