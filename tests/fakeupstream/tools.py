"""Built-in tools in Responses answers, shaped as the real API shows them.

A request offering a built-in tool gets one call of it, before the message: a
`web_search_call` (for `web_search` and `web_search_preview*`), a `file_search_call`, a
`code_interpreter_call` (its container made for the request, or the one it names), a
`shell_call` (likewise, or none for a local shell) and an `image_generation_call` (a tiny
PNG, at the tool's quality and size, `auto` read as high and 1024x1024).
`code_interpreter_calls` in the request's `metadata` asks for that many code interpreter
calls, all in the same container. The answer's usage is the message's.
Streams carry each item's `response.output_item.added` (in progress), the tool's progress
events and `response.output_item.done`, as the API sends them.
"""

from __future__ import annotations

import base64
from typing import Any

from . import generation
from .api_media import tiny_png

_PREFIX = {
    "web_search_call": "ws_",
    "file_search_call": "fs_",
    "code_interpreter_call": "ci_",
    "image_generation_call": "ig_",
    "shell_call": "sh_",
}
_PROGRESS = {
    "web_search_call": ("in_progress", "searching", "completed"),
    "file_search_call": ("in_progress", "searching", "completed"),
    "code_interpreter_call": ("in_progress", "interpreting", "completed"),
    "image_generation_call": ("in_progress", "generating", "completed"),
    "shell_call": (),
}


def _query(body: dict[str, Any]) -> str:
    texts = generation.responses_prompt(body)
    return texts[-1] if texts else "search"


def tool_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The completed tool call items for the request's built-in tools, in order."""
    items: list[dict[str, Any]] = []
    for tool in body.get("tools") or []:
        kind = tool.get("type", "") if isinstance(tool, dict) else ""
        if kind == "web_search" or kind.startswith("web_search_preview"):
            items.append(_item("web_search_call", action=_search(body)))
        elif kind == "file_search":
            items.append(_item("file_search_call", queries=[_query(body)], results=None))
        elif kind == "code_interpreter":
            container = tool.get("container")
            named = container if isinstance(container, str) else None
            container_id = named or generation.new_id("cntr_", 48)
            calls = int((body.get("metadata") or {}).get("code_interpreter_calls", 1))
            items += [
                _item(
                    "code_interpreter_call",
                    code="print(6 * 7)",
                    container_id=container_id,
                    outputs=None,
                )
                for _ in range(calls)
            ]
        elif kind == "image_generation":
            items.append(_image(tool, body))
        elif kind == "shell":
            items.append(_shell(tool))
    return items


def _item(kind: str, **fields: Any) -> dict[str, Any]:
    return {"id": generation.new_id(_PREFIX[kind], 48), "type": kind, "status": "completed"} | (
        fields
    )


def _search(body: dict[str, Any]) -> dict[str, Any]:
    return {"type": "search", "query": _query(body)}


def _image(tool: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    quality = tool.get("quality") or "auto"
    size = tool.get("size") or "auto"
    png = tiny_png(_query(body))
    return _item(
        "image_generation_call",
        background=tool.get("background") or "opaque",
        output_format=tool.get("output_format") or "png",
        quality="high" if quality == "auto" else quality,
        result=base64.b64encode(png).decode(),
        revised_prompt=_query(body),
        size="1024x1024" if size == "auto" else size,
    )


def _shell(tool: dict[str, Any]) -> dict[str, Any]:
    """A hosted shell call: in a container made for the request (`container_auto`) or the one
    named (`container_reference`); a local shell's call names no container."""
    environment = tool.get("environment") or {}
    if environment.get("type") == "container_reference":
        where: dict[str, Any] | None = environment
    elif environment.get("type") == "container_auto":
        where = {"type": "container_reference", "container_id": generation.new_id("cntr_", 48)}
    else:
        where = None
    action = {"commands": ["echo 42"], "timeout_ms": None, "max_output_length": None}
    return _item(
        "shell_call", call_id=generation.new_id("call_", 24), action=action, environment=where
    )


def with_tool_calls(response: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    """The Response with the tool calls before its message."""
    if not items or response.get("output") is None:
        return response
    return response | {"output": [*items, *response["output"]]}


def _in_progress(item: dict[str, Any]) -> dict[str, Any]:
    """An item as `response.output_item.added` shows it: started, without its results."""
    started = {"id": item["id"], "type": item["type"], "status": "in_progress"}
    if item["type"] == "code_interpreter_call":
        started |= {"code": "", "container_id": item["container_id"], "outputs": None}
    if item["type"] == "web_search_call":
        started["action"] = {"type": "search"}
    return started


def stream_with_tool_calls(
    events: list[tuple[str, dict[str, Any]]], items: list[dict[str, Any]]
) -> list[tuple[str, dict[str, Any]]]:
    """A Response's stream with each tool call's events before the message's, output indexes
    moved past them and the final response holding them; sequence numbers renumbered."""
    if not items:
        return events
    shift = len(items)
    calls: list[tuple[str, dict[str, Any]]] = []
    for index, item in enumerate(items):
        where = {"output_index": index, "item_id": item["id"]}
        calls.append(
            ("response.output_item.added", {"output_index": index, "item": _in_progress(item)})
        )
        calls += [(f"response.{item['type']}.{step}", where) for step in _PROGRESS[item["type"]]]
        calls.append(("response.output_item.done", {"output_index": index, "item": item}))
    moved: list[tuple[str, dict[str, Any]]] = []
    for kind, payload in events:
        payload = {k: v for k, v in payload.items() if k not in ("type", "sequence_number")}
        if "output_index" in payload:
            payload["output_index"] += shift
        if kind in ("response.completed", "response.incomplete"):
            payload["response"] = with_tool_calls(payload["response"], items)
        moved.append((kind, payload))
    ordered = moved[:2] + calls + moved[2:]
    return [
        (kind, {"type": kind, "sequence_number": number, **payload})
        for number, (kind, payload) in enumerate(ordered)
    ]
