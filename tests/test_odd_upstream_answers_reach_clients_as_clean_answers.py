"""An upstream (or a middlebox in front of it) answers oddly: a status HTTP does not have, a
204 that claims a length. The client gets a clean 502 that says what happened, or the 204
without the length, and the relay's server logs no error for it."""

from __future__ import annotations

import logging

import httpx2
import openai
import pytest

from servers import RELAY_KEY, relay_in_thread
from test_connections import Peer, RawServer

AUTH = {"Authorization": f"Bearer {RELAY_KEY}"}


async def upstream(peer: Peer) -> None:
    while (received := await peer.request()) is not None:
        if received.request_line.startswith(b"POST"):
            await peer.send(b"HTTP/1.1 600 Beyond\r\ncontent-length: 0\r\n\r\n")
        else:
            await peer.send(b"HTTP/1.1 204 No Content\r\ncontent-length: 7\r\n\r\n")


class Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_an_odd_status_is_a_502_and_a_204_keeps_no_length() -> None:
    errors = Errors()
    logging.getLogger("uvicorn.error").addHandler(errors)
    try:
        async with RawServer(upstream) as server:
            with relay_in_thread(server.url()) as relay:
                async with openai.AsyncOpenAI(
                    base_url=relay.base_url, api_key=RELAY_KEY, max_retries=0
                ) as sdk:
                    with pytest.raises(openai.APIStatusError) as caught:
                        await sdk.chat.completions.create(
                            model="gpt-5-mini", messages=[{"role": "user", "content": "hi"}]
                        )
                async with httpx2.AsyncClient(headers=AUTH) as http:
                    emptied = await http.delete(relay.base_url + "/files/file-abc")
    finally:
        logging.getLogger("uvicorn.error").removeHandler(errors)
    assert caught.value.status_code == 502
    assert "answer was invalid" in caught.value.message
    assert (emptied.status_code, emptied.content) == (204, b"")
    assert "content-length" not in emptied.headers
    assert errors.records == []
