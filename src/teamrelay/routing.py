"""Which OpenAI operation a `/v1` request is, and whether this relay serves it.

The catalog (from the official spec) and the policy decide; this module turns their answers
into OpenAI-shaped refusals, all before anything reaches upstream.
"""

from __future__ import annotations

from pathlib import Path

from teamrelay.body import parse_json
from teamrelay.catalog import (
    BadParam,
    Catalog,
    Matched,
    MethodNotAllowed,
    ModelAllowlist,
    Operation,
    Policy,
    load_catalog,
    load_policy,
)
from teamrelay.catalog.catalog import family_of
from teamrelay.errors import RelayError

_BODY_KINDS = {
    "application/json": "json",
    "multipart/form-data": "multipart",
    "application/sdp": "sdp",
}


class Router:
    def __init__(
        self, *, policy_file: Path | None, allowlist: str | None, catalog: Catalog | None = None
    ) -> None:
        self.catalog = catalog or load_catalog()
        self.policy: Policy = load_policy(self.catalog, policy_file, env={})
        self.allowlist = ModelAllowlist.parse(allowlist)
        self._kinds = {
            op: frozenset(_BODY_KINDS.get(t, t) for t in op.request_types)
            for op in self.catalog.operations
        }

    def route(self, method: str, path: str) -> Operation:
        """`path` is the raw path after `/v1`, exactly as the client sent it."""
        resolution = self.catalog.resolve(method, path)
        if isinstance(resolution, Matched):
            operation = resolution.operation
            if self.policy.decide(operation).blocked:
                raise RelayError(
                    403,
                    f"{method} /v1{operation.path} is blocked on this relay.",
                    code="blocked_operation",
                )
            return operation
        if isinstance(resolution, MethodNotAllowed):
            raise RelayError(
                405,
                f"{method} is not allowed on /v1{path} (allowed: {', '.join(resolution.allowed)}).",
                code="method_not_allowed",
                headers=((b"allow", ", ".join(resolution.allowed).encode()),),
            )
        if isinstance(resolution, BadParam):
            raise RelayError(
                400,
                f"Invalid value for path parameter '{resolution.name}'.",
                param=resolution.name,
                code="invalid_path_parameter",
            )
        if self.policy.family_blocked(family_of(path)):
            raise RelayError(
                403, f"/v1{path[:200]} is blocked on this relay.", code="blocked_operation"
            )
        raise RelayError(404, f"Unknown OpenAI API path: /v1{path[:200]}", code="unknown_url")

    def accepts(self, operation: Operation, kind: str) -> bool:
        """Operations the spec gives no request body still take JSON: SDKs may send `{}`."""
        kinds = self._kinds[operation]
        return kind in kinds if kinds else kind == "json"

    def check_model(self, operation: Operation, body: bytes) -> None:
        reason = self.allowlist.refusal(operation, body)
        if reason is not None:
            parse_json(body)  # a body that does not parse is a 400, not a missing model
            raise RelayError(403, reason, param="model", code="model_not_allowed")

    def check_model_name(self, model: str | None) -> None:
        if self.allowlist.is_open:
            return
        if model is None:
            raise RelayError(
                403,
                "The request must name its model on this relay.",
                param="model",
                code="model_not_allowed",
            )
        if not self.allowlist.allows(model):
            raise RelayError(
                403,
                f"The model '{model[:100]}' is not allowed on this relay.",
                param="model",
                code="model_not_allowed",
            )
