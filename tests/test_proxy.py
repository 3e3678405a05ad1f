"""The /v1/proxy envelope: strict paths, allowlisted operations, refusals before upstream."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from strategies import envelopes
from teamrelay.catalog.catalog import Catalog, Matched, load_catalog
from teamrelay.catalog.policy import Policy, load_policy
from teamrelay.catalog.proxy import (
    MAX_PATH_LENGTH,
    EnvelopeError,
    ProxyRequest,
    encode_query,
    normalize_path,
    parse_envelope,
)
from teamrelay.errors import RelayError

CATALOG = load_catalog()
POLICY = load_policy(CATALOG, env={})
_CLEAN_PATH = re.compile(r"/v1(/[A-Za-z0-9_:.\-]+)+\Z")


def _parse(envelope: Any, catalog: Catalog = CATALOG, policy: Policy = POLICY) -> ProxyRequest:
    return parse_envelope(envelope, catalog, policy)


def _refusal(envelope: Any) -> EnvelopeError:
    with pytest.raises(EnvelopeError) as caught:
        _parse(envelope)
    return caught.value


@pytest.mark.parametrize("path", ["/v1/evals", "/v1/fine_tuning/jobs", "/v1/organization/users"])
def test_seed_blocked_paths_are_refused_with_403(path: str) -> None:
    error = _refusal({"method": "GET", "path": path})
    assert error.status == 403
    assert error.code == "blocked_operation"


def test_seed_model_list_goes_through() -> None:
    request = _parse(b'{"method": "GET", "path": "/v1/models"}')
    assert (request.method, request.path, request.query_string, request.body) == (
        "GET",
        "/v1/models",
        "",
        None,
    )
    assert request.operation is CATALOG.by_id["listModels"]


def test_seed_response_creation_goes_through_as_compact_json() -> None:
    body = {"model": "gpt-5", "input": "héllo", "store": False}
    request = _parse(json.dumps({"method": "post", "path": "/v1/responses", "json": body}))
    assert request.method == "POST"
    assert request.path == "/v1/responses"
    assert request.body == '{"model":"gpt-5","input":"héllo","store":false}'.encode()
    assert request.operation is CATALOG.by_id["createResponse"]


@pytest.mark.parametrize("path", ["models", "/models", "v1/models", "/v1/models"])
def test_v1_prefix_is_added_when_absent(path: str) -> None:
    assert _parse({"method": "GET", "path": path}).path == "/v1/models"


@pytest.mark.parametrize("alias", ["query", "params", "query_params"])
def test_query_aliases_are_encoded(alias: str) -> None:
    query = {"limit": 2, "order": "desc", "include": ["a", "b"], "x": True, "none": None}
    request = _parse({"method": "GET", "path": "/files", alias: query})
    assert request.query_string == "limit=2&order=desc&include=a&include=b&x=true"


@pytest.mark.parametrize("alias", ["body", "json", "json_body"])
def test_body_aliases_are_forwarded(alias: str) -> None:
    request = _parse({"method": "POST", "path": "/embeddings", alias: {"input": "x"}})
    assert request.body == b'{"input":"x"}'


def test_two_aliases_for_the_same_member_are_ambiguous() -> None:
    error = _refusal({"method": "GET", "path": "/files", "query": {}, "params": {}})
    assert (error.status, error.param) == (400, "params")
    error = _refusal({"method": "POST", "path": "/embeddings", "body": {}, "json": {}})
    assert (error.status, error.param) == (400, "json")


@pytest.mark.parametrize(
    ("envelope", "param"),
    [
        ({"method": "POST", "path": "/responses", "body": {"stream": True}}, "body.stream"),
        ({"method": "POST", "path": "/responses", "body": {"stream": "yes"}}, "body.stream"),
        ({"method": "GET", "path": "/responses/resp_1", "query": {"stream": True}}, "query.stream"),
        ({"method": "GET", "path": "/responses/resp_1", "query": {"stream": "1"}}, "query.stream"),
    ],
)
def test_streaming_is_refused(envelope: dict[str, Any], param: str) -> None:
    error = _refusal(envelope)
    assert (error.status, error.param, error.code) == (400, param, "stream_unsupported")


def test_stream_false_is_allowed() -> None:
    request = _parse({"method": "POST", "path": "/responses", "body": {"stream": False}})
    assert request.body == b'{"stream":false}'


@pytest.mark.parametrize(
    "path",
    [
        "http://evil.example/v1/models",
        "https:/v1/models",
        "//evil.example/v1/models",
        "/v1//models",
        "/v1/models/../files",
        "/v1/./models",
        "/v1/models/%2e%2e",
        "/v1/models/%2E",
        "/v1/files?purpose=x",
        "/v1/files#x",
        "/v1\\files",
        "/v1/files ",
        "/v1/fi\tles",
        "/v1/files\x00",
        "/v1/filés",
        "/v1/models/gpt@evil",
        "/v1/models/",
        "/v1/proxy",
        "/proxy",
        "/v1/proxy/x",
        "/v1/" + "a" * MAX_PATH_LENGTH,
        "",
    ],
)
def test_dangerous_paths_are_refused_with_400(path: str) -> None:
    error = _refusal({"method": "GET", "path": path})
    assert error.status == 400
    assert error.param == "path"


@pytest.mark.parametrize("path", [None, 3, ["/v1/models"], {"p": 1}])
def test_path_must_be_a_string(path: object) -> None:
    assert _refusal({"method": "GET", "path": path}).status == 400


def test_unknown_path_is_404_and_wrong_method_is_405() -> None:
    assert _refusal({"method": "GET", "path": "/v1/nothing"}).status == 404
    assert _refusal({"method": "GET", "path": "/v1/v1/models"}).status == 404
    error = _refusal({"method": "DELETE", "path": "/v1/embeddings"})
    assert (error.status, error.code) == (405, "method_not_allowed")


def test_operation_without_proxy_surface_is_403() -> None:
    error = _refusal({"method": "DELETE", "path": "/v1/files/file-1"})
    assert (error.status, error.code) == (403, "not_proxied")
    assert _refusal({"method": "POST", "path": "/v1/files", "body": {}}).status == 403


@pytest.mark.parametrize("method", ["PUT", "PATCH", "HEAD", "TRACE", "", None, 1, "GET /x"])
def test_methods_outside_the_proxy_set_are_refused(method: object) -> None:
    error = _refusal({"method": method, "path": "/v1/models"})
    assert (error.status, error.param) == (400, "method")


@pytest.mark.parametrize(
    "envelope",
    [
        b"not json",
        b"[1, 2]",
        b'"string"',
        b'{"method": "POST", "path": "/embeddings", "body": {"x": NaN}}',
        b"\xff\xfe",
        b"[" * 100_000,
        {"method": "GET", "path": "/models", "headers": {"x": "y"}},
        {"method": "GET", "path": "/models", "body": {}},
        {"method": "POST", "path": "/embeddings", "body": [1]},
        {"method": "POST", "path": "/embeddings", "body": {"x": float("inf")}},
        {"method": "GET", "path": "/files", "query": "limit=1"},
        {"method": "GET", "path": "/files", "query": {"a": {"b": 1}}},
        {"method": "GET", "path": "/files", "query": {"a": [[1]]}},
        {"method": "GET", "path": "/files", "query": {"": 1}},
    ],
)
def test_malformed_envelopes_are_refused_with_400(envelope: Any) -> None:
    assert _refusal(envelope).status == 400


def test_envelope_error_is_a_relay_error_in_openai_shape() -> None:
    error = _refusal({"method": "GET", "path": "/v1/evals"})
    assert isinstance(error, RelayError)
    assert json.loads(error.body())["error"]["code"] == "blocked_operation"


def test_policy_file_can_open_an_operation_to_the_proxy(tmp_path: Any) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[operations]\ndeleteFile = ["sdk", "proxy"]\n')
    policy = load_policy(CATALOG, path)
    request = _parse({"method": "DELETE", "path": "/files/file-1"}, policy=policy)
    assert request.operation is CATALOG.by_id["deleteFile"]


def test_normalize_path_and_encode_query_alone() -> None:
    assert normalize_path("/v1") == "/v1"
    assert normalize_path("files/file-1") == "/v1/files/file-1"
    assert encode_query(None) == ""
    assert encode_query({"after": "file-1", "n": 1.5, "f": False}) == "after=file-1&n=1.5&f=false"


# --- property: anything either is refused with a 4xx or is one clean, proxied call ----------


@settings(max_examples=2000, deadline=None)
@given(envelopes(), st.booleans())
def test_every_envelope_is_refused_or_becomes_one_clean_proxied_call(
    envelope: dict[str, Any], as_bytes: bool
) -> None:
    raw: Any = json.dumps(envelope).encode() if as_bytes else envelope
    try:
        request = _parse(raw)
    except EnvelopeError as error:
        status = error.status
    else:
        status = 200
    event(f"status {status}")
    if status != 200:
        assert status in (400, 403, 404, 405)
        return
    assert request.method in ("GET", "POST", "DELETE")
    assert _CLEAN_PATH.match(request.path), request.path
    assert ".." not in request.path
    assert len(request.path) <= 3 + MAX_PATH_LENGTH
    assert "#" not in request.query_string
    resolution = CATALOG.resolve(request.method, request.path[3:])
    assert isinstance(resolution, Matched)
    assert resolution.operation is request.operation
    assert POLICY.decide(request.operation).proxy
    assert not POLICY.decide(request.operation).blocked
    if request.body is not None:
        body = json.loads(request.body)
        assert isinstance(body, dict)
        assert body.get("stream") in (None, False)


@pytest.mark.parametrize("operation", POLICY.proxy_operations, ids=lambda op: op.operation_id)
def test_every_proxied_operation_is_reachable_through_the_envelope(operation: Any) -> None:
    path = re.sub(r"\{[^}]+\}", "x_1", operation.path)
    body = {"model": "gpt-5"} if operation.request_types else None
    request = _parse({"method": operation.method, "path": path, "body": body})
    assert request.operation is operation
    assert request.path == "/v1" + path
