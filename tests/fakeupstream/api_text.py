"""Chat completions, embeddings and moderations: the stateless text endpoints."""

from __future__ import annotations

import base64
import time
from typing import Any

from aiohttp import web

from . import generation, tools
from .errors import ApiError, require
from .wire import exchange_of, json_reply, sse_json_events

routes = web.RouteTableDef()


def answer(url: str, body: dict[str, Any]) -> dict[str, Any]:
    """The JSON a non-streaming call to `url` gets; batches reuse it line by line."""
    if url == "/v1/chat/completions":
        require(body, "model", "messages")
        return generation.chat_completion(body)
    if url == "/v1/embeddings":
        require(body, "model", "input")
        return generation.embeddings(body)
    if url == "/v1/moderations":
        require(body, "input")
        return generation.moderation(body)
    if url == "/v1/responses":
        require(body, "model")
        words, cut = generation.plan_reply(
            body, generation.responses_prompt(body), None, "max_output_tokens"
        )
        done = generation.response_object(
            body,
            response_id=generation.new_id("resp_", 48),
            status="incomplete" if cut else "completed",
            words=words,
            cut=cut,
        )
        return tools.with_tool_calls(done, tools.tool_items(body))
    raise ApiError(400, f"Unsupported URL for this operation: {url}", param="url")


@routes.post("/v1/chat/completions")
async def chat_completions(request: web.Request) -> web.StreamResponse:
    exchange = exchange_of(request)
    body = exchange.body.json()
    require(body, "model", "messages")
    if not body.get("stream"):
        return json_reply(spoken(body, generation.chat_completion(body)))
    fault = exchange.fault
    chunks = generation.chat_chunks(body, fault.sse_events if fault is not None else None)
    return await sse_json_events(request, [(None, chunk) for chunk in chunks], done=True)


def spoken(body: dict[str, Any], completion: dict[str, Any]) -> dict[str, Any]:
    """A completion asked for audio (`modalities` with "audio") as the audio models answer:
    the reply in `message.audio` (base64 audio and its transcript, no `content`), and as
    many audio output tokens as transcript words on top of them."""
    if "audio" not in (body.get("modalities") or []):
        return completion
    usage = completion["usage"]
    for choice in completion["choices"]:
        message = choice["message"]
        transcript, message["content"] = message["content"], None
        message["audio"] = {
            "id": generation.new_id("audio_", 32),
            "data": base64.b64encode(transcript.encode()).decode(),
            "expires_at": int(time.time()) + 3600,
            "transcript": transcript,
        }
    audio = usage["completion_tokens"] - usage["completion_tokens_details"]["reasoning_tokens"]
    usage["completion_tokens_details"]["audio_tokens"] = audio
    usage["completion_tokens"] += audio
    usage["total_tokens"] += audio
    return completion


@routes.post("/v1/embeddings")
async def embeddings(request: web.Request) -> web.StreamResponse:
    return json_reply(answer("/v1/embeddings", exchange_of(request).body.json()))


@routes.post("/v1/moderations")
async def moderations(request: web.Request) -> web.StreamResponse:
    return json_reply(answer("/v1/moderations", exchange_of(request).body.json()))
