"""The bytes every target sees: one request and one answer, identical for direct, nginx and relay.

Client and upstream both import this module so the ~1 KB sizes and the SSE shape live in one place.
"""

import json
from collections.abc import Mapping

RELAY_KEY = "tr-bench-key"
UPSTREAM_KEY = "sk-bench-upstream"

CHAT_PATH = "/v1/chat/completions"
FILES_PATH = "/v1/files"

STREAM_MARKER = b'"stream":true'


def _compact(doc: Mapping[str, object]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def chat_request(stream: bool = False) -> bytes:
    user: dict[str, str] = {"role": "user", "content": ""}
    doc: dict[str, object] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "You are a terse assistant."}, user],
        "temperature": 0.2,
        "max_tokens": 64,
    }
    if stream:
        doc["stream"] = True
        doc["stream_options"] = {"include_usage": True}
    user["content"] = "x" * (1024 - len(_compact(doc)))
    return _compact(doc)


def chat_response() -> bytes:
    message: dict[str, object] = {"role": "assistant", "content": "", "refusal": None}
    doc: dict[str, object] = {
        "id": "chatcmpl-bench0000000000000000000000",
        "object": "chat.completion",
        "created": 1764000000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 231, "completion_tokens": 64, "total_tokens": 295},
        "system_fingerprint": "fp_bench",
    }
    message["content"] = "y" * (1024 - len(_compact(doc)))
    return _compact(doc)


def chat_stream_events(count: int) -> list[bytes]:
    """`count` chunk events, a usage chunk and `[DONE]`, each a complete SSE event."""
    events = []
    for i in range(count):
        chunk = {
            "id": "chatcmpl-bench0000000000000000000000",
            "object": "chat.completion.chunk",
            "created": 1764000000,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "delta": {"content": f"tok{i} "}, "finish_reason": None}],
        }
        events.append(b"data: " + _compact(chunk) + b"\n\n")
    usage = {
        "id": "chatcmpl-bench0000000000000000000000",
        "object": "chat.completion.chunk",
        "choices": [],
        "usage": {"prompt_tokens": 231, "completion_tokens": count, "total_tokens": 231 + count},
    }
    events.append(b"data: " + _compact(usage) + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events
