"""The catalog: generated from the pinned spec, complete for the SDK, resolved fast and strictly."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from types import ModuleType

import pytest

from teamrelay import catalog as catalog_package
from teamrelay.catalog.catalog import (
    UNKNOWN,
    BadParam,
    Catalog,
    Matched,
    MethodNotAllowed,
    is_safe_param,
    load_catalog,
)
from teamrelay.catalog.generate import CATALOG_PATH, DEFAULT_SPEC, generate, main

needs_spec = pytest.mark.skipif(
    not DEFAULT_SPEC.is_file(), reason=f"pinned spec not found at {DEFAULT_SPEC}"
)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def _sample(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x_1", path)


def test_public_names_are_exactly_all() -> None:
    public = {
        name
        for name, value in vars(catalog_package).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }
    assert public == set(catalog_package.__all__)


@needs_spec
def test_shipped_catalog_matches_the_generator_output() -> None:
    assert CATALOG_PATH.read_text(encoding="utf-8") == generate(DEFAULT_SPEC)


@needs_spec
def test_generator_check_mode_reports_up_to_date_and_stale(tmp_path: Path) -> None:
    assert main(["--check"]) == 0
    stale = tmp_path / "catalog.json"
    stale.write_text("{}")
    assert main(["--check", "--out", str(stale)]) == 1
    assert main(["--out", str(stale)]) == 0
    assert main(["--check", "--out", str(stale)]) == 0
    assert main(["--spec", str(tmp_path / "missing.json")]) == 2


@needs_spec
def test_spec_operations_and_their_path_parameters_are_all_present(catalog: Catalog) -> None:
    spec = json.loads(DEFAULT_SPEC.read_text(encoding="utf-8"))
    expected = {}
    for key, item in spec["paths"].items():
        for method, op in item.items():
            names = {p["name"] for p in op.get("parameters", []) if p.get("in") == "path"}
            expected[op["operationId"]] = (method.upper(), key, names)
    spec_ops = catalog.spec_operations
    assert len(spec["paths"]) == 182
    assert len(spec_ops) == 288
    assert {op.operation_id for op in spec_ops} == set(expected)
    for op in spec_ops:
        method, key, names = expected[op.operation_id]
        assert (op.method, op.spec_path, set(op.params)) == (method, key, names)


def test_catalog_counts_admin_operations_and_families(catalog: Catalog) -> None:
    spec_ops = catalog.spec_operations
    assert sum(op.family == "organization" for op in spec_ops) == 106
    families = {op.family for op in spec_ops}
    assert {
        "files",
        "vector_stores",
        "organization",
        "fine_tuning",
        "evals",
        "realtime",
    } <= families


def test_load_catalog_parses_once(catalog: Catalog) -> None:
    assert load_catalog() is catalog


def test_every_routed_operation_resolves_to_itself(catalog: Catalog) -> None:
    for op in catalog.operations:
        if op.variant is not None:
            continue
        result = catalog.resolve(op.method, _sample(op.path))
        assert isinstance(result, Matched), op.operation_id
        assert result.operation is op
        assert result.params == dict.fromkeys(op.params, "x_1")


def test_beta_variants_are_kept_but_routed_by_their_plain_path(catalog: Catalog) -> None:
    beta = catalog.by_id["beta_createResponse"]
    assert beta.variant == "beta=true"
    assert beta.spec_path == "/responses?beta=true"
    result = catalog.resolve("POST", "/responses")
    assert isinstance(result, Matched)
    assert result.operation is catalog.by_id["createResponse"]


@pytest.mark.parametrize(
    ("method", "path", "operation_id", "params"),
    [
        ("POST", "/vector_stores/vs_1/search", "searchVectorStore", {"vector_store_id": "vs_1"}),
        ("GET", "/vector_stores/vs_1/files", "listVectorStoreFiles", {"vector_store_id": "vs_1"}),
        ("POST", "/videos/characters", "CreateVideoCharacter", {}),
        ("GET", "/videos/characters/ch_1", "GetVideoCharacter", {"character_id": "ch_1"}),
        ("GET", "/videos/video_1/content", "RetrieveVideoContent", {"video_id": "video_1"}),
        ("GET", "/files/file-abc/content", "downloadFile", {"file_id": "file-abc"}),
        (
            "GET",
            "/models/ft:gpt-4o:my-org::abc123",
            "retrieveModel",
            {"model": "ft:gpt-4o:my-org::abc123"},
        ),
        ("GET", "/models/gpt-4.1-mini", "retrieveModel", {"model": "gpt-4.1-mini"}),
        ("POST", "/responses/compact", "Compactconversation", {}),
        ("POST", "/responses/compact/cancel", "cancelResponse", {"response_id": "compact"}),
        ("POST", "/uploads/upload_1/cancel", "cancelUpload", {"upload_id": "upload_1"}),
        ("GET", "/realtime", "x-realtimeWebSocket", {}),
    ],
)
def test_resolve_prefers_literal_segments_and_extracts_parameters(
    catalog: Catalog, method: str, path: str, operation_id: str, params: dict[str, str]
) -> None:
    result = catalog.resolve(method, path)
    assert isinstance(result, Matched)
    assert result.operation.operation_id == operation_id
    assert result.params == params


def test_resolve_reports_allowed_methods_on_a_known_path(catalog: Catalog) -> None:
    assert catalog.resolve("PUT", "/files") == MethodNotAllowed(("GET", "POST"))
    assert catalog.resolve("GET", "/videos/characters") == MethodNotAllowed(("POST",))
    assert catalog.resolve("PATCH", "/files/file-1") == MethodNotAllowed(("DELETE", "GET"))


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/",
        "/nope",
        "/files/",
        "//files",
        "/files//content",
        "/v1/models",
        "files",
        "/FILES",
        "/files/file-1/content/extra",
        "/proxy",
    ],
)
def test_resolve_refuses_paths_the_catalog_does_not_know(catalog: Catalog, path: str) -> None:
    assert catalog.resolve("GET", path) is UNKNOWN


@pytest.mark.parametrize(
    "value",
    ["..", ".", "...", "a..b", "%2e%2e", "a%20b", "a b", "a@b", "a\\b", "ü", "a\tb", "x" * 257],
)
def test_resolve_refuses_unsafe_parameter_values(catalog: Catalog, value: str) -> None:
    result = catalog.resolve("GET", f"/files/{value}")
    assert isinstance(result, BadParam)
    assert result.name == "file_id"
    assert result.value == value


def test_safe_parameter_values_cover_real_openai_ids() -> None:
    for value in [
        "file-AbC123",
        "vs_abc",
        "ft:gpt-3.5-turbo-0125:org::8xYz",
        "gpt-4o-2024-08-06",
        "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
        "1",
        "latest",
    ]:
        assert is_safe_param(value), value


def test_operation_facts_are_derived_from_the_spec(catalog: Catalog) -> None:
    by_id = catalog.by_id
    assert by_id["downloadFile"].binary
    assert by_id["RetrieveContainerFileContent"].binary
    assert by_id["createSpeech"].binary
    assert by_id["createSpeech"].streams
    assert by_id["RetrieveVideoContent"].binary
    assert by_id["createChatCompletion"].streams
    assert not by_id["createChatCompletion"].binary
    assert by_id["submitToolOuputsToRun"].streams
    assert by_id["createFile"].request_types == ("multipart/form-data",)
    assert by_id["createUpload"].json_only
    assert not by_id["createFile"].json_only
    assert not by_id["downloadFile"].json_only
    assert not by_id["x-realtimeWebSocket"].json_only
    assert by_id["cancelUpload"].request_types == ()
    assert by_id["createResponse"].runs_model
    assert by_id["createTranscription"].runs_model
    assert ("session", "model") in by_id["create-realtime-client-secret"].model_paths
    assert ("model",) in by_id["create-realtime-session"].model_paths
    assert not by_id["listModels"].runs_model
    assert by_id["modifyAssistant"].model_optional


def test_duplicate_operations_are_rejected_when_building_a_catalog(catalog: Catalog) -> None:
    op = catalog.by_id["listModels"]
    with pytest.raises(ValueError, match="duplicate operationId"):
        Catalog([op, op])


_SDK_RESOURCES = None
try:
    import openai

    _SDK_RESOURCES = Path(openai.__file__).parent / "resources"
except ImportError:  # pragma: no cover - openai is a dev dependency
    pass
_HTTP_CALLS = {
    "_get": "GET",
    "_post": "POST",
    "_delete": "DELETE",
    "_patch": "PATCH",
    "_put": "PUT",
    "_get_api_list": "GET",
}
_WS_PATH = re.compile(r'b"(/[a-z_/]+)" \+ separator|path_template\("(/[^"]+)"[^)]*\)\.encode')


def _sdk_calls(root: Path) -> set[tuple[str, str]]:
    """Every (method, path) the installed SDK requests, WebSocket upgrades included."""
    calls: set[tuple[str, str]] = set()
    for file in root.rglob("*.py"):
        source = file.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(source)):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr not in _HTTP_CALLS or not node.args:
                continue
            arg = node.args[0]
            if isinstance(arg, ast.Call) and arg.args:
                arg = arg.args[0]
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                continue
            method = _HTTP_CALLS[node.func.attr]
            for keyword in node.keywords:
                if keyword.arg == "method" and isinstance(keyword.value, ast.Constant):
                    method = str(keyword.value.value).upper()
            calls.add((method, arg.value))
        for match in _WS_PATH.finditer(source):
            calls.add(("GET", match.group(1) or match.group(2)))
    return calls


@pytest.mark.skipif(_SDK_RESOURCES is None, reason="the openai SDK is not installed")
def test_every_path_the_sdk_calls_is_in_the_catalog(catalog: Catalog) -> None:
    assert _SDK_RESOURCES is not None
    calls = _sdk_calls(_SDK_RESOURCES)
    assert ("POST", "/responses") in calls
    assert ("GET", "/realtime") in calls
    missing = []
    for method, path in sorted(calls):
        plain = path.split("?")[0]
        # SDK-only admin calls may 404: the whole family is blocked anyway.
        if plain.startswith("/organization/"):
            continue
        if not isinstance(catalog.resolve(method, _sample(plain)), Matched):
            missing.append(f"{method} {path}")
    assert missing == []
