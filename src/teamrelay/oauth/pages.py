"""The member-facing pages: sign in with a relay key (or an invite), and see a new key once.

Server-rendered, no framework, every value escaped. Forms carry a CSRF token that must match
a SameSite=Strict cookie set with the page (the double-submit pattern), the pages cannot be
framed, and nothing here is cached. A secret never travels in a URL: keys and invite codes are
posted; an invite link carries its code in the fragment, which browsers never send.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Mapping, Sequence
from html import escape
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

CSRF_COOKIE = "teamrelay_csrf"
_CSP_HOST = re.compile(r"[A-Za-z0-9.-]+(?::[0-9]{1,5})?")
CSRF_FIELD = "csrf"
_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;"
    "color:#222}input[type=password],input[type=text]{width:100%;padding:.5rem;font-size:1rem;"
    "box-sizing:border-box}button{padding:.5rem 1.2rem;font-size:1rem;margin:.8rem .5rem 0 0}"
    ".error{color:#a00}code{word-break:break-all;background:#f3f3f3;padding:.3rem;display:block}"
    ".muted{color:#666;font-size:.9rem}.warning{color:#8a4b00;font-weight:600}"
    ".host{font-size:1.2rem}"
)
# Fills the invite form from the link's fragment (#tri_...), which the server never sees.
_INVITE_SCRIPT = (
    "var c=document.getElementById('invite');"
    "if(location.hash.length>1){c.value=decodeURIComponent(location.hash.slice(1));"
    "history.replaceState(null,'',location.pathname);}"
)
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_INVITE_SCRIPT.encode()).digest()).decode()


def csrf_token(request: Request) -> tuple[str, bool]:
    """The token for a new form: the cookie's if the browser has one (so two tabs agree)."""
    current = request.cookies.get(CSRF_COOKIE)
    if current and len(current) >= 32:
        return current, False
    return secrets.token_urlsafe(32), True


def csrf_ok(request: Request, form: Mapping[str, str]) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = form.get(CSRF_FIELD, "")
    return bool(cookie) and secrets.compare_digest(cookie.encode(), sent.encode())


def redirect_host(uri: str) -> str:
    """The host (and port) a redirect URI sends the member to: no user info, which could
    make `https://chatgpt.com@evil.example/` read as chatgpt.com."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}" if host and port is not None else host


def _origin(uri: str) -> str:
    """The redirect's origin as a CSP source, rebuilt from its parsed parts: only a scheme of
    letters and a plain host name (CSP host sources have no IPv6 form) and port, so no
    redirect URI can add a directive (`;`), a second policy (`,`) or a source (space)."""
    parts = urlsplit(uri)
    host = redirect_host(uri)
    if parts.scheme not in ("http", "https") or not _CSP_HOST.fullmatch(host):
        return ""
    return f"{parts.scheme}://{host}"


def page(
    request: Request,
    title: str,
    body: str,
    *,
    status: int = 200,
    csrf: tuple[str, bool] | None = None,
    redirect_to: str = "",
    script: bool = False,
) -> Response:
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{escape(title)}</h1>{body}"
        + (f"<script>{_INVITE_SCRIPT}</script>" if script else "")
        + "</body></html>"
    )
    # Browsers apply form-action to the redirect a form post ends in, so the client's origin
    # must be allowed for the sign-in to reach it.
    form_action = " ".join(filter(None, ["'self'", _origin(redirect_to)]))
    policy = (
        f"default-src 'none'; style-src 'unsafe-inline'; form-action {form_action}; "
        "frame-ancestors 'none'; base-uri 'none'"
        + (f"; script-src 'sha256-{_SCRIPT_HASH}'" if script else "")
    )
    response = HTMLResponse(html, status_code=status)
    response.headers["cache-control"] = "no-store"
    response.headers["x-frame-options"] = "DENY"
    response.headers["referrer-policy"] = "no-referrer"
    response.headers["content-security-policy"] = policy
    if csrf is not None and csrf[1]:
        response.set_cookie(
            CSRF_COOKIE,
            csrf[0],
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/oauth",
        )
    return response


def _hidden(fields: Mapping[str, str]) -> str:
    return "".join(
        f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'
        for name, value in fields.items()
    )


def sign_in(
    request: Request,
    *,
    client_name: str,
    self_registered: bool,
    redirect_uri: str,
    scopes: Sequence[str],
    params: Mapping[str, str],
    csrf: tuple[str, bool],
    error: str = "",
    status: int = 200,
) -> Response:
    """The consent page. Anyone can register a client under any name (RFC 7591), so what the
    member can trust is the host they will be sent to, shown on its own, and whether the
    operator made the client or it registered itself."""
    host = redirect_host(redirect_uri)
    problem = f'<p class="error">{escape(error)}</p>' if error else ""
    origin = (
        '<p class="warning">This app registered itself: its name is not checked by your '
        "team. Sign in only if you expect to be sent to the address below.</p>"
        if self_registered
        else '<p class="muted">This app was set up by your team\'s relay operator.</p>'
    )
    body = (
        f"<p><b>{escape(client_name)}</b> wants to use this team's OpenAI relay as you "
        f"({escape(', '.join(scopes))}).</p>{origin}"
        f'<p>After you sign in you will be sent to <b class="host">{escape(host)}</b>.</p>'
        f"{problem}"
        '<form method="post" action="/oauth/authorize" autocomplete="off">'
        f"{_hidden({**params, CSRF_FIELD: csrf[0]})}"
        '<label for="secret">Your relay key, or the invite code you were sent</label>'
        '<input type="password" id="secret" name="secret" autofocus>'
        '<button type="submit" name="decision" value="allow">Sign in and allow</button>'
        '<button type="submit" name="decision" value="deny">Deny</button>'
        "</form>"
        '<p class="muted">Everything this app does is recorded under your key, within your '
        "key's budget.</p>"
    )
    return page(
        request, "Sign in to teamrelay", body, status=status, csrf=csrf, redirect_to=redirect_uri
    )


def key_shown_once(
    request: Request,
    name: str,
    secret: str,
    *,
    then_sign_in: Mapping[str, str] | None = None,
    csrf: tuple[str, bool] | None = None,
    redirect_uri: str = "",
) -> Response:
    """The new key, once; in a sign-in, a button that goes on signing in with it."""
    follow = ""
    if then_sign_in is not None and csrf is not None:
        fields = {**then_sign_in, "secret": secret, "decision": "allow", CSRF_FIELD: csrf[0]}
        follow = (
            '<form method="post" action="/oauth/authorize">'
            f'{_hidden(fields)}<button type="submit">I stored it: continue</button></form>'
        )
    body = (
        f"<p>Welcome, {escape(name)}. This is your relay key. It is shown this once: store it "
        "in your password manager now. Use it for SDKs, coding agents and to sign in here.</p>"
        f"<code>{escape(secret)}</code>{follow}"
    )
    return page(request, "Your relay key", body, csrf=csrf, redirect_to=redirect_uri)


def invite_form(request: Request, csrf: tuple[str, bool], error: str = "") -> Response:
    problem = f'<p class="error">{escape(error)}</p>' if error else ""
    body = (
        f"{problem}"
        '<form method="post" action="/oauth/invite" autocomplete="off">'
        f"{_hidden({CSRF_FIELD: csrf[0]})}"
        '<label for="invite">Invite code</label>'
        '<input type="text" id="invite" name="invite">'
        '<button type="submit">Create my key</button></form>'
    )
    return page(
        request,
        "Join teamrelay",
        body,
        status=400 if error else 200,
        csrf=csrf,
        script=True,
    )


def problem_page(request: Request, message: str, status: int = 400) -> Response:
    return page(request, "Cannot sign in", f'<p class="error">{escape(message)}</p>', status=status)
