"""The served Actions schema is valid OpenAPI 3.1 (openapi-spec-validator) within every GPT
Actions limit, generated from the routes and the policy, never checked in."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from jsonschema import Draft202012Validator, ValidationError
from openapi_spec_validator import validate

from fakeupstream import FakeUpstream
from servers import RELAY_KEY, RunningRelay, relay_in_thread
from teamrelay.actions import limits
from teamrelay.actions.schema import operations, problems
from teamrelay.check.actions_schema import schema_problems

AUTH = {"Authorization": f"Bearer {RELAY_KEY}"}
# What changes or removes something that lasts; ChatGPT asks before each such call.
CHANGES = re.compile(r"^(create|delete|cancel|upload|add|call)")
ONLY_SPEND = ("askModel", "embedText", "generateImage", "searchVectorStore")
PLACEHOLDER_PATH = re.compile(r"/v1/\S*\{")


@pytest.fixture(scope="module")
def schema(relay: RunningRelay) -> dict[str, Any]:
    answer = httpx2.get(relay.url + "/openapi.actions.json")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    document: dict[str, Any] = answer.json()
    return document


def test_schema_is_valid_openapi_31(schema: dict[str, Any]) -> None:
    validate(schema)
    assert schema["openapi"] == "3.1.0"


def test_schema_keeps_every_actions_limit(schema: dict[str, Any]) -> None:
    assert problems(schema) == []
    listed = list(operations(schema))
    assert 20 <= len(listed) <= limits.MAX_OPERATIONS
    ids = [operation["operationId"] for _, _, operation in listed]
    assert len(set(ids)) == len(ids)
    assert schema["components"]["securitySchemes"]["relayKey"] == {
        "type": "http",
        "scheme": "bearer",
    }
    assert "$ref" not in repr(schema)
    for path, method, operation in listed:
        assert len(operation["summary"]) <= limits.MAX_SUMMARY_CHARS
        assert len(operation["description"]) <= limits.MAX_SUMMARY_CHARS
        for parameter in operation.get("parameters", []):
            assert len(parameter.get("description", "")) <= limits.MAX_PARAM_DESCRIPTION_CHARS
            assert "example" in parameter or not parameter["required"]
        assert not re.search(r"\{(path|rest|.*:.*)\}", path)
        if method != "get":
            content = operation["requestBody"]["content"]
            assert set(content) == {"application/json"}
            assert content["application/json"]["schema"]["type"] == "object"
        for answer in operation["responses"].values():
            assert set(answer.get("content", {})) <= {"application/json"}


def test_consequential_marks_what_changes_or_removes_not_what_only_spends(
    schema: dict[str, Any],
) -> None:
    flags = {}
    for _, method, operation in operations(schema):
        name, flag = operation["operationId"], operation["x-openai-isConsequential"]
        flags[name] = flag
        if method == "get":
            assert flag is False, name
        else:
            assert flag is bool(CHANGES.match(name)), name
    assert [flags[name] for name in ONLY_SPEND] == [False] * len(ONLY_SPEND)
    removes = [name for name in flags if name.startswith(("delete", "cancel"))]
    assert len(removes) >= 4
    assert all(flags[name] for name in removes)
    assert schema_problems(schema) == []  # what `teamrelay check` holds a served schema to


def _examples(schema: dict[str, Any]) -> Iterator[tuple[Any, dict[str, Any]]]:
    """Every example with the schema it stands for: bodies, parameters, body fields."""
    for _, _, operation in operations(schema):
        for parameter in operation.get("parameters", []):
            if "example" in parameter:
                yield parameter["example"], parameter["schema"]
        media = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
        if "example" in media:
            yield media["example"], media["schema"]
        for field in media.get("schema", {}).get("properties", {}).values():
            for example in field.get("examples", []):
                yield example, field


def _as_sent(described: dict[str, Any]) -> dict[str, Any]:
    """ChatGPT wants `openaiFileIdRefs` declared as strings and sends objects in it."""
    refs = described.get("properties", {}).get("openaiFileIdRefs")
    if refs is None:
        return described
    properties = {**described["properties"], "openaiFileIdRefs": {**refs, "items": {}}}
    return {**described, "properties": properties}


def test_every_example_is_valid_for_its_own_schema(schema: dict[str, Any]) -> None:
    checked = 0
    for example, described in _examples(schema):
        Draft202012Validator(_as_sent(described)).validate(example)
        checked += 1
    assert checked >= 25
    batch = schema["paths"]["/actions/batches"]["post"]["requestBody"]["content"]
    batch_schema = batch["application/json"]["schema"]
    with pytest.raises(ValidationError):  # endpoint alone is not a batch
        Draft202012Validator(batch_schema).validate({"endpoint": "/v1/responses"})


def test_no_example_or_description_shows_a_path_with_placeholders(schema: dict[str, Any]) -> None:
    """A model copies `GET /v1/models/{model}` as it reads; the envelope refuses `{`."""
    for path, method, operation in operations(schema):
        texts = [
            operation["description"],
            *(repr(e) for e, _ in _examples({"paths": {path: {method: operation}}})),
        ]
        for text in texts:
            assert not PLACEHOLDER_PATH.search(text), (operation["operationId"], text)
    proxy = schema["paths"]["/actions/proxy"]["post"]["requestBody"]["content"]
    path_field = proxy["application/json"]["schema"]["properties"]["path"]
    assert path_field["examples"]


def test_servers_come_from_the_request_or_public_url(
    schema: dict[str, Any], relay: RunningRelay, fake_upstream: FakeUpstream
) -> None:
    assert schema["servers"] == [{"url": relay.url}]
    with relay_in_thread(fake_upstream.base_url, RELAY_PUBLIC_URL="https://relay.example") as r:
        served = httpx2.get(r.url + "/openapi.actions.json").json()
    assert served["servers"] == [{"url": "https://relay.example"}]


def test_yaml_and_json_are_the_same_schema(schema: dict[str, Any], relay: RunningRelay) -> None:
    answer = httpx2.get(relay.url + "/openapi.actions.yaml")
    assert answer.headers["content-type"].startswith("application/yaml")
    assert yaml.safe_load(answer.text) == schema


def test_file_parameters_are_named_for_chatgpt(schema: dict[str, Any]) -> None:
    upload = schema["paths"]["/actions/files/upload"]["post"]
    body = upload["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["openaiFileIdRefs"]["type"] == "array"
    assert body["properties"]["openaiFileIdRefs"]["items"] == {"type": "string"}


def test_problems_catch_each_broken_limit(schema: dict[str, Any]) -> None:
    broken = copy.deepcopy(schema)
    operation = broken["paths"]["/actions/ask"]["post"]
    operation["summary"] = "x" * 301
    operation["operationId"] = "getAnswer"
    del operation["x-openai-isConsequential"]
    broken["paths"]["/actions/{path}"] = {"post": {"operationId": "any", "summary": "s"}}
    found = "\n".join(problems(broken))
    for expected in ("summary", "repeated", "x-openai-isConsequential", "catch-all", "write"):
        assert expected in found


def test_policy_can_expose_an_operation_directly_and_block_a_wrapper(
    fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(
        '[families]\nimages = "blocked"\n'
        '[operations]\nretrieveModel = ["sdk", "proxy", "actions"]\n'
    )
    with relay_in_thread(fake_upstream.base_url, RELAY_POLICY_FILE=str(policy)) as r:
        served = httpx2.get(r.url + "/openapi.actions.json").json()
        image = httpx2.post(r.url + "/actions/images", json={"prompt": "x"}, headers=AUTH)
        model = httpx2.get(r.url + "/v1/models/gpt-5-mini", headers=AUTH)
    ids = {operation["operationId"] for _, _, operation in operations(served)}
    assert "generateImage" not in ids
    assert "openaiRetrieveModel" in ids
    assert image.status_code == 403
    assert model.status_code == 200
    assert problems(served) == []


def test_manifest_summarises_the_actions_surface(relay: RunningRelay) -> None:
    manifest = httpx2.get(relay.url + "/manifest").json()
    assert manifest["object"] == "manifest"
    actions = manifest["actions"]
    assert actions["schema_url"] == relay.url + "/openapi.actions.json"
    assert actions["operation_count"] == len(actions["operations"])
    assert actions["limits"]["max_payload_chars"] == limits.MAX_PAYLOAD_CHARS
    assert httpx2.get(relay.url + "/v1/manifest").json()["actions"] == actions
