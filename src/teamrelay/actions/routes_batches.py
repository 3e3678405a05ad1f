"""GPT Actions wrappers: batches, and the proxy envelope for the rest of the API."""

# No `from __future__ import annotations`: FastAPI reads these handlers' annotations, and
# they name the deadline dependency passed in as `Budget`.

import json
from typing import Annotated, Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from teamrelay.actions import results
from teamrelay.actions.bodies import (
    BatchBody,
    BatchRef,
    ProxyBody,
)
from teamrelay.actions.bridge import (
    Bridge,
    PageAfter,
    PageSize,
    id_path,
    ok_response,
    route_extra,
)
from teamrelay.actions.calls import segment
from teamrelay.actions.compact import JsonAnswer, fit_answer
from teamrelay.errors import RelayError, bad_gateway


def add_routes(keyed: APIRouter, bridge: Bridge, Budget: Any) -> None:
    relay = bridge.relay
    calls = bridge.calls

    @keyed.post(
        "/actions/batches",
        operation_id="createBatch",
        summary="Start a batch job",
        description=(
            "Run many requests at half price within 24 h: give endpoint and either requests "
            "(the relay writes the .jsonl) or input_file_id. Check progress with getBatch."
        ),
        responses=ok_response("The batch.", results.BATCH_SCHEMA),
        openapi_extra=route_extra(True, "createBatch"),
    )
    async def create_batch(body: BatchBody, deadline: Budget) -> Response:
        input_file_id = body.input_file_id
        if body.requests:
            calls.check("createFile")
            lines = []
            for item in body.requests:
                model = item.body.get("model")
                relay.router.check_model_name(model if isinstance(model, str) else None)
                line = {"custom_id": item.custom_id, "method": "POST", "url": body.endpoint}
                lines.append(json.dumps({**line, "body": item.body}) + "\n")
            data = "".join(lines).encode()
            uploaded = await bridge.upload_bytes(data, "batch-input.jsonl", "batch", deadline)
            input_file_id = uploaded.get("id")
        if not input_file_id:
            raise RelayError(400, "Give requests or input_file_id.", param="requests")
        request: dict[str, Any] = {
            "input_file_id": input_file_id,
            "endpoint": body.endpoint,
            "completion_window": "24h",
        }
        if body.metadata:
            request["metadata"] = body.metadata
        return JsonAnswer(
            results.batch_info(await calls.json("POST", "/batches", deadline, body=request))
        )

    @keyed.get(
        "/actions/batches",
        operation_id="listBatches",
        summary="List batch jobs",
        description="Batch jobs, newest first.",
        responses=ok_response("Batches.", results.LIST_BATCHES_SCHEMA),
        openapi_extra=route_extra(False, "listBatches"),
    )
    async def list_batches(
        deadline: Budget,
        limit: PageSize = 20,
        after: PageAfter = None,
    ) -> Response:
        found = await calls.json(
            "GET", "/batches", deadline, query={"limit": limit, "after": after}
        )
        items = [results.batch_info(o) for o in found.get("data") or []]
        return JsonAnswer(results.listing("batches", items, bool(found.get("has_more"))))

    @keyed.get(
        "/actions/batches/{batch_id}",
        operation_id="getBatch",
        summary="Check a batch job",
        description=(
            "A batch's status and counts; when completed, read output_file_id with readFileText."
        ),
        responses=ok_response("The batch.", results.BATCH_SCHEMA),
        openapi_extra=route_extra(False, "retrieveBatch"),
    )
    async def get_batch(
        batch_id: Annotated[str, id_path("The batch id.", "batch_abc123")], deadline: Budget
    ) -> Response:
        found = await calls.json("GET", f"/batches/{segment(batch_id)}", deadline)
        return JsonAnswer(results.batch_info(found))

    @keyed.post(
        "/actions/batches/cancel",
        operation_id="cancelBatch",
        summary="Cancel a batch job",
        description="Stop a batch; finished requests are kept.",
        responses=ok_response("The batch.", results.BATCH_SCHEMA),
        openapi_extra=route_extra(True, "cancelBatch"),
    )
    async def cancel_batch(body: BatchRef, deadline: Budget) -> Response:
        path = f"/batches/{segment(body.batch_id)}/cancel"
        return JsonAnswer(results.batch_info(await calls.json("POST", path, deadline, body={})))

    # Everything else

    @keyed.post(
        "/actions/proxy",
        operation_id="callOpenAI",
        summary="Call another OpenAI API endpoint",
        description=(
            "Any allowlisted JSON call of the OpenAI API not covered above, with ids filled "
            "in: for example GET /v1/models/gpt-5-mini, or POST /v1/moderations with body "
            '{"input": "text to check"}. No streaming, no uploads.'
        ),
        responses=ok_response("The API's answer.", results.ANY_SCHEMA),
        openapi_extra=route_extra(True),
    )
    async def call_openai(request: Request, body: ProxyBody, deadline: Budget) -> Response:
        # An adapter over `POST /v1/proxy`'s own path (Bridge.relayed): the same steps, once.
        answer = await bridge.relayed(request, body.model_dump(exclude_none=True), deadline)
        if answer.status >= 400:
            raise answer.refusal()
        try:
            value = json.loads(answer.body) if answer.body else {}
        except ValueError:
            raise bad_gateway("the answer was not JSON") from None
        wrapped = value if isinstance(value, dict) else {"data": value}
        hint = "The answer was cut: ask for less (a smaller limit or a narrower call)."
        return JsonAnswer(fit_answer(wrapped, hint))
