"""The `POST /v1/proxy` envelope: one JSON object naming an OpenAI call to make.

GPT Actions can only send JSON to paths in their schema, so the envelope carries
`{method, path, query, body}`. It reaches upstream only as a clean `/v1/...` path that the
catalog resolves to an operation the policy gives the `proxy` surface; everything else is
refused here with a 4xx, before any upstream contact.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

from teamrelay.catalog.catalog import (
    BadParam,
    Catalog,
    Matched,
    MethodNotAllowed,
    Operation,
)
from teamrelay.catalog.policy import Policy
from teamrelay.errors import RelayError

MAX_PATH_LENGTH: Final = 512
PROXY_METHODS: Final = ("GET", "POST", "DELETE")
PROXY_PATH: Final = "/proxy"
_QUERY_ALIASES: Final = ("query", "params", "query_params")
_BODY_ALIASES: Final = ("body", "json", "json_body")
_KNOWN_KEYS: Final = frozenset({"method", "path", *_QUERY_ALIASES, *_BODY_ALIASES})
# Printable ASCII minus what could smuggle a second URL, a query or an escape into the path.
_PATH_CHARS = re.compile(r"[A-Za-z0-9_:.\-/]*\Z")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")


class EnvelopeError(RelayError):
    """A refused envelope; a `RelayError`, so the app sends it in OpenAI's error shape."""


def _refuse(status: int, message: str, param: str | None, code: str) -> EnvelopeError:
    return EnvelopeError(status=status, message=message, param=param, code=code)


@dataclass(frozen=True, slots=True)
class ProxyRequest:
    method: str
    path: str
    query_string: str
    body: bytes | None
    operation: Operation


def normalize_path(raw: object) -> str:
    """Return the path as `/v1/...`, or raise: strict, no decoding, no guessing."""
    if not isinstance(raw, str) or not raw:
        raise _refuse(400, "'path' must be a non-empty string.", "path", "invalid_path")
    if len(raw) > MAX_PATH_LENGTH:
        raise _refuse(
            400, f"'path' is longer than {MAX_PATH_LENGTH} characters.", "path", "invalid_path"
        )
    if _PATH_CHARS.match(raw) is None:
        bad = next(c for c in raw if _PATH_CHARS.match(c) is None)
        raise _refuse(400, f"'path' may not contain {bad!r}.", "path", "invalid_path")
    if _SCHEME.match(raw) or "//" in raw:
        raise _refuse(400, "'path' must be a path, not a URL.", "path", "invalid_path")
    path = raw if raw.startswith("/") else "/" + raw
    segments = path[1:].split("/")
    for segment in segments:
        if not segment:
            raise _refuse(400, "'path' has an empty segment.", "path", "invalid_path")
        if segment.strip(".") == "" or ".." in segment:
            raise _refuse(400, "'path' may not contain dot segments.", "path", "invalid_path")
    if segments[0] != "v1":
        path = "/v1" + path
    rest = path[3:]
    if rest == PROXY_PATH or rest.startswith(PROXY_PATH + "/"):
        raise _refuse(400, "The proxy cannot call itself.", "path", "invalid_path")
    return path


def _query_value(value: object, param: str) -> str | list[str] | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, list):
        items = [_query_value(item, param) for item in value]
        if all(isinstance(item, str) for item in items):
            return [item for item in items if isinstance(item, str)]
    raise _refuse(
        400, f"'{param}' must be a string, number, boolean or list of them.", param, "invalid_query"
    )


def encode_query(query: object) -> str:
    if query is None:
        return ""
    if not isinstance(query, Mapping):
        raise _refuse(400, "'query' must be an object.", "query", "invalid_query")
    pairs: list[tuple[str, str | list[str]]] = []
    for key, value in query.items():
        param = f"query.{key}"
        if not isinstance(key, str) or not key:
            raise _refuse(400, "'query' keys must be non-empty strings.", "query", "invalid_query")
        if key == "stream" and value not in (None, False, "false"):
            raise _refuse(
                400, "Streaming is not available through the proxy.", param, "stream_unsupported"
            )
        encoded = _query_value(value, param)
        if encoded is not None:
            pairs.append((key, encoded))
    return urlencode(pairs, doseq=True)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _pick(envelope: Mapping[str, Any], aliases: tuple[str, ...]) -> Any:
    present = [name for name in aliases if name in envelope]
    if len(present) > 1:
        names = " and ".join(repr(n) for n in present)
        raise _refuse(400, f"Give only one of {names}.", present[1], "invalid_envelope")
    return envelope[present[0]] if present else None


def parse_envelope(
    raw: bytes | str | Mapping[str, Any], catalog: Catalog, policy: Policy
) -> ProxyRequest:
    """Validate an envelope and return the one upstream request it stands for."""
    if isinstance(raw, bytes | str):
        try:
            envelope = json.loads(raw, parse_constant=_no_constant)
        except (ValueError, RecursionError):
            raise _refuse(
                400, "The proxy body must be a JSON object.", None, "invalid_json"
            ) from None
    else:
        envelope = raw
    if not isinstance(envelope, Mapping):
        raise _refuse(400, "The proxy body must be a JSON object.", None, "invalid_envelope")
    unknown = sorted(str(k) for k in envelope if k not in _KNOWN_KEYS)
    if unknown:
        raise _refuse(
            400, f"Unknown envelope field {unknown[0]!r}.", unknown[0], "invalid_envelope"
        )

    method = envelope.get("method")
    if not isinstance(method, str) or method.upper() not in PROXY_METHODS:
        names = ", ".join(PROXY_METHODS)
        raise _refuse(400, f"'method' must be one of {names}.", "method", "invalid_method")
    method = method.upper()
    path = normalize_path(envelope.get("path"))
    query_string = encode_query(_pick(envelope, _QUERY_ALIASES))
    body = _pick(envelope, _BODY_ALIASES)

    resolution = catalog.resolve(method, path[3:])
    if isinstance(resolution, MethodNotAllowed):
        names = ", ".join(resolution.allowed)
        raise _refuse(
            405,
            f"{method} is not allowed on {path} (allowed: {names}).",
            "method",
            "method_not_allowed",
        )
    if isinstance(resolution, BadParam):
        raise _refuse(
            400, f"Invalid value for path parameter '{resolution.name}'.", "path", "invalid_path"
        )
    if not isinstance(resolution, Matched):
        raise _refuse(404, f"Unknown OpenAI path {path}.", "path", "unknown_url")
    operation = resolution.operation
    decision = policy.decide(operation)
    if decision.blocked:
        raise _refuse(
            403, f"{method} {path} is blocked on this relay.", "path", "blocked_operation"
        )
    if not decision.proxy:
        raise _refuse(
            403, f"{method} {path} is not available through the proxy.", "path", "not_proxied"
        )

    if body is None:
        return ProxyRequest(method, path, query_string, None, operation)
    if not operation.request_types:
        raise _refuse(400, f"{method} {path} takes no body.", "body", "invalid_body")
    if not isinstance(body, Mapping):
        raise _refuse(400, "'body' must be a JSON object.", "body", "invalid_body")
    if body.get("stream") not in (None, False):
        raise _refuse(
            400,
            "Streaming is not available through the proxy.",
            "body.stream",
            "stream_unsupported",
        )
    try:
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        encoded = text.encode()
    except (ValueError, TypeError, RecursionError):
        raise _refuse(400, "'body' is not serialisable as JSON.", "body", "invalid_body") from None
    return ProxyRequest(method, path, query_string, encoded, operation)
