"""A team member points the official SDK at the relay and everything works as against OpenAI."""

from __future__ import annotations

import hashlib
import io
import os
import time
from pathlib import Path

import httpx2
import openai
import pytest

from fakeupstream import FakeUpstream
from servers import RELAY_KEY, UPSTREAM_KEY, RunningRelay


def test_chat_completion_plain(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="gpt-5-mini", messages=[{"role": "user", "content": "say hello to the team"}]
    )
    assert answer.choices[0].message.content
    assert answer.usage is not None
    assert answer.usage.prompt_tokens > 0


def test_chat_completion_streamed_with_usage_chunk(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-5-mini",
        messages=[{"role": "user", "content": "count to three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


def test_responses_plain_and_streamed(client: openai.OpenAI) -> None:
    answer = client.responses.create(model="gpt-5", input="summarise the plan")
    assert answer.output_text
    assert answer.usage is not None
    events = list(client.responses.create(model="gpt-5", input="stream it", stream=True))
    assert events[0].type == "response.created"
    completed = [e for e in events if e.type == "response.completed"]
    assert completed
    assert completed[0].response.usage is not None


def test_embeddings_and_models(client: openai.OpenAI) -> None:
    embedding = client.embeddings.create(model="text-embedding-3-small", input="team relay")
    assert len(embedding.data[0].embedding) > 0
    models = [m.id for m in client.models.list()]
    assert "gpt-5" in models
    assert client.models.retrieve("gpt-5").id == "gpt-5"


def test_a_5_mb_file_round_trips_byte_identical(client: openai.OpenAI) -> None:
    content = os.urandom(5 * 1024 * 1024)
    created = client.files.create(file=("data.jsonl", io.BytesIO(content)), purpose="assistants")
    downloaded = client.files.content(created.id).read()
    assert hashlib.sha256(downloaded).hexdigest() == hashlib.sha256(content).hexdigest()
    assert client.files.retrieve(created.id).bytes == len(content)
    assert client.files.delete(created.id).deleted


def test_upload_parts_complete_and_cancel_without_body(
    client: openai.OpenAI, relay: RunningRelay, upstream: FakeUpstream
) -> None:
    parts = [os.urandom(300_000), os.urandom(200_000)]
    upload = client.uploads.create(
        bytes=sum(map(len, parts)), filename="big.bin", mime_type="text/plain", purpose="assistants"
    )
    part_ids = [client.uploads.parts.create(upload.id, data=part).id for part in parts]
    done = client.uploads.complete(upload.id, part_ids=part_ids)
    assert done.status == "completed"
    assert done.file is not None
    assert client.files.content(done.file.id).read() == b"".join(parts)

    second = client.uploads.create(
        bytes=10, filename="x.txt", mime_type="text/plain", purpose="assistants"
    )
    # Raw HTTP: the SDK always sends a content type; the point is a call with none and no body.
    answer = httpx2.post(
        f"{relay.base_url}/uploads/{second.id}/cancel",
        headers={"Authorization": f"Bearer {RELAY_KEY}"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "cancelled"
    received = upstream.log[-1]
    assert received.path.endswith("/cancel")
    assert received.body_len == 0
    assert received.header("content-type") is None


def test_batch_runs_and_its_output_downloads(client: openai.OpenAI) -> None:
    line = (
        b'{"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions", '
        b'"body": {"model": "gpt-5-mini", "messages": [{"role": "user", "content": "hi"}]}}\n'
    )
    batch_input = client.files.create(file=("in.jsonl", io.BytesIO(line)), purpose="batch")
    batch = client.batches.create(
        input_file_id=batch_input.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    for _ in range(100):
        batch = client.batches.retrieve(batch.id)
        if batch.status == "completed":
            break
        time.sleep(0.05)
    assert batch.status == "completed"
    assert batch.output_file_id
    output = client.files.content(batch.output_file_id).read()
    assert b'"custom_id": "r1"' in output or b'"custom_id":"r1"' in output


def test_speech_streams_to_a_file_byte_identical(
    client: openai.OpenAI, upstream: FakeUpstream, tmp_path: Path
) -> None:
    target = tmp_path / "speech.mp3"
    request = {"model": "tts-1", "voice": "alloy", "input": "hello team"}
    with client.audio.speech.with_streaming_response.create(**request) as response:  # type: ignore[arg-type]
        response.stream_to_file(target)
    direct = httpx2.post(
        f"{upstream.base_url}/audio/speech",
        json=request,
        headers={"Authorization": f"Bearer {UPSTREAM_KEY}"},
    )
    assert target.read_bytes() == direct.content
    assert len(direct.content) > 100_000


def test_transcription_upload(client: openai.OpenAI) -> None:
    audio = io.BytesIO(os.urandom(50_000))
    result = client.audio.transcriptions.create(model="whisper-1", file=("a.mp3", audio))
    assert result.text


def test_image_generation(client: openai.OpenAI) -> None:
    image = client.images.generate(model="gpt-image-1", prompt="a relay baton")
    assert image.data
    assert image.data[0].b64_json


def test_unknown_object_raises_not_found_with_upstream_message(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.files.retrieve("file-does-not-exist")
    assert "file-does-not-exist" in str(caught.value)
