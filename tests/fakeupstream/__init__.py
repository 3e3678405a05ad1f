"""A realistic fake of the OpenAI API for tests: real sockets, streaming, state and faults.

    with FakeUpstream() as fake:                      # own thread + loop, 127.0.0.1:<free port>
        client = openai.OpenAI(base_url=fake.base_url, api_key="sk-test-upstream-0000")
        fake.faults("/v1/chat/completions", status=429, retry_after=1, times=1)
        ...
        wire = fake.wait_done(fake.log[-1])           # Received: raw path, headers, body hash

Usage figures are predictable: see `generation` (words in, words out).
"""

from .api_media import speech_bytes, tiny_png, transcript_text
from .faults import Fault
from .generation import (
    REASONING_TOKENS,
    chat_prompt,
    count_words,
    input_tokens,
    reply_words,
    responses_prompt,
)
from .records import Received
from .server import FakeUpstream

__all__ = [
    "REASONING_TOKENS",
    "FakeUpstream",
    "Fault",
    "Received",
    "chat_prompt",
    "count_words",
    "input_tokens",
    "reply_words",
    "responses_prompt",
    "speech_bytes",
    "tiny_png",
    "transcript_text",
]
