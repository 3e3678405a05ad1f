"""The GPT Actions wrappers: curated OpenAI operations as compact JSON calls a GPT can make.

Every wrapper authenticates with the relay key, runs within RELAY_ACTIONS_ANSWER_BUDGET
(under ChatGPT's 45 s), answers under 100,000 characters, and passes upstream refusals on
(a 429 always with Retry-After). The route metadata here is the Actions schema's source:
schema.py generates `/openapi.actions.json` from these routes at start-up.
"""

# No `from __future__ import annotations`: FastAPI reads these handlers' annotations, and
# they name closures (the dependencies) that string annotations could not resolve.

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from teamrelay.accounting import Ticket, wrapper_entry
from teamrelay.actions import routes_answers, routes_batches, routes_files, routes_stores
from teamrelay.actions.bridge import MAX_BODY, ActionsRoute, Bridge
from teamrelay.actions.calls import CALLER, Deadline, Passthrough, segment
from teamrelay.actions.compact import JsonAnswer
from teamrelay.actions.files_out import (
    PURPOSE_BLOB,
    content_disposition,
)
from teamrelay.admission import RequestHead
from teamrelay.errors import RelayError, invalid_request
from teamrelay.gateway import Relay, new_request_id, require_scope
from teamrelay.keys.store import KeyRecord
from teamrelay.limits.gate import Admitted


def actions_router(relay: Relay) -> APIRouter:
    """The wrapper routes (keyed), the signed download route and the schema routes (public)."""
    bridge = Bridge(relay)
    calls = bridge.calls

    async def caller(request: Request) -> KeyRecord | None:
        head = RequestHead.parse(request.scope["headers"])
        identity = request.state.key = await relay.identify(head)  # on the row if refused
        require_scope(identity, "actions")
        CALLER.set(identity)
        if head.content_length is not None and head.content_length > MAX_BODY:
            raise RelayError(413, "Actions requests are small JSON.", code="request_too_large")
        if identity is not None and identity.limits:
            request.state.admitted = await _admit(identity, request)
        return identity

    async def _admit(key: KeyRecord, request: Request) -> Admitted | None:
        """The key's rate limits and budget, charged to the first OpenAI operation it wraps."""
        route = request.scope.get("route")
        wraps = (getattr(route, "openapi_extra", None) or {}).get("x-relay-wraps", [])
        operation = relay.router.catalog.by_id.get(wraps[0]) if wraps else None
        if operation is None:
            return None
        return await relay.limits.admit(key, operation, await request.body())

    def new_deadline() -> Deadline:
        return Deadline.after(bridge.budget)

    Budget = Annotated[Deadline, Depends(new_deadline)]

    class Route(ActionsRoute):
        def get_route_handler(self) -> Callable[[Request], Any]:
            handler = super().get_route_handler()
            wraps = (self.openapi_extra or {}).get("x-relay-wraps", [])
            name = self.operation_id or self.name
            keyed_route = any(d.dependency is caller for d in self.dependencies)

            async def run(request: Request) -> Response:
                ticket = Ticket.open(request.method, request.url.path, new_request_id())
                answer: Response | None = None
                gone = False
                try:
                    for operation_id in wraps:
                        calls.check(operation_id)
                    answer = await handler(request)
                    gone = keyed_route and await request.is_disconnected()
                    return answer
                except RelayError as error:
                    ticket.refusal = error
                    raise
                except RequestValidationError as invalid:
                    # Sent as this 400 (app.py); without it the row would read 499.
                    ticket.refusal = invalid_request(invalid.errors())
                    raise ticket.refusal from None
                except Passthrough as refused:
                    ticket.refusal = RelayError(
                        refused.status, "", code=f"upstream_{refused.status}"
                    )
                    raise
                except Exception:
                    ticket.refusal = RelayError(500, "", code="server_error")
                    raise
                finally:
                    # A call through the relay's own path (callOpenAI) has its row already.
                    if keyed_route and not getattr(request.state, "relayed", False):
                        ticket.key = getattr(request.state, "key", None)
                        state = request.state
                        entry = wrapper_entry(
                            ticket,
                            f"actions.{name}",
                            answer,
                            counts_usage=not getattr(state, "usage_counted", False),
                        )
                        if gone:  # the answer was made (its usage counts), never delivered
                            entry.status, entry.error_type = 499, "client_disconnected"
                            entry.aborted = True
                        relay.settle(entry, getattr(state, "admitted", None))

            return run

    router = APIRouter(route_class=Route)
    keyed = APIRouter(route_class=Route, dependencies=[Depends(caller)])

    for family in (routes_answers, routes_stores, routes_files, routes_batches):
        family.add_routes(keyed, bridge, Budget)

    # Public: signed downloads and the schema

    @router.get("/actions/download/{token}", include_in_schema=False)
    async def download(token: str) -> Response:
        link = bridge.signer.verify(token)
        headers = {
            "content-disposition": content_disposition(link.name),
            "cache-control": "private, no-store",
        }
        if link.purpose == PURPOSE_BLOB:
            data = bridge.blobs.get(link.object)
            if data is None:
                raise RelayError(410, "This download link has expired.", code="link_expired")
            return Response(data, media_type=link.mime_type, headers=headers)
        calls.check("downloadFile")
        deadline = Deadline.after(bridge.settings.read_timeout)
        response = await calls.open("GET", f"/files/{segment(link.object)}/content", deadline)
        if response.content_length is not None:
            headers["content-length"] = str(response.content_length)

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.chunks():
                    yield chunk
            finally:
                response.release()

        return StreamingResponse(
            body(),
            media_type=link.mime_type,
            headers=headers,
            background=BackgroundTask(response.release),
        )

    @router.get("/openapi.actions.json", include_in_schema=False)
    async def schema_json(request: Request) -> Response:
        document = bridge.schema.served(request.app, bridge.base_url(request))
        return JsonAnswer(document)

    @router.get("/openapi.actions.yaml", include_in_schema=False)
    async def schema_yaml(request: Request) -> Response:
        document = bridge.schema.served(request.app, bridge.base_url(request))
        text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
        return Response(text, media_type="application/yaml")

    async def warm() -> None:
        app = relay.local
        if isinstance(app, FastAPI):
            app.state.actions_schema = bridge.schema
        bridge.schema.document(app)

    relay.startup.append(warm)
    router.include_router(keyed)
    return router
