"""App assembly: settings, the FastAPI app for the relay's own routes, the `/v1` gateway.

`create_app` is the factory for any ASGI server: `uvicorn --factory teamrelay.app:create_app`.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from teamrelay import __version__
from teamrelay.actions.routes import actions_router
from teamrelay.admin.api import admin_router
from teamrelay.admin.dashboard import dashboard_router
from teamrelay.admin.session import session_key
from teamrelay.catalog import PolicyError
from teamrelay.config import ConfigError, Settings, load_settings
from teamrelay.errors import RelayError, invalid_request
from teamrelay.gateway import Relay
from teamrelay.mcpserver import mount_mcp
from teamrelay.oauth.routes import oauth_router
from teamrelay.observability.routes import metrics_router
from teamrelay.proxies import TrustedProxies
from teamrelay.public import public_router
from teamrelay.realtime import RealtimeBridge, session_entry


def _error_response(error: RelayError) -> Response:
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in error.headers}
    return Response(
        error.body(), status_code=error.status, media_type="application/json", headers=headers
    )


def local_app(relay: Relay) -> FastAPI:
    """The framework side: routes whose schemas earn FastAPI's cost."""
    app = FastAPI(title="teamrelay", version=__version__, docs_url=None, redoc_url=None)
    app.add_middleware(TrustedProxies, trusted=relay.settings.trusted_proxies)
    app.include_router(public_router(relay.settings))
    if relay.settings.metrics_enabled:
        app.include_router(metrics_router(relay))
    app.include_router(admin_router(relay.keys, relay.engine))
    app.include_router(dashboard_router(relay.keys, relay.engine, session_key(relay.settings)))
    app.include_router(actions_router(relay))
    if relay.settings.oauth_enabled:
        app.include_router(
            oauth_router(relay.settings, relay.keys, relay.tokens, relay.limits.rates)
        )
    mount_mcp(app, relay)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> Response:
        message = "Unknown route." if exc.status_code == 404 else str(exc.detail)
        return _error_response(RelayError(exc.status_code, message))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> Response:
        return _error_response(invalid_request(exc.errors()))

    @app.exception_handler(RelayError)
    async def relay_error(_: Request, exc: RelayError) -> Response:
        return _error_response(exc)

    return app


def create_app(settings: Settings | None = None) -> Relay:
    try:
        relay = Relay(settings or load_settings())
    except (ConfigError, PolicyError) as exc:
        raise SystemExit(f"teamrelay: {exc}") from None
    relay.local = local_app(relay)
    bridge = RealtimeBridge(relay)
    bridge.on_session_end = lambda session: relay.settle(session_entry(session), session.admitted)
    relay.websocket = bridge
    return relay
