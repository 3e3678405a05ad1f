"""ChatKit's objects and their owners.

A session (`POST /chatkit/sessions`) is created through the relay and owned like any object.
Threads are not: ChatKit's widget creates them at OpenAI with the session's client secret,
for the session's `user`, and that secret reaches every thread of the same `user`. So the
relay owns end users: the first key that creates a session for a `user` owns that user, and
every thread whose `user` it is. Another key may not create a session for that user (it
would read the owner's threads with the secret); a thread's owner is found from its `user`,
with one retrieve the first time the relay meets the thread, then kept like any owner.

A confined key's thread list is the upstream's own list filtered by one of the key's users
(`user=`, which the upstream filters): one upstream call a page, with the upstream's paging.
A key that owns several users names the one to list.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final
from urllib.parse import parse_qsl, quote, urlencode

from starlette.types import Send

from teamrelay.body import parse_json
from teamrelay.errors import RelayError
from teamrelay.forward import Call, Exchange
from teamrelay.isolation.listing import EMPTY_LIST, get, send_answer
from teamrelay.isolation.owners import Owners
from teamrelay.upstream import Upstream

THREADS: Final = "/chatkit/threads"
USERS: Final = "/chatkit/users"
CREATE_SESSION: Final = "CreateChatSessionMethod"
BETA: Final = (b"openai-beta", b"chatkit_beta=v1")
_USER_ID: Final = "chatkit_user:"
_HASHED_USER_ID: Final = "chatkit_user#"
_ID_LENGTH: Final = 256  # relay_objects.object_id


def user_id(user: str) -> str:
    """The ownership table's id for an end user: its name, or a digest of a name too long."""
    named = _USER_ID + user
    if len(named) <= _ID_LENGTH:
        return named
    return _HASHED_USER_ID + hashlib.sha256(user.encode()).hexdigest()


def user_of(object_id: str) -> str | None:
    """The end user an id of `user_id` names, if it kept the name."""
    return object_id.removeprefix(_USER_ID) if object_id.startswith(_USER_ID) else None


def session_user(body: bytes | None) -> str | None:
    """The `user` a session create names (None if the body names none; the upstream then
    refuses it)."""
    if not body:
        return None
    document = parse_json(body)
    user = document.get("user") if isinstance(document, dict) else None
    return user if isinstance(user, str) else None


def user_taken() -> RelayError:
    return RelayError(
        403,
        "This ChatKit user belongs to another relay key; create sessions for your own users.",
        type="invalid_request_error",
        param="user",
        code="chatkit_user_not_yours",
    )


async def thread_owner(
    upstream: Upstream, headers: list[tuple[bytes, bytes]], owners: Owners, thread_id: str
) -> str | None:
    """Who owns a thread the relay has not met: the owner of its `user`, recorded for good."""
    status, body = await get(upstream, f"{THREADS}/{quote(thread_id, safe='')}", headers)
    if status != 200:
        return None
    try:
        thread = json.loads(body)
    except ValueError:
        return None
    user = thread.get("user") if isinstance(thread, dict) else None
    if not isinstance(user, str) or thread.get("id") != thread_id:
        return None
    owner = await owners.owner_of(user_id(user))
    if owner is not None:
        owners.record(thread_id, owner, THREADS)
    return owner


async def list_threads(
    upstream: Upstream, call: Call, key_id: str, owners: Owners, send: Send
) -> Exchange:
    """The threads of the key's user, as the upstream lists them for that `user`."""
    path, _, query_string = call.target.partition("?")
    query = parse_qsl(query_string, keep_blank_values=True)
    named = [value for name, value in query if name == "user"]
    if len(named) > 1:
        raise RelayError(400, "'user' is given twice.", param="user")
    exchange = Exchange(status=200)
    headers = [(name, value) for name, value in call.headers if name != b"accept-encoding"]
    if named:
        user: str | None = named[0]
        if await owners.owner_of(user_id(named[0])) != key_id:
            user = None
        target = call.target
    else:
        mine = await owners.listed(key_id, USERS, descending=False, count=2)
        if len(mine) > 1 or (mine and user_of(mine[0]) is None):
            raise RelayError(
                400,
                "This key's ChatKit threads belong to several users: list them with 'user'.",
                param="user",
                code="missing_required_parameter",
            )
        user = user_of(mine[0]) if mine else None
        target = f"{path}?{urlencode([*query, ('user', user)])}" if user else call.target
    if user is None:
        await send_answer(send, exchange, call.request_id, EMPTY_LIST)
        return exchange
    exchange.status, body = await get(upstream, target, headers, exchange)
    if exchange.status == 200:
        _learn(body, user, key_id, owners)
    await send_answer(send, exchange, call.request_id, body)
    return exchange


def _learn(body: bytes, user: str, key_id: str, owners: Owners) -> None:
    """Threads a list shows for the key's user are the key's: their ids are owned from now."""
    try:
        page: Any = json.loads(body)
    except ValueError:
        return
    items = page.get("data") if isinstance(page, dict) else None
    for thread in items if isinstance(items, list) else []:
        if isinstance(thread, dict) and thread.get("user") == user:
            thread_id = thread.get("id")
            if isinstance(thread_id, str):
                owners.record(thread_id, key_id, THREADS)
