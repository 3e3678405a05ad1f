"""`GET /metrics`, open unless RELAY_METRICS_TOKEN is set (then a bearer token is needed)."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response

from teamrelay.errors import RelayError
from teamrelay.gateway import Relay


def metrics_router(relay: Relay) -> APIRouter:
    router = APIRouter()
    token = relay.settings.metrics_token

    @router.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        if token is not None:
            sent = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(sent.encode(), token.get_secret_value().encode()):
                raise RelayError(401, "Metrics need the metrics token.", code="invalid_api_key")
        relay.feed.drain()
        body, content_type = relay.metrics.exposition()
        return Response(body, media_type=content_type)

    return router
