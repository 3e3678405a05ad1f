"""Deterministic model output and usage, so tests can predict every figure the fake reports.

Rules (the point of this module is that tests can compute them too):
- input tokens = whitespace-separated words across all input texts (min 1);
- the reply is `reply_words(prompt)`; output tokens = its word count, plus
  `REASONING_TOKENS` for reasoning models (gpt-5*, o1*, o3*, o4*);
- cached tokens = input tokens // 2 when the request carries `prompt_cache_key`, else 0;
- a `max_tokens` / `max_completion_tokens` / `max_output_tokens` cap truncates the reply.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import secrets
import struct
import time
from typing import Any

REASONING_TOKENS = 16
GREETING = ["Hello", "from", "the", "fake", "upstream."]
EMBEDDING_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


def new_id(prefix: str, size: int = 24) -> str:
    return prefix + secrets.token_hex(size // 2)


def count_words(text: str) -> int:
    return len(text.split())


def is_reasoning_model(model: str) -> bool:
    return model.startswith(("gpt-5", "o1", "o3", "o4"))


def _texts_of(value: Any) -> list[str]:
    """Every string found under `text`/`content`/`input` keys (or bare), in order."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [text for item in value for text in _texts_of(item)]
    if isinstance(value, dict):
        found: list[str] = []
        for key in ("text", "content", "input", "output"):
            if key in value:
                found.extend(_texts_of(value[key]))
        return found
    return []


def chat_prompt(body: dict[str, Any]) -> list[str]:
    return _texts_of(body.get("messages", []))


def responses_prompt(body: dict[str, Any]) -> list[str]:
    texts = _texts_of(body.get("instructions") or [])
    return texts + _texts_of(body.get("input", []))


def input_tokens(texts: list[str]) -> int:
    return max(1, sum(count_words(text) for text in texts))


def reply_words(texts: list[str], count: int | None = None) -> list[str]:
    """The reply: a greeting, then up to 20 words of the last input text.

    With `count`, exactly that many words, cycling the same sequence.
    """
    last = texts[-1].split()[:20] if texts else []
    words = [*GREETING, "You", "said:", *last] if last else list(GREETING)
    if count is None:
        return words
    return list(itertools.islice(itertools.cycle(words), count))


def join_words(words: list[str]) -> str:
    return " ".join(words)


def delta_pieces(words: list[str]) -> list[str]:
    """Stream deltas: one word each, with the separating space in front (after the first)."""
    return [word if i == 0 else " " + word for i, word in enumerate(words)]


def _cap(body: dict[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = body.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


def plan_reply(
    body: dict[str, Any], texts: list[str], count: int | None, *cap_keys: str
) -> tuple[list[str], bool]:
    """The words to answer with and whether a token cap cut them short."""
    words = reply_words(texts, count)
    cap = _cap(body, *cap_keys)
    if cap is not None and len(words) > cap:
        return words[:cap], True
    return words, False


def _usage_figures(body: dict[str, Any], texts: list[str], words: list[str]) -> dict[str, int]:
    model = str(body.get("model", ""))
    prompt = input_tokens(texts)
    reasoning = REASONING_TOKENS if is_reasoning_model(model) else 0
    cached = prompt // 2 if body.get("prompt_cache_key") else 0
    output = len(words) + reasoning
    return {"input": prompt, "cached": cached, "reasoning": reasoning, "output": output}


def served_tier(body: dict[str, Any]) -> str:
    """The `service_tier` an answer reports: the one asked for, `auto` served as default."""
    tier = body.get("service_tier")
    return tier if tier in ("flex", "priority", "scale") else "default"


def chat_usage(body: dict[str, Any], texts: list[str], words: list[str]) -> dict[str, Any]:
    f = _usage_figures(body, texts, words)
    return {
        "prompt_tokens": f["input"],
        "completion_tokens": f["output"],
        "total_tokens": f["input"] + f["output"],
        "prompt_tokens_details": {"cached_tokens": f["cached"], "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": f["reasoning"],
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def responses_usage(body: dict[str, Any], texts: list[str], words: list[str]) -> dict[str, Any]:
    f = _usage_figures(body, texts, words)
    return {
        "input_tokens": f["input"],
        "input_tokens_details": {"cached_tokens": f["cached"]},
        "output_tokens": f["output"],
        "output_tokens_details": {"reasoning_tokens": f["reasoning"]},
        "total_tokens": f["input"] + f["output"],
    }


def chat_completion(body: dict[str, Any], count: int | None = None) -> dict[str, Any]:
    texts = chat_prompt(body)
    words, cut = plan_reply(body, texts, count, "max_completion_tokens", "max_tokens")
    choices = int(body.get("n") or 1)
    usage = chat_usage(body, texts, words * choices)
    return {
        "id": new_id("chatcmpl-", 30),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model"),
        "choices": [
            {
                "index": index,
                "message": {
                    "role": "assistant",
                    "content": join_words(words),
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "length" if cut else "stop",
            }
            for index in range(choices)
        ],
        "usage": usage,
        "service_tier": served_tier(body),
        "system_fingerprint": "fp_fakeupstream",
    }


def chat_chunks(body: dict[str, Any], count: int | None = None) -> list[dict[str, Any]]:
    """The chunk objects of a streamed chat completion, in order (no `[DONE]`)."""
    texts = chat_prompt(body)
    words, cut = plan_reply(body, texts, count, "max_completion_tokens", "max_tokens")
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    base = {
        "id": new_id("chatcmpl-", 30),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body.get("model"),
        "service_tier": served_tier(body),
        "system_fingerprint": "fp_fakeupstream",
    }
    if include_usage:
        base["usage"] = None

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**base, "choices": [choice]}

    chunks = [chunk({"role": "assistant", "content": "", "refusal": None})]
    chunks += [chunk({"content": piece}) for piece in delta_pieces(words)]
    chunks.append(chunk({}, "length" if cut else "stop"))
    if include_usage:
        chunks.append({**base, "choices": [], "usage": chat_usage(body, texts, words)})
    return chunks


def response_object(
    body: dict[str, Any],
    *,
    response_id: str,
    status: str,
    words: list[str] | None,
    cut: bool = False,
) -> dict[str, Any]:
    """A Response in `status`; `words` None means no output yet."""
    now = int(time.time())
    texts = responses_prompt(body)
    message_id = "msg_" + hashlib.sha256(response_id.encode()).hexdigest()[:48]
    output: list[dict[str, Any]] = []
    if words is not None:
        output.append(
            {
                "id": message_id,
                "type": "message",
                "status": "incomplete" if cut else "completed",
                "role": "assistant",
                "content": [
                    {
                        "type": "output_text",
                        "text": join_words(words),
                        "annotations": [],
                        "logprobs": [],
                    }
                ],
            }
        )
    return {
        "id": response_id,
        "object": "response",
        "created_at": now,
        "status": status,
        "background": bool(body.get("background", False)),
        "completed_at": now if status == "completed" else None,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"),
        "model": body.get("model"),
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
        "safety_identifier": body.get("safety_identifier"),
        "service_tier": served_tier(body),
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools", []),
        "top_logprobs": body.get("top_logprobs", 0),
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": responses_usage(body, texts, words) if words is not None else None,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


def response_events(
    body: dict[str, Any], response_id: str, count: int | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """The (event type, payload) pairs of a streamed Response, sequence numbers included."""
    texts = responses_prompt(body)
    words, cut = plan_reply(body, texts, count, "max_output_tokens")
    final = response_object(
        body,
        response_id=response_id,
        status="incomplete" if cut else "completed",
        words=words,
        cut=cut,
    )
    started = response_object(body, response_id=response_id, status="in_progress", words=None)
    item = final["output"][0]
    part_done = item["content"][0]
    where = {"item_id": item["id"], "output_index": 0}
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": {**started}}),
        ("response.in_progress", {"response": started}),
        (
            "response.output_item.added",
            {
                "output_index": 0,
                "item": {**item, "status": "in_progress", "content": []},
            },
        ),
        (
            "response.content_part.added",
            {
                **where,
                "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []},
            },
        ),
    ]
    events += [
        (
            "response.output_text.delta",
            {**where, "content_index": 0, "delta": piece, "logprobs": []},
        )
        for piece in delta_pieces(words)
    ]
    events += [
        (
            "response.output_text.done",
            {**where, "content_index": 0, "text": part_done["text"], "logprobs": []},
        ),
        ("response.content_part.done", {**where, "content_index": 0, "part": part_done}),
        ("response.output_item.done", {"output_index": 0, "item": item}),
        ("response.incomplete" if cut else "response.completed", {"response": final}),
    ]
    return [
        (kind, {"type": kind, "sequence_number": number, **payload})
        for number, (kind, payload) in enumerate(events)
    ]


def embedding_vector(text: str, dimensions: int) -> list[float]:
    """A unit-free pseudo-random vector seeded by the text, so equal inputs embed equally."""
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        block = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        values.extend((byte - 127.5) / 127.5 for byte in block)
        counter += 1
    return values[:dimensions]


def embeddings(body: dict[str, Any]) -> dict[str, Any]:
    raw = body.get("input", "")
    if isinstance(raw, str):
        items: list[Any] = [raw]
    elif isinstance(raw, list) and raw and isinstance(raw[0], int):
        items = [raw]
    else:
        items = list(raw) if isinstance(raw, list) else [raw]
    model = str(body.get("model", ""))
    dimensions = int(body.get("dimensions") or EMBEDDING_DIMENSIONS.get(model, 1536))
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    tokens = 0
    for index, item in enumerate(items):
        text = item if isinstance(item, str) else " ".join(str(token) for token in item)
        tokens += len(item) if isinstance(item, list) else count_words(item)
        vector = embedding_vector(text, dimensions)
        encoded: Any = vector
        if as_base64:
            encoded = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = max(1, tokens)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


MODERATION_CATEGORIES = [
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
]


def moderation(body: dict[str, Any]) -> dict[str, Any]:
    """Flags `violence` when the text mentions kill/violent; nothing else is ever flagged."""
    raw = body.get("input", "")
    texts = _texts_of(raw) if not isinstance(raw, str) else [raw]
    results = []
    for text in texts:
        violent = any(word in text.lower() for word in ("kill", "violent"))
        categories = {name: name == "violence" and violent for name in MODERATION_CATEGORIES}
        scores = {name: (0.97 if categories[name] else 0.0001) for name in MODERATION_CATEGORIES}
        results.append(
            {
                "flagged": violent,
                "categories": categories,
                "category_scores": scores,
                "category_applied_input_types": {name: ["text"] for name in MODERATION_CATEGORIES},
            }
        )
    return {
        "id": new_id("modr-", 32),
        "model": body.get("model", "omni-moderation-latest"),
        "results": results,
    }
