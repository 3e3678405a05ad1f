"""Errors the relay itself produces, in OpenAI's shape so SDKs raise the matching class.

Upstream errors never pass through here: they are forwarded as they came.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.types import Send

_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_denied",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_exceeded",
    500: "server_error",
    502: "upstream_error",
    503: "server_error",
    504: "upstream_timeout",
}


@dataclass(eq=False)
class RelayError(Exception):
    """Not frozen: Python assigns `__traceback__` on exceptions it re-raises."""

    status: int
    message: str
    code: str | None = None
    param: str | None = None
    type: str | None = None
    headers: tuple[tuple[bytes, bytes], ...] = ()

    @property
    def kind(self) -> str:
        """The `type` the client sees."""
        return self.type or _TYPES.get(self.status, "invalid_request_error")

    def body(self) -> bytes:
        error = {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }
        return json.dumps({"error": error}).encode()

    async def send(self, send: Send, extra_headers: list[tuple[bytes, bytes]]) -> None:
        body = self.body()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *self.headers,
            *extra_headers,
        ]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def invalid_request(errors: Sequence[Mapping[str, Any]]) -> RelayError:
    """The 400 for a request FastAPI's validation refused (its `errors()`), first error named."""
    first = errors[0] if errors else {}
    param = ".".join(str(part) for part in first.get("loc", ())[1:]) or None
    return RelayError(400, str(first.get("msg", "Invalid request")), param=param)


def unauthorized() -> RelayError:
    return RelayError(
        401,
        "Incorrect or missing relay key. Send it as 'Authorization: Bearer <relay key>' "
        "or in the 'X-Relay-Key' header.",
        code="invalid_api_key",
    )


def unsupported_media_type(content_type: str) -> RelayError:
    shown = content_type[:80] or "none"
    return RelayError(
        415,
        f"Unsupported content type '{shown}': send application/json, multipart/form-data "
        "or application/sdp.",
        code="unsupported_media_type",
    )


def too_large(limit: int) -> RelayError:
    return RelayError(
        413, f"Request body exceeds the relay's limit of {limit} bytes.", code="request_too_large"
    )


def bad_gateway(reason: str) -> RelayError:
    return RelayError(502, f"The OpenAI API could not be reached: {reason}.", code="upstream_error")


def gateway_timeout(phase: str) -> RelayError:
    return RelayError(
        504, f"The OpenAI API did not answer in time ({phase}).", code="upstream_timeout"
    )
