"""`teamrelay check` proves a deployment: it passes on a healthy relay and names what broke."""

from __future__ import annotations

import json
import re

import httpx2
import pytest
from typer.testing import CliRunner, Result

from fakeupstream import FakeUpstream
from servers import RELAY_KEY, UPSTREAM_KEY, RunningRelay, free_socket
from teamrelay.actions.limits import MAX_OPERATIONS
from teamrelay.check.actions_schema import schema_problems
from teamrelay.check.gates import actions_schema
from teamrelay.check.probe import GateFailed, Probe
from teamrelay.cli import app

ALL_GATES = [
    "health",
    "models",
    "response",
    "response stream",
    "files",
    "uploads",
    "batch",
    "actions schema",
    "relay headers",
]


def _check(relay_url: str, *options: str, key: str = RELAY_KEY) -> Result:
    arguments = ["check", "--base-url", relay_url, "--timeout", "10", *options]
    return CliRunner().invoke(app, arguments, env={"RELAY_CHECK_KEY": key, "COLUMNS": "200"})


def _outcomes(result: Result) -> dict[str, dict[str, object]]:
    report = json.loads(result.stdout)
    return {gate["gate"]: gate for gate in report["gates"]}


def _failures(result: Result) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith("FAIL ")]


def test_check_passes_against_a_healthy_relay(relay: RunningRelay, upstream: FakeUpstream) -> None:
    result = _check(relay.url)
    assert result.exit_code == 0, result.output
    assert re.search(r"^\d passed, 0 failed, [12] skipped$", result.stdout, re.MULTILINE)
    assert not _failures(result)
    assert RELAY_KEY not in result.output


def test_check_with_slow_runs_a_batch_and_reports_json(
    relay: RunningRelay, upstream: FakeUpstream
) -> None:
    result = _check(relay.base_url, "--slow", "--json", "--batch-wait", "20")
    assert result.exit_code == 0, result.output
    outcomes = _outcomes(result)
    assert list(outcomes) == ALL_GATES
    schema = outcomes.pop("actions schema")
    assert {name: gate["status"] for name, gate in outcomes.items()} == dict.fromkeys(
        outcomes, "pass"
    )
    if schema["status"] == "skip":
        assert schema["detail"] == "not served (GET /openapi.actions.json answered 404)"
    else:
        assert schema["status"] == "pass", schema["detail"]
    assert "2 requests answered" in str(outcomes["batch"]["detail"])
    assert not upstream.store.files, "the check left files behind"


def test_check_names_a_failing_content_download(
    relay: RunningRelay, upstream: FakeUpstream
) -> None:
    upstream.faults("/v1/files/*", method="GET", status=500, message="disk on fire")
    result = _check(relay.url)
    assert result.exit_code == 1
    failures = _failures(result)
    assert failures[0].startswith("FAIL files: files.content: 500 ")
    assert "disk on fire (relay request req_relay_" in failures[0]
    assert [line.split(":")[0] for line in failures] == ["FAIL files", "FAIL uploads"]
    assert not upstream.store.files, "the failed gates left files behind"


def test_check_names_a_stream_dropped_midway(relay: RunningRelay, upstream: FakeUpstream) -> None:
    upstream.faults("/v1/responses", drop_after_events=3)
    result = _check(relay.url)
    assert result.exit_code == 1
    assert _failures(result) == [
        "FAIL response stream: responses.create(stream=True): The upstream stream broke."
    ]


def test_check_finds_an_upstream_key_echoed_in_a_header(
    relay: RunningRelay, upstream: FakeUpstream
) -> None:
    upstream.faults("/v1/models", headers={"x-debug-auth": f"Bearer {UPSTREAM_KEY}"})
    result = _check(relay.url)
    assert result.exit_code == 1
    assert _failures(result) == [
        "FAIL relay headers: an upstream-key-looking value (sk-…) came back in the headers "
        "of GET /v1/models"
    ]
    assert UPSTREAM_KEY not in result.output


def test_check_names_a_batch_that_does_not_finish_in_time(
    relay: RunningRelay, upstream: FakeUpstream
) -> None:
    upstream.store.batch_delay = 30
    result = _check(relay.url, "--slow", "--batch-wait", "0.3", "--json")
    assert result.exit_code == 1
    batch = _outcomes(result)["batch"]
    assert batch["status"] == "fail"
    assert "still validating after 0.3 s; cancelled it" in str(batch["detail"])
    assert [b["status"] for b in upstream.store.batches.values()] == ["cancelling"]


def test_check_with_a_wrong_key_fails_every_keyed_gate(
    relay: RunningRelay, upstream: FakeUpstream
) -> None:
    result = _check(relay.url, "--json", key="tr-wrong-key-123456")
    assert result.exit_code == 1
    outcomes = _outcomes(result)
    assert outcomes["health"]["status"] == "pass"
    assert str(outcomes["models"]["detail"]).startswith("models.list: 401 ")
    assert not upstream.log, "a wrong key reached the upstream"


def test_check_against_nothing_says_it_could_not_reach_the_relay() -> None:
    with free_socket() as sock:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        result = _check(url, "--json")
    assert result.exit_code == 1
    assert str(_outcomes(result)["health"]["detail"]).startswith(
        "GET /health: could not reach the relay: ConnectError"
    )
    assert _outcomes(result)["relay headers"]["detail"] == "no response from the relay to judge"


def _schema(operations: int, **operation: object) -> dict[str, object]:
    paths = {
        f"/op{n}": {"post": {"operationId": f"op{n}", "summary": "Do it.", **operation}}
        for n in range(operations)
    }
    return {
        "openapi": "3.1.0",
        "paths": paths,
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


def test_an_actions_schema_within_the_limits_has_no_problems() -> None:
    assert schema_problems(_schema(MAX_OPERATIONS)) == []


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        (_schema(MAX_OPERATIONS + 1), "31 operations (the limit is 30)"),
        (_schema(2, operationId="same"), "operationId same repeats (POST /op0, POST /op1)"),
        (_schema(1, summary="x" * 301), "POST /op0 summary has 301 characters (limit 300)"),
        (
            _schema(1, parameters=[{"name": "q", "in": "query", "description": "y" * 701}]),
            "POST /op0 parameter q description has 701 characters (limit 700)",
        ),
        (
            {**_schema(1), "components": {}},
            "no bearer security scheme (components.securitySchemes)",
        ),
        ({"paths": {}}, "the schema has no operations"),
    ],
)
def test_an_actions_schema_past_a_limit_is_named(schema: dict[str, object], problem: str) -> None:
    assert problem in schema_problems(schema)


def _probe_serving(schema: dict[str, object]) -> Probe:
    """A probe whose raw client answers every request with `schema` (no network at all)."""
    probe = Probe("http://relay.test", RELAY_KEY, timeout=1, batch_wait=1)
    probe.raw.close()
    probe.raw = httpx2.Client(
        transport=httpx2.MockTransport(lambda _: httpx2.Response(200, json=schema))
    )
    return probe


def test_the_actions_schema_gate_passes_a_schema_within_the_limits() -> None:
    probe = _probe_serving(_schema(3))
    try:
        assert actions_schema(probe) == "3 operations, unique operationIds, bearer auth"
    finally:
        probe.close()


def test_the_actions_schema_gate_names_the_first_problem_and_counts_the_rest() -> None:
    probe = _probe_serving({**_schema(MAX_OPERATIONS + 1, operationId="same"), "components": {}})
    try:
        with pytest.raises(GateFailed) as failed:
            actions_schema(probe)
    finally:
        probe.close()
    assert str(failed.value) == (
        "GET /openapi.actions.json: 31 operations (the limit is 30) (and 31 more)"
    )
