"""A redeploy (SIGTERM) lets open streams finish and keeps their ledger rows."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx2
from sqlalchemy import text

from fakeupstream import FakeUpstream
from servers import RELAY_KEY, relay_process
from teamrelay.ledger.db import create_engine

STREAMS = 20
CHAT = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "a b c"}], "stream": True}


async def test_sigterm_during_twenty_streams_lets_all_finish_and_record(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.faults("/v1/chat/completions", sse_events=15, sse_interval=0.1)
    url = f"sqlite+aiosqlite:///{tmp_path}/drain.db"
    results: list[bytes | Exception] = []
    started = threading.Barrier(STREAMS + 1)

    def stream(base_url: str) -> None:
        try:
            with httpx2.stream(
                "POST",
                base_url + "/chat/completions",
                json=CHAT,
                headers={"Authorization": f"Bearer {RELAY_KEY}"},
                timeout=30,
            ) as response:
                chunks = response.iter_bytes()
                first = next(chunks)
                started.wait(10)
                results.append(first + b"".join(chunks))
        except Exception as exc:
            results.append(exc)

    with relay_process(
        upstream.base_url, RELAY_DATABASE_URL=url, RELAY_DRAIN_SECONDS="20"
    ) as relay:
        assert relay.process is not None
        threads = [threading.Thread(target=stream, args=(relay.base_url,)) for _ in range(STREAMS)]
        for thread in threads:
            thread.start()
        started.wait(10)
        relay.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        for thread in threads:
            thread.join(30)
        drained = time.monotonic() - signalled
        relay.process.wait(30)
    assert len(results) == STREAMS
    assert all(isinstance(r, bytes) and r.endswith(b"data: [DONE]\n\n") for r in results), results
    assert drained < 20
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(text("SELECT status, aborted FROM ledger"))).all()
    finally:
        await engine.dispose()
    assert len(rows) == STREAMS
    assert all(status == 200 and not aborted for status, aborted in rows)
