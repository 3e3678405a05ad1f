"""The GPT Actions schema, generated at start-up from the wrapper routes and the catalog.

FastAPI writes the OpenAPI 3.1 document from the routes (so the schema and the validation
are one definition); this module then makes it what the GPT editor and a model read best:
every `$ref` inlined, no titles or null-unions, examples on each body and parameter, a bearer
scheme, `x-openai-isConsequential` on each operation, and the limits of limits.py checked.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from fastapi.openapi.utils import get_openapi
from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from teamrelay import __version__
from teamrelay.actions import limits
from teamrelay.catalog import Operation
from teamrelay.oauth.advertise import with_oauth

if TYPE_CHECKING:
    from teamrelay.actions.calls import OpenAICalls
    from teamrelay.gateway import Relay

SECURITY_NAME = "relayKey"
ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,128}$"
WRITE_METHODS = frozenset({"post", "put", "patch"})
_OPERATION_ID = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}\Z")
_TITLE = "teamrelay: the OpenAI API for this team"
_DESCRIPTION = (
    "Use the OpenAI API through the team's relay: ask models, search files in vector "
    "stores, store chat files, generate images, run batches."
)
_PING = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}, "timestamp": {"type": "string"}},
}
_INFO = {
    "type": "object",
    "properties": {
        "version": {"type": "string"},
        "api_base_url": {"type": "string"},
        "default_model": {"type": "string"},
    },
}
# The relay's public routes (public.py) that belong in the schema, and how they read there.
PUBLIC = {
    "/actions/ping": ("ping", "Check the relay", "Answers ok when the relay is up.", _PING),
    "/actions/relay_info": (
        "relayInfo",
        "Describe this relay",
        "The relay's version, API address and default model.",
        _INFO,
    ),
}


class SchemaError(ValueError):
    """The generated schema breaks a GPT Actions limit; the relay refuses to start with it."""


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _inline(node: Any, schemas: dict[str, Any], depth: int = 0) -> Any:
    if depth > 32:
        raise SchemaError("the Actions schema nests too deeply")
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            target = copy.deepcopy(schemas[ref.rsplit("/", 1)[1]])
            merged = {
                **_inline(target, schemas, depth + 1),
                **{k: v for k, v in node.items() if k != "$ref"},
            }
            return merged
        return {key: _inline(value, schemas, depth + 1) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline(item, schemas, depth + 1) for item in node]
    return node


def _clean(schema: Any) -> Any:
    """Drop titles and `null` alternatives: a model reads `type: string` better."""
    if not isinstance(schema, dict):
        return schema
    schema = dict(schema)
    schema.pop("title", None)
    if schema.get("default", 0) is None:
        del schema["default"]
    alternatives = schema.get("anyOf")
    if isinstance(alternatives, list):
        kept = [a for a in alternatives if a != {"type": "null"}]
        if len(kept) == 1:
            del schema["anyOf"]
            schema = {**kept[0], **schema}
        else:
            schema["anyOf"] = kept
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        if isinstance(schema.get(key), list):
            schema[key] = [_clean(item) for item in schema[key]]
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            schema[key] = _clean(schema[key])
    if isinstance(schema.get("properties"), dict):
        schema["properties"] = {k: _clean(v) for k, v in schema["properties"].items()}
    return schema


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            yield path, method, operation


def _tidy(path: str, method: str, operation: dict[str, Any]) -> None:
    operation.pop("tags", None)
    operation.get("responses", {}).pop("422", None)
    if path in PUBLIC:
        name, summary, description, answer = PUBLIC[path]
        operation.update(operationId=name, summary=summary, description=description)
        operation["responses"] = {"200": {"description": "OK", "content": _json_content(answer)}}
        operation["security"] = []
        operation["x-openai-isConsequential"] = False
    for parameter in operation.get("parameters", []):
        schema = _clean(parameter.get("schema", {}))
        examples = schema.pop("examples", None)
        if examples:
            parameter["example"] = examples[0]
        if parameter.get("in") == "path":
            schema.setdefault("pattern", ID_PATTERN)
        if schema.get("description") == parameter.get("description"):
            del schema["description"]
        parameter["schema"] = schema
    body = operation.get("requestBody")
    if body:
        media = body["content"]["application/json"]
        schema = _clean(media["schema"])
        example = schema.pop("example", None)
        if example is not None:
            media["example"] = example
        media["schema"] = schema
        body["required"] = True
    elif method in WRITE_METHODS:
        empty = {"type": "object", "properties": {}}
        operation["requestBody"] = {"required": False, "content": _json_content(empty)}


def _direct(operation: Operation) -> tuple[str, str, dict[str, Any]]:
    """A catalog operation given the `actions` surface by policy: forwarded as it is."""
    method = operation.method.lower()
    name = "openai" + operation.operation_id[:1].upper() + operation.operation_id[1:]
    entry: dict[str, Any] = {
        "operationId": re.sub(r"[^A-Za-z0-9_]", "_", name)[:64],
        "summary": f"OpenAI API: {operation.method} /v1{operation.path}"[
            : limits.MAX_SUMMARY_CHARS
        ],
        "description": "Forwarded to the OpenAI API unchanged; see the OpenAI API reference.",
        "parameters": [
            {
                "name": param,
                "in": "path",
                "required": True,
                "description": f"The {param}.",
                "schema": {"type": "string", "pattern": ID_PATTERN},
                "example": "abc123",
            }
            for param in operation.params
        ],
        "responses": {
            "200": {
                "description": "The OpenAI API's answer.",
                "content": _json_content({"type": "object"}),
            }
        },
        "x-openai-isConsequential": method != "get",
    }
    if operation.request_types or method in WRITE_METHODS:
        body = {"type": "object", "description": "The body the OpenAI API reference describes."}
        entry["requestBody"] = {"required": True, "content": _json_content(body)}
    return f"/v1{operation.path}", method, entry


def build(
    routes: Sequence[BaseRoute], calls: OpenAICalls, direct: Sequence[Operation] = ()
) -> dict[str, Any]:
    document = get_openapi(
        title=_TITLE,
        version=__version__,
        openapi_version="3.1.0",
        description=_DESCRIPTION,
        routes=routes,
    )
    for path in list(document.get("paths", {})):
        item = document["paths"][path]
        for method in list(item):
            extra = item[method]
            wraps = extra.get("x-relay-wraps", [])
            ours = "x-openai-isConsequential" in extra and all(calls.allowed(o) for o in wraps)
            if not (path in PUBLIC or ours):
                del item[method]
        if not item:
            del document["paths"][path]
    schemas = document.get("components", {}).get("schemas", {})
    document = _inline(document, schemas)
    for path, method, operation in operations(document):
        operation.pop("x-relay-wraps", None)
        _tidy(path, method, operation)
    for chosen in direct:
        if chosen.json_only:
            path, method, entry = _direct(chosen)
            document["paths"].setdefault(path, {})[method] = entry
    document["servers"] = [{"url": "https://relay.example"}]
    document["components"] = {
        "schemas": {},
        "securitySchemes": {SECURITY_NAME: {"type": "http", "scheme": "bearer"}},
    }
    document["security"] = [{SECURITY_NAME: []}]
    found = problems(document)
    if found:
        raise SchemaError(f"the GPT Actions schema breaks a limit: {found[0]}")
    order = ("openapi", "info", "servers", "security", "paths", "components")
    return {key: document[key] for key in order if key in document}


def _descriptions(schema: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(schema, dict):
        if isinstance(schema.get("description"), str):
            yield where, schema["description"]
        for key, value in schema.items():
            if key == "properties" and isinstance(value, dict):
                for name, child in value.items():
                    yield from _descriptions(child, f"{where}.{name}")
            elif isinstance(value, dict | list) and key != "example":
                yield from _descriptions(value, where)
    elif isinstance(schema, list):
        for item in schema:
            yield from _descriptions(item, where)


def problems(document: dict[str, Any]) -> list[str]:
    """Every way the document breaks a GPT Actions limit (limits.py), as readable lines."""
    found: list[str] = []
    found_ops = list(operations(document))
    if len(found_ops) > limits.MAX_OPERATIONS:
        found.append(f"{len(found_ops)} operations (at most {limits.MAX_OPERATIONS})")
    schemes = document.get("components", {}).get("securitySchemes", {})
    if {"type": "http", "scheme": "bearer"} not in schemes.values():
        found.append("no bearer security scheme")
    if "$ref" in repr(document.get("paths")):
        found.append("a $ref remains")
    seen: set[str] = set()
    for path, method, operation in found_ops:
        where = f"{method.upper()} {path}"
        name = operation.get("operationId", "")
        if not _OPERATION_ID.match(name) or name in seen:
            found.append(f"{where}: operationId {name!r} is missing, unreadable or repeated")
        seen.add(name)
        for key in ("summary", "description"):
            text = operation.get(key, "")
            if not text or len(text) > limits.MAX_SUMMARY_CHARS:
                found.append(f"{where}: {key} is empty or over {limits.MAX_SUMMARY_CHARS} chars")
        if not isinstance(operation.get("x-openai-isConsequential"), bool):
            found.append(f"{where}: no x-openai-isConsequential")
        if re.search(r"\{[^}]*(:|path\b|\*)[^}]*\}", path):
            found.append(f"{where}: a catch-all path parameter")
        for parameter in operation.get("parameters", []):
            text = parameter.get("description", "")
            if len(text) > limits.MAX_PARAM_DESCRIPTION_CHARS:
                found.append(f"{where}: parameter {parameter.get('name')} description too long")
            if parameter.get("in") == "path" and "pattern" not in parameter.get("schema", {}):
                found.append(f"{where}: path parameter {parameter.get('name')} has no pattern")
        body = operation.get("requestBody")
        if method in WRITE_METHODS and not (body and body["content"].get("application/json")):
            found.append(f"{where}: a write without a JSON request body schema")
        if body:
            if set(body["content"]) != {"application/json"}:
                found.append(f"{where}: a request body that is not JSON only")
            schema = body["content"].get("application/json", {}).get("schema", {})
            for at, text in _descriptions(schema, "body"):
                if len(text) > limits.MAX_PARAM_DESCRIPTION_CHARS:
                    found.append(f"{where}: {at} description too long")
        for status, answer in operation.get("responses", {}).items():
            if set(answer.get("content", {})) - {"application/json"}:
                found.append(f"{where}: response {status} is not JSON")
    return found


class ActionsSchema:
    """Built once from the running app's routes; `servers` filled per request."""

    def __init__(self, relay: Relay, calls: OpenAICalls) -> None:
        self._relay = relay
        self._calls = calls
        self._document: dict[str, Any] | None = None

    def document(self, app: ASGIApp) -> dict[str, Any]:
        if self._document is None:
            routes: Sequence[BaseRoute] = getattr(app, "routes", [])
            direct = self._relay.router.policy.actions_operations
            self._document = build(routes, self._calls, direct)
        return self._document

    def served(self, app: ASGIApp, base_url: str) -> dict[str, Any]:
        document = {**self.document(app), "servers": [{"url": base_url}]}
        if self._relay.settings.oauth_enabled:
            document = with_oauth(document, base_url)
        return document

    def manifest(self, app: ASGIApp, base_url: str) -> dict[str, Any]:
        listed = [
            {
                "operationId": operation["operationId"],
                "method": method.upper(),
                "path": path,
                "consequential": operation["x-openai-isConsequential"],
            }
            for path, method, operation in operations(self.document(app))
        ]
        return {
            "schema_url": f"{base_url}/openapi.actions.json",
            "schema_yaml_url": f"{base_url}/openapi.actions.yaml",
            "auth": {"type": "bearer", "header": "Authorization"},
            "operation_count": len(listed),
            "operations": listed,
            "limits": {
                "answer_budget_seconds": self._relay.settings.actions_answer_budget,
                "round_trip_seconds": limits.ROUND_TRIP_SECONDS,
                "max_payload_chars": limits.MAX_PAYLOAD_CHARS,
                "max_files_in": limits.MAX_FILES_IN,
                "max_files_out": limits.MAX_FILES_OUT,
                "max_file_out_bytes": limits.MAX_FILE_OUT_BYTES,
            },
        }
