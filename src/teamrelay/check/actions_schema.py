"""The limits ChatGPT puts on a GPT Actions schema, checked on the schema a relay serves.

ChatGPT refuses to import a schema past these limits, and says little about why; the check
names each problem instead.
"""

from __future__ import annotations

from typing import Any

from teamrelay.actions.limits import (
    MAX_OPERATIONS,
    MAX_PARAM_DESCRIPTION_CHARS,
    MAX_SUMMARY_CHARS,
)

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def _operations(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path, item in (schema.get("paths") or {}).items():
        if not isinstance(item, dict):
            continue
        for method in _METHODS:
            operation = item.get(method)
            if isinstance(operation, dict):
                found.append((f"{method.upper()} {path}", operation))
    return found


def operation_count(schema: dict[str, Any]) -> int:
    return len(_operations(schema))


def _has_bearer(schema: dict[str, Any]) -> bool:
    schemes = (schema.get("components") or {}).get("securitySchemes") or {}
    return any(
        isinstance(scheme, dict)
        and scheme.get("type") == "http"
        and str(scheme.get("scheme", "")).lower() == "bearer"
        for scheme in schemes.values()
    )


def schema_problems(schema: dict[str, Any]) -> list[str]:
    """Every way `schema` breaks the Actions limits, one short line each; empty when it fits."""
    problems: list[str] = []
    operations = _operations(schema)
    if not operations:
        problems.append("the schema has no operations")
    if len(operations) > MAX_OPERATIONS:
        problems.append(f"{len(operations)} operations (the limit is {MAX_OPERATIONS})")
    seen: dict[str, str] = {}
    for label, operation in operations:
        operation_id = operation.get("operationId")
        if not operation_id:
            problems.append(f"{label} has no operationId")
        elif operation_id in seen:
            problems.append(f"operationId {operation_id} repeats ({seen[operation_id]}, {label})")
        else:
            seen[operation_id] = label
        for name in ("summary", "description"):
            text = operation.get(name) or ""
            if len(text) > MAX_SUMMARY_CHARS:
                problems.append(
                    f"{label} {name} has {len(text)} characters (limit {MAX_SUMMARY_CHARS})"
                )
        for parameter in operation.get("parameters") or []:
            if not isinstance(parameter, dict):
                continue
            text = parameter.get("description") or ""
            if len(text) > MAX_PARAM_DESCRIPTION_CHARS:
                problems.append(
                    f"{label} parameter {parameter.get('name')} description has {len(text)} "
                    f"characters (limit {MAX_PARAM_DESCRIPTION_CHARS})"
                )
    if not _has_bearer(schema):
        problems.append("no bearer security scheme (components.securitySchemes)")
    return problems
