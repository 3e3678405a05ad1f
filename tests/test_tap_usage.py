"""Usage, model and object id read from JSON answers and SSE streams as they pass."""

from __future__ import annotations

import json
from typing import Any

import pytest

import teamrelay.tap
from fakeupstream import generation
from fakeupstream import tools as fake_tools
from fakeupstream.encoding import compress
from teamrelay.tap import Tap, Usage, estimate_request_tokens
from teamrelay.tap import taps as taps_module
from teamrelay.tap.usage import CHAT_SEARCH, ToolCall, tool_calls_of, usage_from


def run(tap: Tap, body: bytes, size: int = 1000) -> bytes:
    out = [tap.feed(body[i : i + size]) for i in range(0, len(body), size)]
    return b"".join(out) + tap.finish()


def sse(*objects: Any, event_names: bool = False) -> bytes:
    out = b""
    for obj in objects:
        if event_names and isinstance(obj, dict):
            out += b"event: " + obj["type"].encode() + b"\n"
        data = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"))
        out += b"data: " + data.encode() + b"\n\n"
    return out


CHAT_COMPLETION = {
    "id": "chatcmpl-abc",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-5-2025-08-07",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
    "usage": {
        "prompt_tokens": 12,
        "completion_tokens": 30,
        "total_tokens": 42,
        "prompt_tokens_details": {"cached_tokens": 8},
        "completion_tokens_details": {"reasoning_tokens": 16},
    },
}
RESPONSE = {
    "id": "resp_123",
    "object": "response",
    "status": "completed",
    "model": "gpt-5",
    "output": [],
    "usage": {
        "input_tokens": 100,
        "input_tokens_details": {"cached_tokens": 40},
        "output_tokens": 50,
        "output_tokens_details": {"reasoning_tokens": 20},
        "total_tokens": 150,
    },
}


@pytest.mark.parametrize(
    ("body", "usage", "model", "object_id"),
    [
        (CHAT_COMPLETION, Usage(12, 30, 8, 16), "gpt-5-2025-08-07", "chatcmpl-abc"),
        (RESPONSE, Usage(100, 50, 40, 20), "gpt-5", "resp_123"),
        (
            {
                "object": "list",
                "data": [],
                "model": "text-embedding-3-small",
                "usage": {"prompt_tokens": 8, "total_tokens": 8},
            },
            Usage(8, 0, 0, 0),
            "text-embedding-3-small",
            None,
        ),
        ({"id": "file-abc", "object": "file", "bytes": 10}, None, None, "file-abc"),
        ({"id": "batch_abc", "object": "batch", "status": "validating"}, None, None, "batch_abc"),
        (
            {
                "text": "hello",
                "usage": {
                    "type": "tokens",
                    "input_tokens": 14,
                    "input_token_details": {"text_tokens": 0, "audio_tokens": 14},
                    "output_tokens": 4,
                },
            },
            Usage(14, 4, 0, 0, (14, 0)),
            None,
            None,
        ),
        ({"text": "hello", "usage": {"type": "duration", "seconds": 3}}, None, None, None),
        ([1, 2, 3], None, None, None),
    ],
)
def test_json_answers_give_usage_model_and_id(
    body: Any, usage: Usage | None, model: str | None, object_id: str | None
) -> None:
    raw = json.dumps(body, indent=1).encode()
    tap = Tap.for_response("application/json", None)
    assert run(tap, raw, size=17) == raw
    assert (tap.usage, tap.model, tap.object_id) == (usage, model, object_id)


def test_a_json_feed_returns_the_same_bytes_object() -> None:
    tap = Tap.for_response("application/json; charset=utf-8", "identity")
    chunk = json.dumps(CHAT_COMPLETION).encode()
    assert tap.feed(chunk) is chunk
    assert tap.finish() == b""
    assert tap.usage == Usage(12, 30, 8, 16)


@pytest.mark.parametrize(
    "beyond_strict_json",
    [b'"seed": 123456789012345678901234567890', b'"temperature": NaN', b'"bias": -Infinity'],
)
def test_json_answers_with_nan_or_huge_numbers_still_give_usage_model_and_id(
    beyond_strict_json: bytes,
) -> None:
    raw = json.dumps(CHAT_COMPLETION).encode()[:-1] + b", " + beyond_strict_json + b"}"
    tap = Tap.for_response("application/json", None)
    assert run(tap, raw, size=17) == raw
    assert (tap.usage, tap.model, tap.object_id) == (
        Usage(12, 30, 8, 16),
        "gpt-5-2025-08-07",
        "chatcmpl-abc",
    )


def test_a_broken_or_empty_json_body_gives_no_usage() -> None:
    for body in (b"", b'{"usage": {"prompt_tokens": 1', b"<html>"):
        tap = Tap.for_response("application/json", None)
        run(tap, body)
        assert tap.usage is None


def test_a_json_body_over_the_cap_is_not_kept_but_its_usage_is_salvaged() -> None:
    big = dict(RESPONSE, output=[{"type": "image", "result": "A" * 5_000_000}])
    raw = json.dumps(big, separators=(",", ":")).encode()
    tap = taps_module.JsonTap()
    kept_most = 0
    for i in range(0, len(raw), 65536):
        tap.feed(raw[i : i + 65536])
        kept = sum(map(len, tap._parts or [])) + len(tap._head) + len(tap._tail)
        kept_most = max(kept_most, kept)
    tap.finish()
    assert kept_most <= taps_module.MAX_JSON_BYTES + 65536
    assert (tap.usage, tap.model, tap.object_id) == (Usage(100, 50, 40, 20), "gpt-5", "resp_123")


def test_a_json_body_over_the_cap_with_usage_out_of_reach_gives_none() -> None:
    raw = json.dumps(dict(CHAT_COMPLETION, padding="x" * 3_000_000)).encode()
    tap = Tap.for_response("application/json", None)
    run(tap, raw, size=65536)
    assert tap.usage is None
    assert tap.object_id == "chatcmpl-abc"


@pytest.mark.parametrize(
    ("content_type", "encoding"),
    [
        ("application/json", "gzip"),
        ("application/json", "br"),
        ("text/event-stream", "deflate"),
        ("application/octet-stream", None),
        ("audio/mpeg", None),
        (None, None),
    ],
)
def test_binary_or_undecodable_bodies_pass_untouched_and_unread(
    content_type: str | None, encoding: str | None
) -> None:
    tap = Tap.for_response(content_type, encoding)
    body = json.dumps(CHAT_COMPLETION).encode()  # plain JSON labelled compressed: corrupt
    assert tap.feed(body) is body
    assert tap.finish() == b""
    assert tap.usage is None
    assert tap.unreadable == (encoding is not None)


def chat_chunks(include_usage: bool) -> list[dict[str, Any]]:
    base = {"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1, "model": "gpt-5"}
    extra: dict[str, Any] = {"usage": None} if include_usage else {}
    chunks = [
        {**base, "choices": [{"index": 0, "delta": {"content": word}}], **extra}
        for word in ("a", "b")
    ]
    if include_usage:
        chunks.append({**base, "choices": [], "usage": CHAT_COMPLETION["usage"]})
    return chunks


def test_a_chat_stream_with_include_usage_gives_usage_without_stripping() -> None:
    stream = sse(*chat_chunks(True), "[DONE]")
    tap = Tap.for_response("text/event-stream", None)
    assert not tap.strips
    assert run(tap, stream, size=50) == stream
    assert (tap.usage, tap.model, tap.object_id) == (Usage(12, 30, 8, 16), "gpt-5", "chatcmpl-9")


def test_a_chat_stream_without_usage_gives_model_and_id_only() -> None:
    tap = Tap.for_response("text/event-stream", None)
    run(tap, sse(*chat_chunks(False), "[DONE]"))
    assert (tap.usage, tap.model, tap.object_id) == (None, "gpt-5", "chatcmpl-9")


def test_a_stream_event_with_nan_still_gives_its_usage() -> None:
    *deltas, last = chat_chunks(True)
    usage_chunk = json.dumps(last).encode()[:-1] + b', "temperature": NaN}'
    stream = sse(*deltas) + b"data: " + usage_chunk + b"\n\n" + sse("[DONE]")
    tap = Tap.for_response("text/event-stream", None)
    assert run(tap, stream, size=50) == stream
    assert (tap.usage, tap.model, tap.object_id) == (Usage(12, 30, 8, 16), "gpt-5", "chatcmpl-9")


def responses_stream(final: str) -> bytes:
    created = {
        "type": "response.created",
        "sequence_number": 0,
        "response": dict(RESPONSE, status="in_progress", usage=None),
    }
    delta = {"type": "response.output_text.delta", "sequence_number": 1, "delta": "Hi"}
    done = {"type": final, "sequence_number": 2, "response": RESPONSE}
    return sse(created, delta, done, event_names=True)


@pytest.mark.parametrize("final", ["response.completed", "response.incomplete", "response.failed"])
def test_a_responses_stream_gives_usage_from_its_final_event(final: str) -> None:
    tap = Tap.for_response("text/event-stream", None)
    run(tap, responses_stream(final), size=33)
    assert (tap.usage, tap.model, tap.object_id) == (Usage(100, 50, 40, 20), "gpt-5", "resp_123")


def test_an_abandoned_stream_keeps_what_it_saw() -> None:
    stream = responses_stream("response.completed")
    tap = Tap.for_response("text/event-stream", None)
    tap.feed(stream[: stream.index(b"response.output_text.delta") + 10])
    assert (tap.usage, tap.model, tap.object_id) == (None, "gpt-5", "resp_123")
    stream = sse(*chat_chunks(True))
    tap = Tap.for_response("text/event-stream", None)
    tap.feed(stream)
    assert tap.usage == Usage(12, 30, 8, 16)


def test_an_oversized_final_event_still_gives_its_usage() -> None:
    big = dict(RESPONSE, output=[{"type": "image_generation_call", "result": "A" * 3_000_000}])
    done = {"type": "response.completed", "sequence_number": 5, "response": big}
    stream = sse({"type": "response.created", "response": dict(RESPONSE, usage=None)}, done)
    tap = Tap.for_response("text/event-stream", None)
    assert run(tap, stream, size=65536) == stream
    assert tap.usage == Usage(100, 50, 40, 20)


def test_delta_events_cost_no_json_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[bytes] = []
    real = taps_module.loads

    def counting(data: bytes) -> Any:
        parsed.append(data)
        return real(data)

    monkeypatch.setattr(taps_module, "loads", counting)
    tap = Tap.for_response("text/event-stream", None)
    run(tap, sse(*chat_chunks(True), "[DONE]") + sse(*chat_chunks(False)))
    # The first event (for model and id) and the usage chunk, nothing else.
    assert len(parsed) == 2


def test_usage_shapes_are_normalised() -> None:
    assert usage_from({"prompt_tokens": 3}) == Usage(3, 0, 0, 0)
    assert usage_from({"input_tokens": 3, "output_tokens": True}) == Usage(3, 0, 0, 0)
    assert usage_from({"total_tokens": 3}) is None
    assert usage_from(None) is None


def test_request_estimate_is_a_quarter_of_the_bytes_plus_the_output_cap() -> None:
    assert estimate_request_tokens(b"x" * 400) == 100
    assert estimate_request_tokens(b"x" * 401) == 101
    body = b'{"model":"gpt-5","input":"hi","max_output_tokens": 500}'
    assert estimate_request_tokens(body) == -(-len(body) // 4) + 500
    body = b'{"max_tokens":10,"max_completion_tokens":2000}'
    assert estimate_request_tokens(body) == -(-len(body) // 4) + 2000


def test_the_public_names_are_exactly_the_exported_ones() -> None:
    public = {name for name in vars(teamrelay.tap) if not name.startswith("_")}
    modules = {"decoding", "estimate", "sse", "streamopts", "taps", "usage"}
    assert set(teamrelay.tap.__all__) == public - modules


def _answer(tools: list[dict[str, Any]], model: str = "gpt-5") -> dict[str, Any]:
    body = {"model": model, "input": "look it up", "tools": tools}
    done = generation.response_object(body, response_id="resp_t", status="completed", words=["a"])
    return fake_tools.with_tool_calls(done, fake_tools.tool_items(body))


def _stream(tools: list[dict[str, Any]], model: str = "gpt-5") -> bytes:
    body = {"model": model, "input": "look it up", "tools": tools}
    events = generation.response_events(body, "resp_t")
    calls = fake_tools.stream_with_tool_calls(events, fake_tools.tool_items(body))
    return sse(*(payload for _, payload in calls), event_names=True)


ALL_TOOLS = [
    {"type": "web_search"},
    {"type": "file_search", "vector_store_ids": ["vs_1"]},
    {"type": "code_interpreter", "container": {"type": "auto", "memory_limit": "4g"}},
    {"type": "image_generation", "quality": "low", "size": "1024x1536"},
]
ALL_CALLS = (
    ToolCall("web_search"),
    ToolCall("file_search"),
    ToolCall("containers", "4g"),
    ToolCall("image_generation", None, "low", "1024x1536"),
)


def calls_of(tap: Tap) -> tuple[ToolCall, ...]:
    return tool_calls_of(tap.tools)


def test_a_json_answer_gives_each_built_in_tool_call_once() -> None:
    tap = Tap.for_response("application/json", None)
    run(tap, json.dumps(_answer(ALL_TOOLS)).encode())
    assert calls_of(tap) == ALL_CALLS


def test_a_stream_counts_each_call_once_across_its_added_done_and_final_events() -> None:
    stream = _stream(ALL_TOOLS)
    assert stream.count(b'"type":"web_search_call"') == 3  # added, done, response.completed
    for size in (7, 1000, len(stream)):
        tap = Tap.for_response("text/event-stream", None)
        assert run(tap, stream, size) == stream
        assert calls_of(tap) == ALL_CALLS
        assert tap.usage is not None


def test_a_cut_stream_keeps_the_calls_that_passed() -> None:
    stream = _stream([{"type": "web_search"}])
    tap = Tap.for_response("text/event-stream", None)
    tap.feed(stream[: stream.index(b"response.output_text.delta")])
    assert calls_of(tap) == (ToolCall("web_search"),)


@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd", "deflate"])
def test_compressed_answers_give_their_tool_calls(encoding: str) -> None:
    for content_type, body in (
        ("application/json", json.dumps(_answer(ALL_TOOLS)).encode()),
        ("text/event-stream", _stream(ALL_TOOLS)),
    ):
        tap = Tap.for_response(content_type, encoding)
        sent = compress(encoding, body)
        assert run(tap, sent, 100) == sent
        assert calls_of(tap) == ALL_CALLS


def test_containers_are_counted_once_however_many_calls_ran_in_them() -> None:
    tools = [{"type": "code_interpreter", "container": {"type": "auto"}}]
    body = {
        "model": "gpt-5",
        "input": "x",
        "tools": tools,
        "metadata": {"code_interpreter_calls": 3},
    }
    done = generation.response_object(body, response_id="resp_c", status="completed", words=["a"])
    answer = fake_tools.with_tool_calls(done, fake_tools.tool_items(body))
    assert sum(item["type"] == "code_interpreter_call" for item in answer["output"]) == 3
    tap = Tap.for_response("application/json", None)
    run(tap, json.dumps(answer).encode())
    assert calls_of(tap) == (ToolCall("containers", None),)


def test_hosted_shell_calls_are_billed_by_their_container_and_local_ones_not() -> None:
    hosted = {"type": "shell", "environment": {"type": "container_auto", "memory_limit": "16g"}}
    interpreter = {"type": "code_interpreter", "container": {"type": "auto"}}
    tap = Tap.for_response("application/json", None)
    run(tap, json.dumps(_answer([hosted])).encode())
    assert calls_of(tap) == (ToolCall("containers", "16g"),)
    tap = Tap.for_response("text/event-stream", None)
    run(tap, _stream([{"type": "shell", "environment": {"type": "local"}}]))
    assert calls_of(tap) == ()
    answer = _answer([interpreter, hosted])  # two containers, the memory the request gave
    tap = Tap.for_response("application/json", None)
    run(tap, json.dumps(answer).encode())
    assert len(calls_of(tap)) == 2


def test_the_preview_search_tool_is_told_apart_and_a_reasoning_model_marked() -> None:
    preview = [{"type": "web_search_preview_2025_03_11"}]
    for model, reasoning, option in (("gpt-4o", None, None), ("o3", "medium", "reasoning")):
        answer = _answer(preview, model) | {"reasoning": {"effort": reasoning, "summary": None}}
        tap = Tap.for_response("application/json", None)
        run(tap, json.dumps(answer).encode())
        assert calls_of(tap) == (ToolCall("web_search_preview", option),)


def test_a_chat_answer_of_a_search_model_is_one_search_call() -> None:
    search = dict(CHAT_COMPLETION, model="gpt-4o-mini-search-preview-2025-03-11")
    for content_type, body in (
        ("application/json", json.dumps(search).encode()),
        ("text/event-stream", sse(*(dict(c, model=search["model"]) for c in chat_chunks(True)))),
    ):
        tap = Tap.for_response(content_type, None)
        run(tap, body)
        assert calls_of(tap) == (ToolCall(CHAT_SEARCH, "gpt-4o-mini-search-preview-2025-03-11"),)
    plain = Tap.for_response("application/json", None)
    run(plain, json.dumps(CHAT_COMPLETION).encode())
    assert calls_of(plain) == ()


def test_an_answer_too_big_to_parse_still_counts_its_image_calls() -> None:
    big = "A" * 3_000_000
    output = [
        {"id": f"ig_{n}", "type": "image_generation_call", "status": "completed", "result": big}
        for n in range(2)
    ]
    body = json.dumps(dict(RESPONSE, output=output)).encode()
    for size in (65536, 1000, 5_000_000):
        tap = Tap.for_response("application/json", None)
        assert run(tap, body, size) == body
        assert calls_of(tap) == (ToolCall("image_generation"),) * 2
        assert tap.usage == Usage(100, 50, 40, 20)
    whole = Tap.for_response("application/json", None)
    assert whole.whole(body) == body
    assert calls_of(whole) == (ToolCall("image_generation"),) * 2
    final = {"type": "response.completed", "response": dict(RESPONSE, output=output)}
    added = [
        {"type": "response.output_item.added", "item": {"id": item["id"], "type": item["type"]}}
        for item in output
    ]
    tap = Tap.for_response("text/event-stream", None)
    created = {"type": "response.created", "response": dict(RESPONSE, usage=None)}
    run(tap, sse(created, *added, final, event_names=True))
    assert calls_of(tap) == (ToolCall("image_generation"),) * 2
