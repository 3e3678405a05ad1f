"""The route catalog, its policy, the /v1/proxy envelope and the model allowlist."""

from teamrelay.catalog.catalog import (
    UNKNOWN,
    BadParam,
    Catalog,
    Matched,
    MethodNotAllowed,
    Operation,
    Resolution,
    UnknownPath,
    load_catalog,
)
from teamrelay.catalog.models import JsonlModelGate, ModelAllowlist, model_from_json
from teamrelay.catalog.policy import Decision, Policy, PolicyError, load_policy
from teamrelay.catalog.proxy import EnvelopeError, ProxyRequest, normalize_path, parse_envelope

__all__ = [
    "UNKNOWN",
    "BadParam",
    "Catalog",
    "Decision",
    "EnvelopeError",
    "JsonlModelGate",
    "Matched",
    "MethodNotAllowed",
    "ModelAllowlist",
    "Operation",
    "Policy",
    "PolicyError",
    "ProxyRequest",
    "Resolution",
    "UnknownPath",
    "load_catalog",
    "load_policy",
    "model_from_json",
    "normalize_path",
    "parse_envelope",
]
