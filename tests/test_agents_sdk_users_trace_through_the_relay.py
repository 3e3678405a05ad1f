"""A member runs an OpenAI Agents SDK app against the relay: its model calls and its trace
export (`POST /v1/traces/ingest`) both go through the relay, reach OpenAI with the upstream key,
and no relay key leaves the relay; a header the client names in `Connection` stops there too."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import openai
import pytest

from fakeupstream import FakeUpstream
from servers import RELAY_KEY, UPSTREAM_KEY, RunningRelay, relay_in_thread

agents = pytest.importorskip("agents")
processors = pytest.importorskip("agents.tracing.processors")


@pytest.fixture
def relay(upstream: FakeUpstream) -> Iterator[RunningRelay]:
    with relay_in_thread(upstream.base_url) as running:
        yield running


async def test_an_agent_run_and_its_traces_reach_openai_with_the_upstream_key(
    relay: RunningRelay, upstream: FakeUpstream
) -> None:
    exporter = processors.BackendSpanExporter(
        api_key=RELAY_KEY, endpoint=relay.base_url + "/traces/ingest"
    )
    processor = processors.BatchTraceProcessor(exporter)
    agents.set_trace_processors([processor])
    client = openai.AsyncOpenAI(base_url=relay.base_url, api_key=RELAY_KEY, max_retries=0)
    try:
        model = agents.OpenAIResponsesModel(model="gpt-5-mini", openai_client=client)
        agent = agents.Agent(name="helper", instructions="Be brief.", model=model)
        result = await agents.Runner.run(agent, "Say hello.")
        assert result.final_output
        await asyncio.to_thread(processor.force_flush)
    finally:
        agents.set_trace_processors([])
        processor.shutdown()
        exporter.close()
        await client.close()
    [ingest] = [r for r in upstream.log if r.path == "/v1/traces/ingest"]
    ingest = upstream.wait_done(ingest)
    assert ingest.method == "POST"
    assert ingest.header("authorization") == f"Bearer {UPSTREAM_KEY}"
    assert "traces=v1" in (ingest.header("openai-beta") or "")
    assert any(r.path == "/v1/responses" for r in upstream.log)
    for received in upstream.log:
        assert all(RELAY_KEY not in value for _, value in received.headers)


async def test_a_header_named_in_connection_never_reaches_the_upstream(
    relay: RunningRelay, upstream: FakeUpstream
) -> None:
    host, port = relay.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"GET /v1/models HTTP/1.1\r\nhost: relay\r\n"
        b"authorization: Bearer %s\r\nconnection: keep-alive, x-hop-secret\r\n"
        b"x-hop-secret: for-the-relay-only\r\nx-end-to-end: kept\r\n\r\n" % RELAY_KEY.encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    writer.close()
    assert head.startswith(b"HTTP/1.1 200")
    received = upstream.wait_done(upstream.log[-1])
    assert received.header("x-end-to-end") == "kept"
    assert received.header("x-hop-secret") is None
