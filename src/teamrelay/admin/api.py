"""`/admin/api/*`: the operator's JSON API, for admin-scope relay keys only.

Errors keep OpenAI's shape, like every error the relay itself produces.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncEngine

from teamrelay.errors import RelayError, unauthorized
from teamrelay.keys.store import KeyRecord, KeyStore
from teamrelay.ledger.usage import By, parse_since, usage_report


def _error(error: RelayError) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return Response(error.body(), error.status, headers, media_type="application/json")


def _presented_key(request: Request) -> str | None:
    """Same rule as the /v1 path: `X-Relay-Key` wins over `Authorization: Bearer`."""
    if key := request.headers.get("x-relay-key", "").strip():
        return key
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return credentials.strip() or None if scheme.lower() == "bearer" else None


async def _admin(request: Request, keys: KeyStore) -> KeyRecord | Response:
    secret = _presented_key(request)
    record = None if secret is None else await keys.lookup(secret)
    if record is None:
        return _error(unauthorized())
    if "admin" not in record.scopes:
        return _error(
            RelayError(403, "This relay key lacks the 'admin' scope.", code="insufficient_scope")
        )
    return record


def admin_router(keys: KeyStore, engine: AsyncEngine) -> APIRouter:
    router = APIRouter(prefix="/admin/api", tags=["admin"])

    @router.get("/usage", response_model=None)
    async def usage(request: Request, since: str = "7d", by: str = "key") -> Response:
        """Requests, tokens and estimated cost per key, model, day or operation, with a total."""
        caller = await _admin(request, keys)
        if isinstance(caller, Response):
            return caller
        try:
            grouping = By(by)
        except ValueError:
            choices = ", ".join(member.value for member in By)
            return _error(RelayError(400, f"'by' must be one of {choices}.", param="by"))
        try:
            start = parse_since(since)
        except ValueError as exc:
            return _error(RelayError(400, str(exc), param="since"))
        report = await usage_report(engine, by=grouping, since=start)
        return JSONResponse(report.to_dict())

    return router
