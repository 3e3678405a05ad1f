"""Token usage, model and object id read from OpenAI's answer objects.

Two usage shapes exist: chat completions, completions and embeddings count
`prompt_tokens`/`completion_tokens`; the Responses API, images and audio count
`input_tokens`/`output_tokens`. Both become one `Usage`. Built-in tools are billed per call
beyond the tokens: `ToolTally` gathers the calls an answer shows (`ToolCall`).
"""

from __future__ import annotations

import json
import re
from typing import Any, Final, NamedTuple

import orjson

_decoder = json.JSONDecoder()


def loads(data: bytes) -> Any:
    """orjson first: four times the standard parser's speed on a 1 KB answer, read on every
    request. What orjson refuses (NaN, Infinity) goes to the standard parser. orjson reads
    integers beyond 64 bits as floats, which the tap then counts as no tokens; no answer
    reports that many."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


class Usage(NamedTuple):
    """A tuple: made for every answer that reports usage, and a tuple is the cheapest."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    # The input and output tokens that were audio, when there were any (audio models bill
    # them at their own rates); None for a text-only answer.
    audio: tuple[int, int] | None = None


def _count(value: object) -> int:
    """JSON integers only: parsers give exact `int`s, and `True` is no count."""
    return value if type(value) is int else 0


def _detail(usage: dict[str, Any], names: tuple[str, ...], field: str) -> int:
    for name in names:
        details = usage.get(name)
        if isinstance(details, dict):
            return _count(details.get(field))
    return 0


def usage_from(value: object) -> Usage | None:
    """A `Usage` from an answer's `usage` member, or None when it counts no tokens."""
    if not isinstance(value, dict):
        return None
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    if "input_tokens" in value or "output_tokens" in value:
        # Realtime and audio transcription spell it `input_token_details`.
        inputs, outputs = _INPUT_DETAILS, _OUTPUT_DETAILS
        counts = (_count(value.get("input_tokens")), _count(value.get("output_tokens")))
    elif "prompt_tokens" in value or "completion_tokens" in value:
        inputs, outputs = ("prompt_tokens_details",), ("completion_tokens_details",)
        counts = (_count(value.get("prompt_tokens")), _count(value.get("completion_tokens")))
    else:
        return None
    audio = (_detail(value, inputs, "audio_tokens"), _detail(value, outputs, "audio_tokens"))
    return Usage(
        *counts,
        _detail(value, inputs, "cached_tokens"),
        _detail(value, outputs, "reasoning_tokens"),
        audio if any(audio) else None,
    )


_INPUT_DETAILS: Final = ("input_tokens_details", "input_token_details")
_OUTPUT_DETAILS: Final = ("output_tokens_details", "output_token_details")


# Salvage from answers too big to parse: OpenAI writes `id` first and `usage` near the end.
_HEAD_ID = re.compile(rb'\A\s*\{\s*"id"\s*:\s*"([^"\\]{1,256})"')
_MODEL = re.compile(rb'"model"\s*:\s*"([^"\\]{1,256})"')
_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')


def id_in_head(head: bytes) -> str | None:
    match = _HEAD_ID.match(head)
    return match.group(1).decode("utf-8", "replace") if match else None


def model_in_head(head: bytes) -> str | None:
    match = _MODEL.search(head)
    return match.group(1).decode("utf-8", "replace") if match else None


def usage_in_tail(tail: bytes) -> Usage | None:
    """The last complete `"usage":{...}` object in the final bytes of an oversized answer."""
    starts = [match.end() - 1 for match in _USAGE_OBJECT.finditer(tail)]
    for start in reversed(starts):
        try:
            value, _ = _decoder.raw_decode(tail[start:].decode("utf-8", "replace"))
        except ValueError:
            continue
        usage = usage_from(value)
        if usage is not None:
            return usage
    return None


# Responses output items of the built-in tools billed per call, by the `[tools]` entry that
# prices them; code interpreter and hosted shell calls are billed by the container they ran in
# (a shell call in a local environment is not billed), an image by its shape.
_TOOL_ITEMS: Final = {
    "web_search_call": "web_search",
    "file_search_call": "file_search",
    "code_interpreter_call": "containers",
    "shell_call": "containers",
    "image_generation_call": "image_generation",
}
# A Chat Completions answer of a search model: one web search, priced by the model's name.
CHAT_SEARCH: Final = "chat_search"
IMAGE_TOOL_MODEL: Final = "gpt-image-1"
_TOOL_TYPE = re.compile(
    rb'"type"\s*:\s*"(web_search_call|file_search_call|code_interpreter_call|image_generation_call)"'
)
TOOL_MARK: Final = b'_call"'
# Kept of the bytes before a chunk, so a tool item's type cut between chunks is still found.
SCAN_OVERLAP: Final = 64
MAX_TOOL_CALLS: Final = 1024  # an answer's; bounds the tally's memory


class ToolCall(NamedTuple):
    """One billed call: `tool` names its `[tools]` entry; `option` is a container's memory
    limit, `reasoning` for a web search a reasoning model made, the image model, or the
    search model of a chat answer; `quality` and `size` those of a generated image."""

    tool: str
    option: str | None = None
    quality: str | None = None
    size: str | None = None


class ToolTally:
    """The tool calls an answer shows, each counted once however often it appears (a stream
    shows an item when it is added, when it is done and in the final response).

    The request's tool options come back in the Response's `tools`: they tell a
    `web_search_preview` call from a `web_search` one, a container's memory limit and the
    image model.
    """

    __slots__ = ("_items", "_options")

    def __init__(self) -> None:
        self._items: dict[str, dict[str, Any]] = {}
        self._options: dict[str, Any] = {}

    def absorb(self, obj: dict[str, Any], about: dict[str, Any]) -> None:
        """An answer object (`about`: the Response a stream event wraps, else `obj`)."""
        item = obj.get("item")
        if isinstance(item, dict):
            self._item(item)
        output = about.get("output")
        if isinstance(output, list):
            self._learn_options(about)
            for entry in output:
                if isinstance(entry, dict):
                    self._item(entry)
        elif isinstance(about.get("tools"), list):
            self._learn_options(about)
        obj_kind = about.get("object")
        model = about.get("model")
        if (
            isinstance(obj_kind, str)
            and obj_kind.startswith("chat.completion")
            and isinstance(model, str)
            and "search" in model
        ):
            self._items.setdefault(f"chat:{about.get('id')}", {"chat_search": model})

    def scan(self, data: bytes, start: int = 0) -> None:
        """Tool items in the raw bytes of an answer too big to parse (an image's base64 is
        megabytes), counted by type without their shape (the dearest price). A match ending
        within `data[:start]` was counted with the bytes before."""
        for match in _TOOL_TYPE.finditer(data):
            if match.end() > start and len(self._items) < MAX_TOOL_CALLS:
                self._items[f"scan:{len(self._items)}"] = {"type": match.group(1).decode()}

    def _item(self, item: dict[str, Any]) -> None:
        kind = item.get("type")
        item_id = item.get("id")
        if kind not in _TOOL_ITEMS or not isinstance(item_id, str):
            return
        if kind == "shell_call":
            shell = _shell_container(item)
            if shell is None:
                return
            item = shell
        seen = self._items.get(item_id)
        if seen is None:
            if len(self._items) >= MAX_TOOL_CALLS:
                return
            seen = self._items[item_id] = {}
        for name in ("type", "container_id", "quality", "size"):
            value = item.get(name)
            if isinstance(value, str) and value:
                seen[name] = value

    def _learn_options(self, response: dict[str, Any]) -> None:
        options = self._options
        for tool in response.get("tools") or ():
            if not isinstance(tool, dict):
                continue
            kind = tool.get("type")
            if kind == "web_search" or (
                isinstance(kind, str) and kind.startswith("web_search_preview")
            ):
                options.setdefault("search", set()).add(kind)
            elif kind in ("code_interpreter", "shell"):
                container = tool.get("container" if kind == "code_interpreter" else "environment")
                limit = container.get("memory_limit") if isinstance(container, dict) else None
                options["memory"] = limit if isinstance(limit, str) else None
            elif kind == "image_generation" and isinstance(tool.get("model"), str):
                options["image_model"] = tool["model"]
        reasoning = response.get("reasoning")
        if isinstance(reasoning, dict) and reasoning.get("effort"):
            options["reasoning"] = True

    def calls(self) -> tuple[ToolCall, ...]:
        options = self._options
        calls: list[ToolCall] = []
        containers: set[str] = set()
        for item_id, seen in self._items.items():
            if "chat_search" in seen:
                calls.append(ToolCall(CHAT_SEARCH, seen["chat_search"]))
                continue
            tool = _TOOL_ITEMS[seen["type"]]
            if tool == "web_search":
                calls.append(self._search_call())
            elif tool == "containers":
                container = seen.get("container_id", item_id)
                if container not in containers:
                    containers.add(container)
                    calls.append(ToolCall(tool, options.get("memory")))
            elif tool == "image_generation":
                model = options.get("image_model")
                calls.append(ToolCall(tool, model, seen.get("quality"), seen.get("size")))
            else:
                calls.append(ToolCall(tool))
        return tuple(calls)

    def _search_call(self) -> ToolCall:
        """`web_search_preview` when the request offered only the preview tool."""
        offered = self._options.get("search") or set()
        if offered and "web_search" not in offered:
            reasoning = "reasoning" if self._options.get("reasoning") else None
            return ToolCall("web_search_preview", reasoning)
        return ToolCall("web_search")


def _shell_container(item: dict[str, Any]) -> dict[str, Any] | None:
    """A hosted shell call as its container's: None for one in a local environment."""
    environment = item.get("environment")
    container_id = environment.get("container_id") if isinstance(environment, dict) else None
    if not isinstance(container_id, str):
        return None
    return {"type": "shell_call", "container_id": container_id}


def tally_of(
    tally: ToolTally | None, obj: dict[str, Any], about: dict[str, Any]
) -> ToolTally | None:
    """`tally` with what `obj` shows; a tally is made only for an answer that offers or calls
    a tool (or comes from a search model), so a plain answer costs a few lookups."""
    if tally is None:
        if not (about.get("tools") or _calls_tools(obj, about) or "choices" in about):
            return None
        tally = ToolTally()
    tally.absorb(obj, about)
    return tally


def _calls_tools(obj: dict[str, Any], about: dict[str, Any]) -> bool:
    item = obj.get("item")
    if isinstance(item, dict) and item.get("type") in _TOOL_ITEMS:
        return True
    output = about.get("output")
    return isinstance(output, list) and any(
        isinstance(entry, dict) and entry.get("type") in _TOOL_ITEMS for entry in output
    )


def tool_calls_of(tally: ToolTally | None) -> tuple[ToolCall, ...]:
    return tally.calls() if tally is not None else ()


def tool_calls_in(response: object) -> tuple[ToolCall, ...]:
    """The tool calls of one whole Response object (a WebSocket's `response.completed`)."""
    if not isinstance(response, dict):
        return ()
    tally = ToolTally()
    tally.absorb(response, response)
    return tally.calls()
