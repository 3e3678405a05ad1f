"""The relay's public routes: health, Actions ping and info, manifest. No key needed.

They never reveal a secret: the health answer says whether an upstream key is configured,
never which.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request

from teamrelay import __version__
from teamrelay.config import Settings

_STARTED = time.monotonic()


def _public_url(settings: Settings, request: Request) -> str:
    return settings.public_url or str(request.base_url).rstrip("/")


def _upstream_origin(base_url: str) -> str:
    """The upstream's scheme, host and port: its user info, path and query may hold a key."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}"


def health_body(settings: Settings) -> dict[str, Any]:
    return {
        "object": "health",
        "status": "ok",
        "environment": settings.environment,
        "default_model": settings.default_model,
        "timestamp": datetime.now(UTC).isoformat(),
        "relay": {
            "name": "teamrelay",
            "version": __version__,
            "auth_enabled": settings.auth_enabled,
            "uptime_seconds": round(time.monotonic() - _STARTED, 3),
        },
        "openai": {
            "base_url": _upstream_origin(settings.openai_base_url),
            "api_key_configured": bool(settings.openai_api_key.get_secret_value()),
            "organization_configured": bool(settings.openai_organization),
            "project_configured": bool(settings.openai_project),
        },
        "meta": {"api": "/v1", "docs": "https://platform.openai.com/docs/api-reference"},
    }


def public_router(settings: Settings) -> APIRouter:
    router = APIRouter()

    @router.get("/", include_in_schema=False)
    @router.get("/health")
    @router.get("/v1/health")
    async def health() -> dict[str, Any]:
        return health_body(settings)

    @router.get("/actions/ping")
    @router.get("/v1/actions/ping")
    async def ping() -> dict[str, Any]:
        return {"object": "ping", "ok": True, "timestamp": datetime.now(UTC).isoformat()}

    @router.get("/actions/relay_info")
    @router.get("/v1/actions/relay_info")
    async def relay_info(request: Request) -> dict[str, Any]:
        base = _public_url(settings, request)
        return {
            "object": "relay_info",
            "name": "teamrelay",
            "version": __version__,
            "public_url": base,
            "api_base_url": f"{base}/v1",
            "auth": {"schemes": ["bearer", "x-relay-key"], "enabled": settings.auth_enabled},
            "default_model": settings.default_model,
        }

    @router.get("/manifest")
    @router.get("/v1/manifest")
    async def manifest(request: Request) -> dict[str, Any]:
        base = _public_url(settings, request)
        return {
            "object": "manifest",
            "name": "teamrelay",
            "version": __version__,
            "api_base_url": f"{base}/v1",
            "health_url": f"{base}/health",
            "auth": {"type": "bearer", "header": "Authorization"},
            "actions": _actions_summary(request, base),
        }

    return router


def _actions_summary(request: Request, base: str) -> dict[str, Any]:
    """The GPT Actions surface (teamrelay.actions), once the relay has started."""
    schema = getattr(request.app.state, "actions_schema", None)
    if schema is None:
        return {"schema_url": f"{base}/openapi.actions.json"}
    summary: dict[str, Any] = schema.manifest(request.app, base)
    return summary
