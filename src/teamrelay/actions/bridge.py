"""What the GPT Actions wrappers share: the route class, schema helpers and the `Bridge`."""

# No `from __future__ import annotations`, as in routes.py.

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Annotated, Any

from fastapi import Path, Query, Request
from fastapi.routing import APIRoute
from starlette.responses import Response

from teamrelay.accounting import Ticket
from teamrelay.actions.calls import (
    BACKSTOP_SECONDS,
    Captured,
    Deadline,
    OpenAICalls,
    Passthrough,
    never_disconnects,
    segment,
)
from teamrelay.actions.files_in import (
    Fetcher,
    FileRef,
    HostRules,
    upload_form,
)
from teamrelay.actions.files_out import (
    DOWNLOAD_PATH,
    BlobCache,
    LinkSigner,
    derive_key,
    guess_type,
)
from teamrelay.actions.schema import ActionsSchema
from teamrelay.catalog import Operation
from teamrelay.errors import RelayError, bad_gateway, gateway_timeout
from teamrelay.forward import Call
from teamrelay.gateway import Relay, new_request_id

PENDING = frozenset({"queued", "in_progress"})
MAX_BODY = 1024 * 1024
IDS = r"^[A-Za-z0-9_.:\-]{1,128}$"


# The paging parameters every list wrapper takes.
PageSize = Annotated[int, Query(ge=1, le=100, description="Page size.", examples=[20])]
PageAfter = Annotated[
    str | None, Query(pattern=IDS, description="next_after from the previous page.")
]


class ActionsRoute(APIRoute):
    """Sends an upstream refusal on as it came, instead of as a relay error."""

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                response: Response = await handler(request)
            except Passthrough as refusal:
                return Response(refusal.body, refusal.status, headers=refusal.headers)
            return response

        return run


def ok_response(description: str, schema: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    return {200: {"description": description, "content": {"application/json": {"schema": schema}}}}


def route_extra(consequential: bool, *wraps: str) -> dict[str, Any]:
    """`consequential`: the call changes or removes something that lasts (ChatGPT asks before
    each one and offers no "always allow"); a read, or a call that only spends tokens, is not."""
    return {"x-openai-isConsequential": consequential, "x-relay-wraps": list(wraps)}


def id_path(description: str, example: str) -> Any:
    return Path(pattern=IDS, description=description, examples=[example])


class Bridge:
    """What the wrappers share: upstream calls, the link signer, the file fetcher, the schema."""

    def __init__(self, relay: Relay) -> None:
        settings = relay.settings
        self.relay = relay
        self.settings = settings
        self.budget = settings.actions_answer_budget
        self.calls = OpenAICalls(relay)
        secret = settings.signing_key.get_secret_value() if settings.signing_key else None
        key = derive_key(secret, settings.openai_api_key.get_secret_value())
        self.signer = LinkSigner(key, settings.actions_link_ttl)
        self.blobs = BlobCache(settings.actions_link_ttl)
        rules = HostRules(
            settings.actions_file_hosts, allow_loopback=settings.actions_allow_loopback
        )
        self.fetcher = Fetcher(rules, settings.actions_max_file_bytes, settings.actions_ca_file)
        self.schema = ActionsSchema(relay, self.calls)

    async def relayed(
        self, request: Request, envelope: Mapping[str, Any], deadline: Deadline
    ) -> Captured:
        """An envelope through the relay's own request path (`Relay.serve`), exactly as
        `POST /v1/proxy` takes it: the catalog operation on the clean path, the model
        allowlist, the key's rate limits and budget, isolation and the ledger row. Only the
        key (authenticated with the `actions` scope by the wrappers' dependency) and the
        deadline are the Action's. The answer comes back whole, for the wrapper to fit."""
        relay = self.relay
        ticket = Ticket.open(request.method, request.url.path, new_request_id())
        ticket.key = getattr(request.state, "key", None)
        headers: list[tuple[bytes, bytes]] = list(request.scope["headers"])

        async def adapt() -> tuple[Call, Operation, str]:
            return relay.envelope_call(envelope, headers, ticket)

        # The relay's path leaves this call's ledger row; the wrapper route must not.
        request.state.relayed = True
        captured = Captured()
        try:
            async with asyncio.timeout(max(deadline.remaining(), 0.0) + BACKSTOP_SECONDS):
                await relay.serve(
                    ticket, adapt, never_disconnects, captured.send, deadline=deadline.loop_time()
                )
        except TimeoutError:
            raise gateway_timeout("within the Action's time budget") from None
        if captured.overflow:
            raise bad_gateway("the answer was too large for an Action")
        return captured

    def base_url(self, request: Request) -> str:
        return self.settings.public_url or str(request.base_url).rstrip("/")

    def link(self, request: Request, purpose: str, obj: str, name: str, mime: str) -> str:
        token = self.signer.sign(purpose, obj, name, mime)
        return f"{self.base_url(request)}{DOWNLOAD_PATH}{token}"

    async def settle(self, response: dict[str, Any], deadline: Deadline) -> dict[str, Any]:
        """Poll a background response until it ends or the budget is nearly spent."""
        interval = 0.2
        while response.get("status") in PENDING:
            if deadline.remaining() < interval + 0.5:
                return response
            await asyncio.sleep(interval)
            interval = min(interval * 1.5, 2.0)
            poll = Deadline(deadline.at - 0.3)
            try:
                response = await self.calls.json(
                    "GET", f"/responses/{segment(str(response.get('id')))}", poll
                )
            except RelayError as exc:
                if exc.status == 504:
                    return response
                raise
        return response

    async def upload_bytes(
        self, data: bytes, name: str, purpose: str, deadline: Deadline
    ) -> dict[str, Any]:
        async def once() -> AsyncIterator[bytes]:
            yield data

        ref = FileRef("", name, guess_type(name))
        form = upload_form(purpose, ref, once())
        created: dict[str, Any] = await self.calls.json_form("/files", form, deadline)
        return created
