"""GPT Actions wrappers: ask a model, fetch or cancel a long answer, embed, models, images."""

# No `from __future__ import annotations`: FastAPI reads these handlers' annotations, and
# they name the deadline dependency passed in as `Budget`.

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from teamrelay.accounting import CountedOnce
from teamrelay.actions import results
from teamrelay.actions.bodies import (
    AskBody,
    EmbedBody,
    ImageBody,
    ResponseRef,
)
from teamrelay.actions.bridge import Bridge, id_path, ok_response, route_extra
from teamrelay.actions.calls import segment
from teamrelay.actions.compact import JsonAnswer, fit_answer
from teamrelay.actions.files_out import (
    PURPOSE_BLOB,
    inline,
    inline_size,
)
from teamrelay.actions.limits import ANSWER_CHARS


def _once(counted: CountedOnce, request: Request, answer: dict[str, Any]) -> dict[str, Any]:
    """`answer` as it is; its row leaves the usage out if an earlier row (an Action's or a
    `/v1` call's) counted it."""
    response_id = answer.get("response_id")
    if "usage" in answer and response_id and not counted.first(response_id):
        request.state.usage_counted = True
    return answer


def add_routes(keyed: APIRouter, bridge: Bridge, Budget: Any) -> None:
    relay = bridge.relay
    calls = bridge.calls
    counted = relay.counted

    @keyed.post(
        "/actions/ask",
        operation_id="askModel",
        summary="Ask an OpenAI model",
        description=(
            "Ask a model (Responses API), optionally searching vector stores or the web. "
            "Long work comes back as status in_progress with a response_id: then call "
            "getAnswer."
        ),
        responses=ok_response("The answer, or its progress.", results.ANSWER_SCHEMA),
        openapi_extra=route_extra(False, "createResponse", "getResponse"),
    )
    async def ask(body: AskBody, request: Request, deadline: Budget) -> Response:
        model = body.model or bridge.settings.default_model
        relay.router.check_model_name(model)
        upstream: dict[str, Any] = {
            "model": model,
            "input": body.input,
            "background": True,
            "store": True,
        }
        tools: list[dict[str, Any]] = []
        if body.vector_store_ids:
            tools.append({"type": "file_search", "vector_store_ids": body.vector_store_ids})
        if body.web_search:
            tools.append({"type": "web_search"})
        if tools:
            upstream["tools"] = tools
        for key in ("instructions", "previous_response_id", "max_output_tokens"):
            if getattr(body, key) is not None:
                upstream[key] = getattr(body, key)
        created = await calls.json("POST", "/responses", deadline, body=upstream)
        answer = results.answer(await bridge.settle(created, deadline))
        return JsonAnswer(_once(counted, request, answer))

    @keyed.get(
        "/actions/answers/{response_id}",
        operation_id="getAnswer",
        summary="Get a model's answer",
        description=(
            "Fetch an answer by response_id: waits briefly while it is still running. "
            "Pass offset to read on when the text was truncated."
        ),
        responses=ok_response("The answer, or its progress.", results.ANSWER_SCHEMA),
        openapi_extra=route_extra(False, "getResponse"),
    )
    async def get_answer(
        response_id: Annotated[str, id_path("The response_id from askModel.", "resp_abc123")],
        request: Request,
        deadline: Budget,
        offset: Annotated[
            int, Query(ge=0, description="Where to continue a truncated text.", examples=[0])
        ] = 0,
    ) -> Response:
        found = await calls.json("GET", f"/responses/{segment(response_id)}", deadline)
        answer = results.answer(await bridge.settle(found, deadline), offset)
        return JsonAnswer(_once(counted, request, answer))

    @keyed.post(
        "/actions/answers/cancel",
        operation_id="cancelAnswer",
        summary="Stop a running answer",
        description="Cancel an answer that is still in progress.",
        responses=ok_response("The cancelled answer.", results.ANSWER_SCHEMA),
        openapi_extra=route_extra(True, "cancelResponse"),
    )
    async def cancel_answer(body: ResponseRef, request: Request, deadline: Budget) -> Response:
        path = f"/responses/{segment(body.response_id)}/cancel"
        answer = results.answer(await calls.json("POST", path, deadline, body={}))
        return JsonAnswer(_once(counted, request, answer))

    @keyed.post(
        "/actions/embeddings",
        operation_id="embedText",
        summary="Embed texts as vectors",
        description="Turn texts into embedding vectors (for similarity or clustering).",
        responses=ok_response("The vectors.", results.EMBEDDINGS_SCHEMA),
        openapi_extra=route_extra(False, "createEmbedding"),
    )
    async def embed(body: EmbedBody, deadline: Budget) -> Response:
        relay.router.check_model_name(body.model)
        request = body.model_dump(exclude_none=True)
        return JsonAnswer(
            results.embeddings(await calls.json("POST", "/embeddings", deadline, body=request))
        )

    @keyed.get(
        "/actions/models",
        operation_id="listModels",
        summary="List available models",
        description="The model ids this relay lets you use.",
        responses=ok_response("Model ids.", results.MODELS_SCHEMA),
        openapi_extra=route_extra(False, "listModels"),
    )
    async def list_models(deadline: Budget) -> Response:
        found = await calls.json("GET", "/models", deadline)
        allowlist = relay.router.allowlist
        ids = [i for i in results.model_ids(found) if allowlist.allows(i)]
        return JsonAnswer(fit_answer({"models": ids}, "Not every id fit."))

    @keyed.post(
        "/actions/images",
        operation_id="generateImage",
        summary="Generate an image",
        description="Create images from a prompt; they come back as files shown in the chat.",
        responses=ok_response("The images, as files.", results.FILE_RESPONSE_SCHEMA),
        openapi_extra=route_extra(False, "createImage"),
    )
    async def generate_image(body: ImageBody, request: Request, deadline: Budget) -> Response:
        relay.router.check_model_name(body.model)
        payload = body.model_dump(exclude_none=True)
        if body.model.startswith("dall-e"):
            payload["response_format"] = "b64_json"
        made = await calls.json("POST", "/images/generations", deadline, body=payload)
        kind = str(made.get("output_format") or "png")
        files: list[Any] = []
        room = ANSWER_CHARS - 2000
        for index, item in enumerate(made.get("data") or []):
            if isinstance(item.get("url"), str):
                files.append(item["url"])
                continue
            data = base64.b64decode(item.get("b64_json") or "")
            name, mime = f"image-{index + 1}.{kind}", f"image/{kind}"
            if inline_size(len(data), name, mime) <= room:
                files.append(inline(name, mime, data))
                room -= inline_size(len(data), name, mime)
            else:
                key = bridge.blobs.put(data)
                files.append(bridge.link(request, PURPOSE_BLOB, key, name, mime))
        answer: dict[str, Any] = {"openaiFileResponse": files}
        if made.get("usage"):
            answer["usage"] = made["usage"]
        return JsonAnswer(answer)
