"""Build `data/catalog.json` from the pinned OpenAI spec plus `data/catalog_extras.toml`.

The relay ships the generated file, not the 3 MB spec; `tests/test_catalog.py` regenerates
it and fails if the shipped copy drifted. Run: `python -m teamrelay.catalog.generate`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from teamrelay.catalog.catalog import family_of, template_params

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
CATALOG_PATH = DATA_DIR / "catalog.json"
EXTRAS_PATH = DATA_DIR / "catalog_extras.toml"
DEFAULT_SPEC = Path(__file__).resolve().parents[3].parent / "shared/openai-openapi/openapi.json"

_METHODS = ("get", "post", "put", "patch", "delete")
_JSON = "application/json"
_SSE = "text/event-stream"
# Deeper than two levels a `model` key is configuration of a tool or grader, not the model
# the request runs on; one level down catches `session.model` and `moderation.model`.
_MODEL_DEPTH = 2

Json = dict[str, Any]


class _Schemas:
    """Resolves `$ref`s and collects an object schema's properties across allOf/anyOf/oneOf."""

    def __init__(self, components: Mapping[str, Any]) -> None:
        self._components = components

    def deref(self, schema: Any) -> Any:
        while isinstance(schema, dict) and "$ref" in schema:
            schema = self._components[schema["$ref"].rsplit("/", 1)[-1]]
        return schema

    def properties(self, schema: Any, depth: int = 0) -> dict[str, Any]:
        schema = self.deref(schema)
        found: dict[str, Any] = {}
        if not isinstance(schema, dict) or depth > 10:
            return found
        found.update(schema.get("properties", {}))
        for key in ("allOf", "anyOf", "oneOf"):
            for part in schema.get(key, []):
                for name, sub in self.properties(part, depth + 1).items():
                    found.setdefault(name, sub)
        return found

    def model_paths(self, schema: Any, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
        props = self.properties(schema)
        paths = {(*prefix, "model")} if "model" in props else set()
        if len(prefix) + 1 < _MODEL_DEPTH:
            for name, sub in props.items():
                if name != "model":
                    paths |= self.model_paths(sub, (*prefix, name))
        return paths


def _success_content_types(op: Mapping[str, Any]) -> list[str]:
    types: list[str] = []
    for code, response in op.get("responses", {}).items():
        if str(code).startswith("2"):
            for ctype in response.get("content", {}):
                if ctype not in types:
                    types.append(ctype)
    return types


def _is_binary(response_types: list[str]) -> bool:
    return any(t != _JSON and t != _SSE for t in response_types)


def _spec_operations(spec: Mapping[str, Any]) -> Iterator[Json]:
    schemas = _Schemas(spec["components"]["schemas"])
    for key, item in spec["paths"].items():
        path, _, variant = key.partition("?")
        for method in _METHODS:
            op = item.get(method)
            if op is None:
                continue
            body = op.get("requestBody", {})
            request = list(body.get("content", {}))
            responses = _success_content_types(op)
            streams = _SSE in responses
            model_paths: set[tuple[str, ...]] = set()
            for media in body.get("content", {}).values():
                props = schemas.properties(media.get("schema", {}))
                streams = streams or "stream" in props
                model_paths |= schemas.model_paths(media.get("schema", {}))
            yield {
                "id": op["operationId"],
                "method": method.upper(),
                "path": path,
                "variant": variant or None,
                "params": template_params(path),
                "request": request,
                "body_required": bool(body.get("required", False)),
                "responses": responses,
                "streams": streams,
                "binary": _is_binary(responses),
                "websocket": False,
                "model_paths": sorted(list(p) for p in model_paths),
                "model_optional": False,
                "family": family_of(path),
                "source": "spec",
            }


def _extra_operation(entry: Mapping[str, Any]) -> Json:
    path = entry["path"]
    websocket = bool(entry.get("websocket", False))
    binary = bool(entry.get("binary", False))
    request = list(entry.get("request", []))
    return {
        "id": entry["id"],
        "method": entry["method"],
        "path": path,
        "variant": None,
        "params": template_params(path),
        "request": request,
        "body_required": bool(request),
        "responses": [] if websocket else (["application/octet-stream"] if binary else [_JSON]),
        "streams": bool(entry.get("streams", False)),
        "binary": binary,
        "websocket": websocket,
        "model_paths": [list(p) for p in entry.get("model_paths", [])],
        "model_optional": bool(entry.get("model_optional", False)),
        "family": family_of(path),
        "source": "extra",
    }


def build_catalog(spec: Mapping[str, Any], extras: Mapping[str, Any]) -> Json:
    """Return the catalog document: spec operations (with corrections), then the extras."""
    operations = list(_spec_operations(spec))
    by_id = {op["id"]: op for op in operations}
    for op_id, fields in extras.get("corrections", {}).items():
        if op_id not in by_id:
            raise ValueError(f"correction for unknown operation {op_id!r}")
        by_id[op_id].update({k: v for k, v in fields.items() if k != "note"})
    for entry in extras.get("operations", []):
        op = _extra_operation(entry)
        if op["id"] in by_id:
            raise ValueError(f"extra operation {op['id']!r} duplicates an operationId")
        by_id[op["id"]] = op
        operations.append(op)
    info = spec.get("info", {})
    return {
        "spec": {"title": info.get("title"), "version": info.get("version")},
        "operations": operations,
    }


def render(catalog: Json) -> str:
    """Serialise one operation per line: compact, yet reviewable in a diff."""
    lines = [json.dumps(op, separators=(",", ":")) for op in catalog["operations"]]
    spec = json.dumps(catalog["spec"], separators=(",", ":"))
    return '{"spec":' + spec + ',"operations":[\n' + ",\n".join(lines) + "\n]}\n"


def generate(spec_path: Path, extras_path: Path = EXTRAS_PATH) -> str:
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    extras = tomllib.loads(extras_path.read_text(encoding="utf-8"))
    return render(build_catalog(spec, extras))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m teamrelay.catalog.generate")
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC, help="openapi.json to read")
    parser.add_argument("--out", type=Path, default=CATALOG_PATH, help="catalog.json to write")
    parser.add_argument("--check", action="store_true", help="fail if --out is out of date")
    args = parser.parse_args(argv)
    if not args.spec.is_file():
        print(f"spec not found: {args.spec}", file=sys.stderr)
        return 2
    text = generate(args.spec)
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.is_file() else ""
        if current != text:
            print(f"{args.out} is out of date; rerun without --check", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {text.count(chr(10)) - 2} operations to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
