"""The model allowlist: patterns, the readers that find a request's model, and the JSONL gate."""

from __future__ import annotations

import json

import pytest

from teamrelay.catalog.catalog import load_catalog
from teamrelay.catalog.models import JsonlModelGate, ModelAllowlist, model_from_json

OPS = load_catalog().by_id
GPT5 = ModelAllowlist.parse("gpt-5*")


@pytest.mark.parametrize(
    ("patterns", "model", "allowed"),
    [
        ("gpt-5*", "gpt-5", True),
        ("gpt-5*", "gpt-5-mini", True),
        ("gpt-5*", "gpt-4o", False),
        ("gpt-5*", "GPT-5", False),
        ("gpt-5*", "my-gpt-5", False),
        ("gpt-4o, o3", "o3", True),
        ("gpt-4o, o3", "o3-mini", False),
        ("*-mini", "gpt-4.1-mini", True),
        ("ft:gpt-4o:*", "ft:gpt-4o:org::abc", True),
        ("gpt-4.1", "gpt-4x1", False),
        ("gpt-[5]", "gpt-5", False),
        ("gpt-[5]", "gpt-[5]", True),
        ("gpt-?", "gpt-5", False),
    ],
)
def test_allowlist_matches_case_sensitively_with_star_wildcards(
    patterns: str, model: str, allowed: bool
) -> None:
    allowlist = ModelAllowlist.parse(patterns)
    assert allowlist.allows(model) is allowed
    assert allowlist.allows(model) is allowed


@pytest.mark.parametrize("value", [None, "", " , ,"])
def test_empty_allowlist_allows_every_model(value: str | None) -> None:
    allowlist = ModelAllowlist.parse(value)
    assert allowlist.is_open
    assert allowlist.allows("anything")
    assert allowlist.refusal(OPS["createResponse"], b"not json") is None


def test_allowlist_is_read_from_the_environment() -> None:
    allowlist = ModelAllowlist.from_env({"RELAY_MODEL_ALLOWLIST": "gpt-5*,o3"})
    assert allowlist.patterns == ("gpt-5*", "o3")
    assert ModelAllowlist.from_env({}).is_open


def test_allowlist_cache_stays_bounded() -> None:
    allowlist = ModelAllowlist.parse("gpt-5*")
    for n in range(10_000):
        allowlist.allows(f"model-{n}")
    assert len(allowlist._cache) <= 4096


@pytest.mark.parametrize(
    ("body", "model"),
    [
        (b'{"model": "gpt-5", "input": "hi"}', "gpt-5"),
        (b'{"input": {"model": "nested"}, "model": "o3"}', "o3"),
        (b'{"input": "no model"}', None),
        (b'{"input": {"model": "nested only"}}', None),
        (b'{"model": 5}', None),
        (b'{"model": null}', None),
        (b'{"mod\\u0065l": "gpt-4o"}', None),
        (b'["model"]', None),
        (b'{"model": "gpt-5"', None),
        (b"", None),
        (b'\xff"model"', None),
    ],
)
def test_model_from_json_reads_only_the_top_level_model(body: bytes, model: str | None) -> None:
    assert model_from_json(body) == model


def test_refusal_names_a_disallowed_model() -> None:
    body = json.dumps({"model": "gpt-4o", "messages": []}).encode()
    reason = GPT5.refusal(OPS["createChatCompletion"], body)
    assert reason is not None
    assert "gpt-4o" in reason
    assert GPT5.refusal(OPS["createChatCompletion"], b'{"model": "gpt-5-mini"}') is None


@pytest.mark.parametrize(
    "body",
    [b'{"input": "hi", "prompt": {"id": "pmpt_1"}}', b"not json", b'{"model": 1}', b"[]"],
)
def test_request_whose_model_cannot_be_read_is_refused(body: bytes) -> None:
    assert GPT5.refusal(OPS["createResponse"], body) is not None
    assert GPT5.refusal(OPS["createEmbedding"], body) is not None


def test_nested_model_paths_are_checked_too() -> None:
    bad_moderation = b'{"model": "gpt-5", "moderation": {"model": "omni-moderation-latest"}}'
    assert GPT5.refusal(OPS["createResponse"], bad_moderation) is not None
    assert GPT5.refusal(OPS["createResponse"], b'{"model": "gpt-5", "moderation": {}}') is None
    secret = OPS["create-realtime-client-secret"]
    assert GPT5.refusal(secret, b'{"session": {"type": "realtime", "model": "gpt-5-rt"}}') is None
    assert GPT5.refusal(secret, b'{"session": {"type": "realtime", "model": "gpt-4o-rt"}}')
    assert GPT5.refusal(secret, b'{"session": {"type": "realtime"}}') is not None
    assert GPT5.refusal(secret, b'{"session": "x"}') is not None
    assert GPT5.refusal(secret, b"nope") is not None


def test_operations_that_run_no_model_are_not_checked() -> None:
    assert GPT5.refusal(OPS["createVectorStore"], b'{"name": "x"}') is None
    assert GPT5.refusal(OPS["listModels"], b"") is None


def test_an_update_may_omit_its_model_but_not_name_a_disallowed_one() -> None:
    assert GPT5.refusal(OPS["modifyAssistant"], b'{"name": "renamed"}') is None
    assert GPT5.refusal(OPS["modifyAssistant"], b'{"model": "gpt-4o"}') is not None
    assert GPT5.refusal(OPS["modifyAssistant"], b"not json") is not None


def test_models_list_is_filtered_to_allowed_models() -> None:
    body = json.dumps(
        {
            "object": "list",
            "data": [
                {"id": "gpt-5", "object": "model"},
                {"id": "gpt-4o", "object": "model"},
                {"id": "gpt-5-mini", "object": "model"},
                {"object": "model"},
                "junk",
            ],
        }
    ).encode()
    filtered = json.loads(GPT5.filter_models_list(body))
    assert [m["id"] for m in filtered["data"]] == ["gpt-5", "gpt-5-mini"]
    assert filtered["object"] == "list"


def test_models_list_of_an_unexpected_shape_shows_nothing() -> None:
    assert json.loads(GPT5.filter_models_list(b"oops")) == {"object": "list", "data": []}
    assert json.loads(GPT5.filter_models_list(b'{"data": 1}'))["data"] == []
    open_list = ModelAllowlist()
    assert open_list.filter_models_list(b"untouched") == b"untouched"


def _line(model: object, custom_id: str = "r1") -> bytes:
    body = {"model": model, "input": "hi"} if model is not None else {"input": "hi"}
    entry = {"custom_id": custom_id, "method": "POST", "url": "/v1/responses", "body": body}
    return json.dumps(entry).encode() + b"\n"


def _feed_in_chunks(gate: JsonlModelGate, data: bytes, size: int) -> str | None:
    for start in range(0, len(data), size):
        refusal = gate.feed(data[start : start + size])
        if refusal is not None:
            return refusal
    return gate.finish()


@pytest.mark.parametrize("size", [1, 3, 7, 64, 10_000])
def test_jsonl_gate_accepts_allowed_models_in_any_chunking(size: int) -> None:
    data = _line("gpt-5") + b"\n  \n" + _line("gpt-5-mini", "r2") + _line("gpt-5", "r3")[:-1]
    gate = JsonlModelGate(GPT5)
    assert _feed_in_chunks(gate, data, size) is None
    assert gate.lines == 5


@pytest.mark.parametrize("size", [1, 5, 100, 10_000])
def test_jsonl_gate_finds_the_first_disallowed_model(size: int) -> None:
    data = _line("gpt-5") + _line("gpt-4o", "r2") + _line("o1", "r3")
    refusal = _feed_in_chunks(JsonlModelGate(GPT5), data, size)
    assert refusal is not None
    assert "line 2" in refusal
    assert "gpt-4o" in refusal


@pytest.mark.parametrize("line", [_line(None), _line(7), b"not json\n", b"[1]\n", b'{"body": 1}\n'])
def test_jsonl_gate_refuses_lines_whose_model_cannot_be_read(line: bytes) -> None:
    assert JsonlModelGate(GPT5).feed(line) is not None


def test_jsonl_gate_checks_the_last_line_without_newline() -> None:
    gate = JsonlModelGate(GPT5)
    assert gate.feed(_line("gpt-4o")[:-1]) is None
    assert gate.finish() is not None


def test_jsonl_gate_refuses_a_long_line_with_bounded_memory() -> None:
    gate = JsonlModelGate(GPT5, max_line=1000)
    chunk = b"x" * 300
    refusals = [gate.feed(chunk) for _ in range(10)]
    assert refusals[:3] == [None, None, None]
    assert refusals[3] is not None
    assert "longer than 1000 bytes" in refusals[3]
    assert len(gate._partial) == 0
    assert gate.feed(_line("gpt-5")) == refusals[3]
    assert gate.finish() == refusals[3]


def test_jsonl_gate_refuses_a_long_line_inside_one_chunk() -> None:
    gate = JsonlModelGate(GPT5, max_line=100)
    assert gate.feed(_line("gpt-5") + b"y" * 200 + b"\n") is not None


def test_jsonl_gate_with_an_open_allowlist_passes_everything() -> None:
    gate = JsonlModelGate(ModelAllowlist())
    assert gate.feed(b"anything at all\n" * 3) is None
    assert gate.finish() is None


@pytest.mark.parametrize(
    "body",
    [
        b'{"model": "gpt-5", "model": "gpt-4o"}',
        b'{"model": "gpt-5", "mod\\u0065l": "gpt-4o"}',
        b'{"model": "gpt-5", "moderation": {"model": "gpt-5", "model": "x"}}',
    ],
)
def test_a_model_named_twice_in_one_object_is_unresolvable(body: bytes) -> None:
    assert GPT5.refusal(OPS["createResponse"], body) is not None
    assert GPT5.refusal(OPS["createEmbedding"], body) is not None


def test_an_escaped_model_key_on_an_update_is_still_checked() -> None:
    assert GPT5.refusal(OPS["modifyAssistant"], b'{"mod\\u0065l": "gpt-4o"}') is not None
    assert GPT5.refusal(OPS["modifyAssistant"], b'{"mod\\u0065l": "gpt-5"}') is None


def test_escaped_text_alone_does_not_hide_the_model() -> None:
    body = b'{"model": "gpt-5", "input": "caf\\u00e9"}'
    assert model_from_json(body) == "gpt-5"
    assert GPT5.refusal(OPS["createEmbedding"], body) is None
