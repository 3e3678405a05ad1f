"""`GET /metrics`: series are labelled with key names and spend, so a scrape needs the metrics
token (RELAY_METRICS_TOKEN) or an admin relay key, unless RELAY_METRICS_PUBLIC=true."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response

from teamrelay.admission import RequestHead
from teamrelay.errors import RelayError
from teamrelay.gateway import Relay

_NEEDS = "Metrics need the metrics token or an admin relay key."


def metrics_router(relay: Relay) -> APIRouter:
    router = APIRouter()
    public = relay.settings.metrics_public
    token = relay.settings.metrics_token

    async def check(request: Request) -> None:
        sent = RequestHead.parse(request.scope["headers"]).key
        if sent is None:
            raise RelayError(401, _NEEDS, code="invalid_api_key")
        if token is not None and hmac.compare_digest(
            sent.encode(), token.get_secret_value().encode()
        ):
            return
        key = await relay.keys.lookup(sent)
        if key is None:
            raise RelayError(401, _NEEDS, code="invalid_api_key")
        if "admin" not in key.scopes:
            raise RelayError(403, _NEEDS, code="insufficient_scope")

    @router.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        if not public:
            await check(request)
        relay.feed.drain()
        body, content_type = relay.metrics.exposition()
        return Response(body, media_type=content_type)

    return router
