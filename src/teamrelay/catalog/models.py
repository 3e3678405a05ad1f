"""The model allowlist (`RELAY_MODEL_ALLOWLIST`) and the readers that find a request's model.

A model the relay cannot find is refused, never waved through: a body that is not JSON, a
missing `model` on an operation that runs one, a JSONL line too long to read.

Multipart bodies (transcriptions, image edits, videos) are the forwarder's job: it reads the
form's `model` field as the parts stream by and asks `ModelAllowlist.allows`; a form with no
`model` field before the first file part, on an operation whose `runs_model` is true, is
refused the same way.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from teamrelay.catalog.catalog import Operation

ALLOWLIST_ENV: Final = "RELAY_MODEL_ALLOWLIST"
MAX_JSONL_LINE: Final = 1024 * 1024
_CACHE_LIMIT: Final = 4096


class ModelAllowlist:
    """Comma-separated patterns where `*` matches any run of characters; case-sensitive.

    An empty allowlist allows every model (the relay's default).
    """

    def __init__(self, patterns: Iterable[str] = ()) -> None:
        self.patterns: tuple[str, ...] = tuple(p for p in (p.strip() for p in patterns) if p)
        alternatives = "|".join(".*".join(map(re.escape, p.split("*"))) for p in self.patterns)
        self._regex = re.compile(f"(?:{alternatives})\\Z") if self.patterns else None
        self._cache: dict[str, bool] = {}

    @classmethod
    def parse(cls, text: str | None) -> ModelAllowlist:
        return cls((text or "").split(","))

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ModelAllowlist:
        return cls.parse(env.get(ALLOWLIST_ENV))

    @property
    def is_open(self) -> bool:
        return self._regex is None

    def allows(self, model: str) -> bool:
        if self._regex is None:
            return True
        allowed = self._cache.get(model)
        if allowed is None:
            allowed = self._regex.match(model) is not None
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[model] = allowed
        return allowed

    def refusal(self, operation: Operation, body: bytes) -> str | None:
        """Why a JSON request body may not go upstream, or None when it may."""
        if self._regex is None or not operation.runs_model:
            return None
        if operation.model_paths == (("model",),) and not operation.model_optional:
            return self._judge_value(model_from_json(body), "model")
        document = _load_object(body)
        if document is None:
            return "The request's model could not be read: the body is not a JSON object."
        depth = min(len(p) for p in operation.model_paths)
        for path in operation.model_paths:
            value = _lookup(document, path)
            required = len(path) == depth and not operation.model_optional
            if value is None and not required:
                continue
            reason = self._judge_value(value, ".".join(path))
            if reason is not None:
                return reason
        return None

    def _judge_value(self, value: object, where: str) -> str | None:
        if not isinstance(value, str):
            return f"The request must name its model in '{where}' on this relay."
        if not self.allows(value):
            return f"The model '{value[:100]}' is not allowed on this relay."
        return None

    def filter_models_list(self, body: bytes) -> bytes:
        """Keep only allowed models in a `GET /v1/models` response body.

        A body of another shape yields an empty list: better to show nothing than everything.
        """
        if self._regex is None:
            return body
        document = _load_object(body)
        data = document.get("data") if document is not None else None
        if document is None or not isinstance(data, list):
            return b'{"object":"list","data":[]}'
        document["data"] = [
            item
            for item in data
            if isinstance(item, dict)
            and isinstance(item.get("id"), str)
            and self.allows(item["id"])
        ]
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def _unique_model(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if sum(key == "model" for key, _ in pairs) > 1:
        raise ValueError("duplicate 'model' key")
    return dict(pairs)


def _load_object(body: bytes) -> dict[str, Any] | None:
    """Parse a JSON object; None when unreadable or when it names `model` twice in one object.

    Parsers disagree on which duplicate wins, so a second `model` (perhaps spelled with
    escapes) is unresolvable. The slower checking parse runs only when one could be present.
    """
    careful = body.count(b'"model"') > 1 or b"\\u" in body
    try:
        document = (
            json.loads(body, object_pairs_hook=_unique_model) if careful else json.loads(body)
        )
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


def _lookup(document: Mapping[str, Any], path: tuple[str, ...]) -> object:
    value: object = document
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def model_from_json(body: bytes) -> str | None:
    """The top-level `model` of a JSON object body, or None when absent or unreadable.

    Without the bytes `"model"` there is no plain `model` key, so the parse is skipped; a key
    spelled with escapes (`"mod\\u0065l"`) then reads as absent, which callers refuse.
    """
    if b'"model"' not in body:
        return None
    document = _load_object(body)
    if document is None:
        return None
    model = document.get("model")
    return model if isinstance(model, str) else None


class JsonlModelGate:
    """Checks each line's `body.model` of a batch input file while the upload streams by.

    Holds at most one partial line (`max_line` bytes); a longer line is refused as
    unresolvable. After the first refusal every call returns that same refusal.
    """

    def __init__(self, allowlist: ModelAllowlist, max_line: int = MAX_JSONL_LINE) -> None:
        self.allowlist = allowlist
        self.max_line = max_line
        self.lines = 0
        self._partial = bytearray()
        self._refusal: str | None = None

    def feed(self, chunk: bytes) -> str | None:
        if self._refusal is not None or self.allowlist.is_open:
            return self._refusal
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                break
            if len(self._partial) + end - start > self.max_line:
                self._refusal = self._too_long()
                return self._refusal
            if self._partial:
                self._partial += chunk[start:end]
                line = bytes(self._partial)
                self._partial.clear()
            else:
                line = chunk[start:end]
            start = end + 1
            self._refusal = self._check(line)
            if self._refusal is not None:
                return self._refusal
        if len(self._partial) + len(chunk) - start > self.max_line:
            self._refusal = self._too_long()
        else:
            self._partial += chunk[start:]
        return self._refusal

    def finish(self) -> str | None:
        """Check the last line when the file does not end with a newline."""
        if self._refusal is None and self._partial and not self.allowlist.is_open:
            line = bytes(self._partial)
            self._partial.clear()
            self._refusal = self._check(line)
        return self._refusal

    def _too_long(self) -> str:
        self._partial.clear()
        return f"Batch input line {self.lines + 1} is longer than {self.max_line} bytes."

    def _check(self, line: bytes) -> str | None:
        self.lines += 1
        if not line.strip():
            return None
        document = _load_object(line)
        body = document.get("body") if document is not None else None
        model = body.get("model") if isinstance(body, dict) else None
        if not isinstance(model, str):
            return f"Batch input line {self.lines} must name its model in 'body.model'."
        if not self.allowlist.allows(model):
            return (
                f"Batch input line {self.lines} uses the model '{model[:100]}', not allowed here."
            )
        return None
