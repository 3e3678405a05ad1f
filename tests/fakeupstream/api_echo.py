"""Every other path: /v1 operations echo what arrived, anything else is OpenAI's unknown URL."""

from __future__ import annotations

from aiohttp import web

from .errors import ApiError
from .wire import exchange_of, json_reply

routes = web.RouteTableDef()


@routes.route("*", "/v1/{tail:.*}")
async def echo(request: web.Request) -> web.StreamResponse:
    exchange = exchange_of(request)
    received = exchange.received
    return json_reply(
        {
            "object": "echo",
            "method": received.method,
            "path": received.path,
            "query": received.query,
            "body_sha256": received.body_sha256,
            "body_len": received.body_len,
            "content_type": received.header("content-type"),
        }
    )


@routes.route("*", "/{tail:.*}")
async def unknown(request: web.Request) -> web.StreamResponse:
    received = exchange_of(request).received
    raise ApiError(404, f"Invalid URL ({received.method} {received.path})")
