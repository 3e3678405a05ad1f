"""Credentials out of every log line, whichever library writes it.

At DEBUG the WebSocket server behind uvicorn prints each handshake header (the relay key or
OAuth token in `Authorization`, the browser's key in `Sec-WebSocket-Protocol`), and uvicorn
prints each WebSocket's path with its query. Those libraries are not ours to change, so one
filter on the relay's log handler rewrites every record before it is formatted: the value of a
credential-bearing header, a bearer or basic credential, the key subprotocol, credential query
parameters, the relay's signed download links, anything shaped like a relay, OAuth or OpenAI
secret, and the configured secrets themselves (bootstrap keys may have any shape).
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Iterable

REDACTED = "[redacted]"
# Configured secrets shorter than this are not searched for: they would blank out ordinary text.
_MIN_SECRET = 8
_HEADERS = r"authorization|proxy-authorization|x-relay-key|x-api-key|api-key|cookie|set-cookie"
_QUERY = (
    r"api[_-]?key|key|access_token|refresh_token|id_token|token|client_secret|code|password"
    r"|sig|signature"
)
_PATTERNS = (
    # "authorization: Bearer …" as websockets prints it, and the name/value of a header in a
    # repr: "{'authorization': '…'}", "(b'x-relay-key', b'…')".
    re.compile(rf"(?i)\b((?:{_HEADERS})(?:\s*[:=]\s*|['\"]\s*[:,]\s*b?['\"]))[^\r\n'\"]+"),
    re.compile(r"(?i)\b((?:bearer|basic)\s+)[^\s'\",;]+"),
    re.compile(r"(openai-insecure-api-key\.)[^\s'\",;]+"),
    re.compile(rf"(?i)([?&;](?:{_QUERY})=)[^&\s'\"#]+"),
    # The relay's signed download links: whoever holds one reads the file (MCP answers are
    # logged whole at DEBUG).
    re.compile(r"(/actions/download/)[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+"),
    # Relay keys (tr-), OAuth secrets (tra_, trr_, trc_, trs_, tri_), OpenAI keys (sk-).
    re.compile(r"()\b(?:tr-|tr[arcsi]_|sk-)[A-Za-z0-9_\-]{16,}"),
)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    for pattern in _PATTERNS:
        text = pattern.sub(rf"\g<1>{REDACTED}", text)
    return text


class Redact(logging.Filter):
    """Installed on the handler, so it sees records from every logger that reaches it.

    A batch of request lines (`requests` on the record) is left alone: it is made from ledger
    entries, which hold key ids and names and paths without their query, never key material.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first, so a secret that contains another is replaced whole.
        kept = {secret for secret in secrets if len(secret) >= _MIN_SECRET}
        self._secrets = tuple(sorted(kept, key=len, reverse=True))

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "requests", None) is not None:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed call; logging would print its arguments raw
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = scrub(message, self._secrets), ()
        if record.exc_info and record.exc_info[1] is not None:
            rendered = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_text = scrub(rendered, self._secrets)  # formatters use it as rendered
        if record.stack_info:
            record.stack_info = scrub(record.stack_info, self._secrets)
        return True
