"""`/admin`: the operator's dashboard, server-rendered, for admin-scope relay keys only.

A key is typed into a form (POSTed, never in a URL) and traded for a signed session cookie that
holds the key's id (`session.py`). Every page looks the key up again, so revoking, expiring,
rotating or demoting it ends its sessions at the next click. Pages need no script; the one
stylesheet ships in `static/`, and the Content-Security-Policy allows nothing else.
"""

from __future__ import annotations

import mimetypes
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any, Final
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from sqlalchemy.ext.asyncio import AsyncEngine

from teamrelay.admin.overview import DEFAULT_PERIOD, PERIODS, overview
from teamrelay.admin.session import (
    COOKIE_PATH,
    LOGIN_COOKIE,
    LOGIN_SECONDS,
    SESSION_COOKIE,
    Session,
    Sessions,
    new_nonce,
)
from teamrelay.keys.store import KeyNotFound, KeyRecord, KeyStore

MAX_FORM_BYTES: Final = 4096
PAGE_HEADERS: Final = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
NOT_ADMIN: Final = (
    "This key does not have the 'admin' scope. The dashboard is for admin keys; "
    "ask the relay's operator for one."
)
BAD_KEY: Final = "That key is not valid: it is unknown, revoked or expired."
STALE_FORM: Final = "The login form expired or came from elsewhere. Please try again."


def _when(moment: datetime | None) -> str:
    return "—" if moment is None else moment.strftime("%Y-%m-%d %H:%M UTC")


def _usd(value: float) -> str:
    """Cents for real money, six decimals for the fractions a few test requests cost."""
    return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:.6f}"


def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("teamrelay.admin", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["when"] = _when
    environment.filters["number"] = lambda value: f"{value:,}"
    environment.filters["usd"] = _usd
    return environment


def _static_files() -> dict[str, tuple[bytes, str]]:
    folder = files("teamrelay.admin") / "static"
    return {
        entry.name: (entry.read_bytes(), mimetypes.guess_type(entry.name)[0] or "text/plain")
        for entry in folder.iterdir()
        if entry.is_file()
    }


async def _form(request: Request) -> dict[str, str]:
    """A small urlencoded form, read with a size and field cap; anything else reads as empty
    (and so as a stale form, a 403), never as a 500."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        return {}
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return {}
    try:
        fields = parse_qsl(
            body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=8
        )
    except ValueError:  # more fields than the form has
        return {}
    return dict(fields)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _set_cookie(request: Request, response: Response, name: str, value: str, age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=age,
        path=COOKIE_PATH,
        secure=_secure(request),
        httponly=True,
        samesite="strict",
    )


def _drop_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(
        name, path=COOKIE_PATH, secure=_secure(request), httponly=True, samesite="strict"
    )


def dashboard_router(keys: KeyStore, engine: AsyncEngine, signing_key: bytes) -> APIRouter:
    router = APIRouter(prefix="/admin", include_in_schema=False)
    sessions = Sessions(signing_key)
    pages = _environment()
    static = _static_files()

    def render(request: Request, template: str, status: int = 200, **context: Any) -> Response:
        root = str(request.scope.get("root_path", "")).rstrip("/")
        html = pages.get_template(template).render(root=root, **context)
        return HTMLResponse(html, status, headers=PAGE_HEADERS)

    def login_page(request: Request, status: int = 200, message: str | None = None) -> Response:
        nonce = new_nonce()
        response = render(
            request,
            "login.html",
            status,
            message=message,
            csrf=sessions.csrf_token("login", nonce),
        )
        _set_cookie(request, response, LOGIN_COOKIE, nonce, LOGIN_SECONDS)
        return response

    async def signed_in(session: Session | None) -> KeyRecord | None:
        """The session's key, if it is still usable, admin, and not rotated since login."""
        if session is None:
            return None
        try:
            record = await keys.get(session.key_id)
        except KeyNotFound:
            return None
        if (
            not record.usable(datetime.now(UTC))
            or "admin" not in record.scopes
            or record.prefix != session.key_prefix
        ):
            return None
        return record

    @router.get("", response_model=None)
    async def dashboard(request: Request, period: str = DEFAULT_PERIOD) -> Response:
        session = sessions.read(request.cookies.get(SESSION_COOKIE))
        record = await signed_in(session)
        if session is None or record is None:
            ended = "Your session has ended; please sign in again." if session else None
            response = login_page(request, 401 if ended else 200, ended)
            if SESSION_COOKIE in request.cookies:
                _drop_cookie(request, response, SESSION_COOKIE)
            return response
        if period not in PERIODS:
            period = DEFAULT_PERIOD
        return render(
            request,
            "dashboard.html",
            view=await overview(engine, keys, period),
            periods=list(PERIODS),
            admin=record,
            csrf=sessions.csrf_token("logout", session.nonce),
        )

    @router.post("/login", response_model=None)
    async def login(request: Request) -> Response:
        form = await _form(request)
        if not sessions.csrf_valid("login", request.cookies.get(LOGIN_COOKIE), form.get("csrf")):
            return login_page(request, 403, STALE_FORM)
        secret = form.get("key", "").strip()
        record = await keys.lookup(secret) if secret else None
        if record is None:
            return login_page(request, 401, BAD_KEY)
        if "admin" not in record.scopes:
            return login_page(request, 403, NOT_ADMIN)
        _, cookie = sessions.open(record.id, record.prefix)
        response = RedirectResponse(_home(request), 303, headers={"Cache-Control": "no-store"})
        _set_cookie(request, response, SESSION_COOKIE, cookie, sessions.ttl)
        _drop_cookie(request, response, LOGIN_COOKIE)
        return response

    @router.post("/logout", response_model=None)
    async def logout(request: Request) -> Response:
        form = await _form(request)
        session = sessions.read(request.cookies.get(SESSION_COOKIE))
        if session is not None and not sessions.csrf_valid(
            "logout", session.nonce, form.get("csrf")
        ):
            return render(request, "message.html", 403, message=STALE_FORM)
        response = RedirectResponse(_home(request), 303, headers={"Cache-Control": "no-store"})
        _drop_cookie(request, response, SESSION_COOKIE)
        return response

    @router.get("/static/{name}", response_model=None)
    async def asset(name: str) -> Response:
        found = static.get(name)
        if found is None:
            return Response("Not found.", 404, media_type="text/plain")
        body, media_type = found
        headers = {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}
        return Response(body, media_type=media_type, headers=headers)

    return router


def _home(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/") + "/admin"
