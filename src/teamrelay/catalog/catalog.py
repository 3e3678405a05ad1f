"""Every OpenAI operation the relay knows, and the resolver that maps a request onto one.

`Catalog.resolve` runs on every `/v1` request: it walks a trie of path segments (literal
segments before parameters) so its cost depends on the path's depth, not the catalog's size.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any, Final

JSON_TYPE: Final = "application/json"

# OpenAI ids and model names: `file-abc`, `vs_123`, `ft:gpt-4o:org::id`, `gpt-4.1-mini`.
# Anything else (`%`, `/`, `@`, whitespace, `..`) never reaches upstream.
_SAFE_PARAM = re.compile(r"(?!\.+\Z)(?!.*\.\.)[A-Za-z0-9_:.\-]{1,256}\Z")


def family_of(path: str) -> str:
    """The first path segment: the unit policy files speak of (`files`, `organization`...)."""
    return path.lstrip("/").split("/", 1)[0]


def template_params(path: str) -> list[str]:
    return [seg[1:-1] for seg in path.split("/") if seg.startswith("{") and seg.endswith("}")]


def is_safe_param(value: str) -> bool:
    return _SAFE_PARAM.match(value) is not None


@dataclass(frozen=True, slots=True, eq=False)
class Operation:
    """One OpenAI operation; compared and hashed by identity (each exists once per catalog)."""

    operation_id: str
    method: str
    path: str
    family: str
    params: tuple[str, ...] = ()
    request_types: tuple[str, ...] = ()
    body_required: bool = False
    response_types: tuple[str, ...] = ()
    streams: bool = False
    binary: bool = False
    websocket: bool = False
    model_paths: tuple[tuple[str, ...], ...] = ()
    model_optional: bool = False
    variant: str | None = None
    source: str = "spec"

    @property
    def runs_model(self) -> bool:
        return bool(self.model_paths)

    @property
    def spec_path(self) -> str:
        """The path as the spec keys it, `?beta=true` variants included."""
        return f"{self.path}?{self.variant}" if self.variant else self.path

    @property
    def json_only(self) -> bool:
        """JSON (or no) request body and a JSON response: what `/v1/proxy` may carry."""
        return (
            not self.websocket
            and not self.binary
            and all(t == JSON_TYPE for t in self.request_types)
            and JSON_TYPE in self.response_types
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Operation:
        return cls(
            operation_id=data["id"],
            method=data["method"],
            path=data["path"],
            family=data["family"],
            params=tuple(data["params"]),
            request_types=tuple(data["request"]),
            body_required=data["body_required"],
            response_types=tuple(data["responses"]),
            streams=data["streams"],
            binary=data["binary"],
            websocket=data["websocket"],
            model_paths=tuple(tuple(p) for p in data["model_paths"]),
            model_optional=data["model_optional"],
            variant=data["variant"],
            source=data["source"],
        )


@dataclass(slots=True)
class Matched:
    operation: Operation
    params: dict[str, str]


@dataclass(slots=True)
class MethodNotAllowed:
    allowed: tuple[str, ...]


@dataclass(slots=True)
class BadParam:
    operation: Operation
    name: str
    value: str


@dataclass(slots=True)
class UnknownPath:
    pass


UNKNOWN: Final = UnknownPath()
Resolution = Matched | MethodNotAllowed | BadParam | UnknownPath


@dataclass(slots=True, eq=False)
class _Node:
    literals: dict[str, _Node] = field(default_factory=dict)
    param: _Node | None = None
    methods: dict[str, Operation] = field(default_factory=dict)
    allowed: tuple[str, ...] = ()


def _walk(node: _Node, segments: list[str], index: int, values: list[str]) -> _Node | None:
    if index == len(segments):
        return node if node.methods else None
    segment = segments[index]
    child = node.literals.get(segment)
    if child is not None:
        found = _walk(child, segments, index + 1, values)
        if found is not None:
            return found
    if node.param is not None and segment:
        values.append(segment)
        found = _walk(node.param, segments, index + 1, values)
        if found is not None:
            return found
        values.pop()
    return None


class Catalog:
    """The operations and a resolver over them; build once (see `load_catalog`)."""

    def __init__(self, operations: list[Operation]) -> None:
        self.operations: tuple[Operation, ...] = tuple(operations)
        self.by_id: dict[str, Operation] = {}
        self._root = _Node()
        self._static: dict[str, _Node] = {}
        for op in self.operations:
            if op.operation_id in self.by_id:
                raise ValueError(f"duplicate operationId {op.operation_id!r}")
            self.by_id[op.operation_id] = op
            if op.variant is None:
                self._add_route(op)

    def _add_route(self, op: Operation) -> None:
        node = self._root
        for segment in op.path.strip("/").split("/"):
            if segment.startswith("{"):
                if node.param is None:
                    node.param = _Node()
                node = node.param
            else:
                node = node.literals.setdefault(segment, _Node())
        if op.method in node.methods:
            raise ValueError(f"two operations for {op.method} {op.path}")
        node.methods[op.method] = op
        node.allowed = tuple(sorted(node.methods))
        if not op.params:
            self._static[op.path] = node

    @property
    def spec_operations(self) -> tuple[Operation, ...]:
        return tuple(op for op in self.operations if op.source == "spec")

    def resolve(self, method: str, path: str) -> Resolution:
        """Map `method` and a raw path after `/v1` (`/files/file-abc/content`) to an operation."""
        node = self._static.get(path)
        if node is not None:
            op = node.methods.get(method)
            return MethodNotAllowed(node.allowed) if op is None else Matched(op, {})
        if not path.startswith("/"):
            return UNKNOWN
        segments = path[1:].split("/")
        values: list[str] = []
        found: _Node | None = None
        node = self._root
        for segment in segments:
            child = node.literals.get(segment)
            if child is None:
                child = node.param
                if child is None or not segment:
                    break
                values.append(segment)
            node = child
        else:
            if node.methods:
                found = node
        if found is None:
            # The greedy walk took a literal that led nowhere: retry with backtracking.
            values = []
            found = _walk(self._root, segments, 0, values)
            if found is None:
                return UNKNOWN
        op = found.methods.get(method)
        if op is None:
            return MethodNotAllowed(found.allowed)
        match = _SAFE_PARAM.match
        for index, value in enumerate(values):
            if match(value) is None:
                return BadParam(op, op.params[index], value)
        return Matched(op, dict(zip(op.params, values)))  # noqa: B905 - equal by construction


def parse_catalog(text: str) -> Catalog:
    document = json.loads(text)
    return Catalog([Operation.from_json(entry) for entry in document["operations"]])


@cache
def load_catalog() -> Catalog:
    """The catalog shipped in the package, parsed once per process."""
    text = files("teamrelay").joinpath("data/catalog.json").read_text(encoding="utf-8")
    return parse_catalog(text)
