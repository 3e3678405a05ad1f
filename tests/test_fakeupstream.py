"""The fake upstream driven directly with the official SDK: its shapes parse, its faults bite."""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import io
import json
import os
import socket
import struct
import time
from collections.abc import Iterator

import openai
import psutil
import pytest

from fakeupstream import REASONING_TOKENS, FakeUpstream, count_words, reply_words, speech_bytes

KEY = "sk-test-upstream-0000"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeUpstream]:
    with FakeUpstream(api_key=KEY) as fake:
        yield fake


@pytest.fixture
def fake(server: FakeUpstream) -> FakeUpstream:
    server.reset()
    return server


@pytest.fixture
def client(fake: FakeUpstream) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=fake.base_url, api_key=KEY, max_retries=0, timeout=10) as sdk:
        yield sdk


def raw_request(
    fake: FakeUpstream,
    method: str,
    target: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """A request sent byte for byte as given (path, header case and order), via http.client."""
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", f"127.0.0.1:{fake.port}")
        for name, value in headers or []:
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


# shapes the SDK parses


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    ids = [model.id for model in client.models.list()]
    assert {"gpt-5", "gpt-4o-mini", "text-embedding-3-small", "whisper-1"} <= set(ids)
    assert client.models.retrieve("gpt-5-mini").owned_by == "system"
    with pytest.raises(openai.NotFoundError, match="The model 'nope' does not exist"):
        client.models.retrieve("nope")


def test_chat_completion_reports_word_count_usage(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="gpt-4.1",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "what is the time"},
        ],
    )
    text = completion.choices[0].message.content
    assert text == " ".join(reply_words(["be brief", "what is the time"]))
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 6
    assert completion.usage.completion_tokens == count_words(text or "")
    assert completion.choices[0].finish_reason == "stop"


def test_chat_completion_of_a_reasoning_model_counts_reasoning_and_cache(
    client: openai.OpenAI,
) -> None:
    completion = client.chat.completions.create(
        model="gpt-5",
        messages=[{"role": "user", "content": "one two three four"}],
        prompt_cache_key="k",
        max_completion_tokens=3,
    )
    usage = completion.usage
    assert usage is not None
    assert usage.completion_tokens == 3 + REASONING_TOKENS
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == REASONING_TOKENS
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 2
    assert completion.choices[0].finish_reason == "length"


def test_chat_stream_has_usage_chunk_only_when_asked(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    plain = list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert all(chunk.usage is None for chunk in plain)
    assert plain[-1].choices[0].finish_reason == "stop"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in plain)
    assert text == " ".join(reply_words(["hi"]))

    with_usage = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    last = with_usage[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.prompt_tokens == 1
    assert last.usage.completion_tokens == count_words(text)
    wire = fake.wait_done(fake.log[-1])  # the client may read [DONE] before it is noted
    assert wire.response_header("content-type") == "text/event-stream; charset=utf-8"
    assert len(wire.events_sent_at) == len(with_usage) + 1  # and [DONE]


def test_responses_create_returns_output_text_and_usage(client: openai.OpenAI) -> None:
    response = client.responses.create(model="gpt-5", input="tell me a story", instructions="short")
    assert response.status == "completed"
    assert response.output_text == " ".join(reply_words(["short", "tell me a story"]))
    assert response.usage is not None
    assert response.usage.input_tokens == 5
    assert response.usage.output_tokens_details.reasoning_tokens == REASONING_TOKENS
    assert response.usage.input_tokens_details.cached_tokens == 0
    assert client.responses.retrieve(response.id).output_text == response.output_text


def test_responses_stream_emits_typed_events_ending_completed(client: openai.OpenAI) -> None:
    events = list(client.responses.create(model="gpt-4.1", input="hello there", stream=True))
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.output_text == deltas
    assert completed.response.usage is not None
    assert completed.response.usage.output_tokens == count_words(deltas)


def test_responses_sdk_stream_helper_accumulates(client: openai.OpenAI) -> None:
    with client.responses.stream(model="gpt-4.1", input="abc def") as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    assert final.output_text == " ".join(reply_words(["abc def"]))


def test_background_response_queues_then_completes(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    fake.store.background_delay = 0.2
    queued = client.responses.create(model="gpt-5-mini", input="later", background=True)
    assert queued.status == "queued"
    deadline = time.monotonic() + 3
    while client.responses.retrieve(queued.id).status != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    done = client.responses.retrieve(queued.id)
    assert done.output_text
    assert done.usage is not None

    other = client.responses.create(model="gpt-5-mini", input="never", background=True)
    assert client.responses.cancel(other.id).status == "cancelled"
    client.responses.delete(other.id)
    with pytest.raises(openai.NotFoundError, match="not found"):
        client.responses.retrieve(other.id)


def test_embeddings_decode_from_the_sdk_default_base64(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    result = client.embeddings.create(model="text-embedding-3-small", input=["a b", "c"])
    assert json.loads(fake.log[-1].body or b"")["encoding_format"] == "base64"
    assert len(result.data) == 2
    assert len(result.data[0].embedding) == 1536
    assert result.usage.prompt_tokens == 3
    floats = client.embeddings.create(
        model="text-embedding-3-small", input="a b", encoding_format="float", dimensions=8
    )
    assert floats.data[0].embedding == pytest.approx(result.data[0].embedding[:8], rel=1e-6)


def test_moderation_flags_violence(client: openai.OpenAI) -> None:
    result = client.moderations.create(input=["I will kill it", "hello"])
    assert [item.flagged for item in result.results] == [True, False]


def test_file_upload_downloads_byte_identical_and_lists(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    payload = os.urandom(300_000) + b"\r\n--not-a-boundary\r\n"
    created = client.files.create(file=("data.bin", payload), purpose="user_data")
    assert created.bytes == len(payload)
    assert created.filename == "data.bin"
    assert client.files.content(created.id).content == payload
    assert client.files.retrieve(created.id).purpose == "user_data"

    second = client.files.create(file=("b.jsonl", b"{}\n"), purpose="batch")
    page = client.files.list(limit=1)
    assert [f.id for f in page.data] == [second.id]
    assert page.has_more
    assert [f.id for f in client.files.list(order="asc")] == [created.id, second.id]
    assert [f.id for f in client.files.list(purpose="batch")] == [second.id]

    assert client.files.delete(created.id).deleted
    with pytest.raises(openai.NotFoundError, match=created.id):
        client.files.retrieve(created.id)


def test_large_multipart_body_is_hashed_not_kept(client: openai.OpenAI, fake: FakeUpstream) -> None:
    payload = os.urandom(8 * 1024 * 1024)
    created = client.files.create(file=("big.bin", payload), purpose="user_data")
    wire = fake.requests_to("/v1/files", "POST")[0]
    assert wire.body is None
    assert wire.body_len > len(payload)
    assert len(wire.body_sha256) == 64
    downloaded = client.files.content(created.id).content
    assert hashlib.sha256(downloaded).digest() == hashlib.sha256(payload).digest()


def test_uploads_complete_concatenates_parts_and_cancel_takes_no_body(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    pieces = [b"first-part|", b"second-part|", b"third"]
    upload = client.uploads.create(
        bytes=sum(map(len, pieces)),
        filename="joined.txt",
        mime_type="text/plain",
        purpose="assistants",
    )
    parts = [client.uploads.parts.create(upload.id, data=piece) for piece in pieces]
    done = client.uploads.complete(upload.id, part_ids=[part.id for part in parts])
    assert done.status == "completed"
    assert done.file is not None
    assert client.files.content(done.file.id).content == b"".join(pieces)

    other = client.uploads.create(
        bytes=3, filename="x", mime_type="text/plain", purpose="assistants"
    )
    assert client.uploads.cancel(other.id).status == "cancelled"
    bare = client.uploads.create(
        bytes=3, filename="y", mime_type="text/plain", purpose="assistants"
    )
    status, _, answer = raw_request(
        fake, "POST", f"/v1/uploads/{bare.id}/cancel", [("Authorization", f"Bearer {KEY}")]
    )
    assert (status, json.loads(answer)["status"]) == (200, "cancelled")
    assert fake.log[-1].header("content-type") is None


def test_batch_produces_one_output_line_per_input_line(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    lines = [
        {
            "custom_id": f"r{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"q {i}"}]},
        }
        for i in range(3)
    ]
    jsonl = "".join(json.dumps(line) + "\n" for line in lines).encode()
    input_file = client.files.create(file=("in.jsonl", jsonl), purpose="batch")
    batch = client.batches.create(
        input_file_id=input_file.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    deadline = time.monotonic() + 3
    while (batch := client.batches.retrieve(batch.id)).status != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert batch.request_counts is not None
    assert batch.request_counts.completed == 3
    assert batch.output_file_id is not None
    output = client.files.content(batch.output_file_id).text.splitlines()
    results = [json.loads(line) for line in output]
    assert [r["custom_id"] for r in results] == ["r0", "r1", "r2"]
    body = results[1]["response"]["body"]
    assert body["object"] == "chat.completion"
    assert body["usage"]["prompt_tokens"] == 2
    assert [b.id for b in client.batches.list()] == [batch.id]

    with pytest.raises(openai.NotFoundError):
        client.batches.create(
            input_file_id="file-missing", endpoint="/v1/chat/completions", completion_window="24h"
        )


def test_vector_store_search_matches_words_in_attached_files(client: openai.OpenAI) -> None:
    text = b"Cats purr softly.\n\nThe relay forwards bytes.\n\nDogs bark."
    uploaded = client.files.create(file=("notes.txt", text), purpose="assistants")
    store = client.vector_stores.create(name="notes")
    client.vector_stores.files.create(vector_store_id=store.id, file_id=uploaded.id)
    assert client.vector_stores.retrieve(store.id).file_counts.completed == 1
    assert [f.id for f in client.vector_stores.files.list(store.id)] == [uploaded.id]
    hits = list(client.vector_stores.search(store.id, query="relay bytes"))
    assert hits[0].file_id == uploaded.id
    assert hits[0].content[0].text == "The relay forwards bytes."
    assert client.vector_stores.delete(store.id).deleted


def test_speech_streams_deterministic_audio(client: openai.OpenAI, fake: FakeUpstream) -> None:
    audio = client.audio.speech.create(model="tts-1", voice="alloy", input="say this")
    assert audio.content == speech_bytes("say this")
    assert audio.response.headers["content-type"] == "audio/mpeg"
    assert fake.log[-1].response_header("transfer-encoding") == "chunked"


def test_transcription_describes_the_uploaded_audio(client: openai.OpenAI) -> None:
    result = client.audio.transcriptions.create(
        model="whisper-1", file=("clip.mp3", b"\x00" * 32000)
    )
    assert result.text == "Transcript of clip.mp3: 32000 bytes of audio."


def test_image_generation_returns_a_png(client: openai.OpenAI) -> None:
    result = client.images.generate(model="gpt-image-1", prompt="a red square")
    assert result.data is not None
    png = base64.b64decode(result.data[0].b64_json or "")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert struct.unpack(">II", png[16:24]) == (8, 8)


# auth, errors and the record of the wire


def test_wrong_key_is_refused_without_echoing_it(fake: FakeUpstream) -> None:
    wrong = openai.OpenAI(base_url=fake.base_url, api_key="sk-wrong-secret-9999", max_retries=0)
    with wrong, pytest.raises(openai.AuthenticationError) as caught:
        wrong.models.list()
    assert caught.value.code == "invalid_api_key"
    assert "sk-wrong-secret-9999" not in caught.value.message
    assert "Incorrect API key provided" in caught.value.message
    status, headers, _ = raw_request(fake, "GET", "/v1/models")
    assert status == 401
    assert headers["x-request-id"].startswith("req_")


def test_unknown_object_is_a_404_with_openai_error_shape(fake: FakeUpstream) -> None:
    status, _, body = raw_request(
        fake, "GET", "/v1/files/file-nope", [("Authorization", f"Bearer {KEY}")]
    )
    assert status == 404
    assert json.loads(body) == {
        "error": {
            "message": "No file found with id 'file-nope'.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


def test_every_response_carries_request_id_and_rate_limit_headers(fake: FakeUpstream) -> None:
    _, headers, _ = raw_request(fake, "GET", "/v1/models", [("Authorization", f"Bearer {KEY}")])
    assert headers["x-request-id"] == fake.log[-1].request_id
    for name in (
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens",
        "openai-processing-ms",
    ):
        assert headers[name]


def test_unknown_v1_operation_echoes_raw_path_query_and_body(fake: FakeUpstream) -> None:
    body = b'{"x": 1}'
    status, _, answer = raw_request(
        fake,
        "PUT",
        "/v1/things/a%2Fb%20c?z=1&a=%41",
        [
            ("Authorization", f"Bearer {KEY}"),
            ("X-Mixed-Case", "One"),
            ("content-type", "application/json"),
            ("x-mixed-case", "Two"),
        ],
        body,
    )
    assert status == 200
    assert json.loads(answer) == {
        "object": "echo",
        "method": "PUT",
        "path": "/v1/things/a%2Fb%20c",
        "query": "z=1&a=%41",
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "body_len": len(body),
        "content_type": "application/json",
    }
    wire = fake.log[-1]
    names = [name for name, _ in wire.headers]
    assert names[names.index("X-Mixed-Case") + 2] == "x-mixed-case"
    assert wire.header("X-MIXED-CASE") == "One"
    assert wire.body == body


def test_paths_outside_v1_are_unknown_urls(fake: FakeUpstream) -> None:
    status, _, body = raw_request(fake, "GET", "/nowhere")
    assert status == 404
    assert json.loads(body)["error"]["message"] == "Invalid URL (GET /nowhere)"


# faults


@pytest.mark.parametrize(
    ("status", "error_class", "message"),
    [
        (404, openai.NotFoundError, "gone fishing"),
        (429, openai.RateLimitError, "Rate limit reached for requests"),
        (500, openai.InternalServerError, "The server had an error"),
    ],
)
def test_status_faults_raise_the_matching_sdk_error(
    client: openai.OpenAI,
    fake: FakeUpstream,
    status: int,
    error_class: type[openai.APIStatusError],
    message: str,
) -> None:
    fake.faults(
        "/v1/chat/completions",
        status=status,
        message="gone fishing" if status == 404 else None,
        retry_after=3,
        times=1,
    )
    with pytest.raises(error_class, match=message) as caught:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == status
    assert caught.value.response.headers["retry-after"] == "3"
    ok = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert ok.choices


def test_prefix_fault_matches_every_path_below_it(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    fault = fake.faults("/v1/files*", status=503, times=2)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            client.files.list()
    assert client.files.list().data == []
    assert fault.hits == 2


def test_paced_sse_reaches_the_client_before_the_next_event_is_sent(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    fake.faults("/v1/chat/completions", sse_events=5, sse_interval=0.1)
    arrivals = []
    contents = []
    for chunk in client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True
    ):
        arrivals.append(time.monotonic())
        contents.append(chunk.choices[0].delta.content)
    sent = fake.wait_done(fake.log[-1]).events_sent_at
    assert len([c for c in contents if c]) == 5
    assert arrivals[0] < sent[1]
    assert sent[-1] - sent[0] >= 0.1 * (len(sent) - 1) * 0.9


def test_responses_stream_honours_event_count(client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.faults("/v1/responses", sse_events=7)
    events = list(client.responses.create(model="gpt-4.1", input="x", stream=True))
    assert len([e for e in events if e.type == "response.output_text.delta"]) == 7


def test_drop_after_events_cuts_the_stream_without_terminator(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    fake.faults("/v1/chat/completions", drop_after_events=3)
    stream = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True
    )
    received = [next(stream) for _ in range(3)]
    with pytest.raises(openai.APIConnectionError):
        next(stream)
    assert received[0].choices[0].delta.role == "assistant"
    wire = fake.wait_done(fake.log[-1])
    assert wire.dropped_at is not None
    assert wire.finished_at is None
    assert wire.disconnected_at is None


def test_drop_after_bytes_truncates_a_json_body(client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.faults("/v1/models", drop_after_bytes=20)
    with pytest.raises(openai.APIConnectionError):
        client.models.list()
    assert fake.log[-1].dropped_at is not None


def test_drop_after_bytes_truncates_a_download(client: openai.OpenAI, fake: FakeUpstream) -> None:
    created = client.files.create(file=("f.bin", os.urandom(200_000)), purpose="user_data")
    fake.faults(f"/v1/files/{created.id}/content", drop_after_bytes=100_000)
    with pytest.raises(openai.APIConnectionError):
        client.files.content(created.id)


def test_client_going_away_mid_stream_is_recorded_promptly(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    fake.faults("/v1/chat/completions", sse_events=20, sse_interval=1.0)
    stream = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True
    )
    next(iter(stream))
    stream.close()
    closed_at = time.monotonic()
    wire = fake.wait_done(fake.log[-1], timeout=2)
    assert wire.disconnected_at is not None
    assert wire.disconnected_at - closed_at < 0.25
    assert wire.finished_at is None


def test_delay_holds_back_the_response_headers(client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.faults("/v1/models", delay=0.3, times=1)
    started = time.monotonic()
    client.models.list()
    assert time.monotonic() - started >= 0.3


def test_hang_never_answers_and_the_client_timeout_is_seen(fake: FakeUpstream) -> None:
    fake.faults("/v1/models", hang=True)
    impatient = openai.OpenAI(base_url=fake.base_url, api_key=KEY, max_retries=0, timeout=0.3)
    with impatient, pytest.raises(openai.APITimeoutError):
        impatient.models.list()
    wire = fake.wait_done(fake.log[-1], timeout=2)
    assert wire.disconnected_at is not None


def test_json_is_compressed_when_accepted(client: openai.OpenAI, fake: FakeUpstream) -> None:
    auth = ("Authorization", f"Bearer {KEY}")
    status, headers, body = raw_request(
        fake, "GET", "/v1/models", [auth, ("Accept-Encoding", "gzip")]
    )
    assert status == 200
    assert headers["Content-Encoding"] == "gzip"
    assert json.loads(gzip.GzipFile(fileobj=io.BytesIO(body)).read())["object"] == "list"
    _, plain_headers, plain = raw_request(fake, "GET", "/v1/models", [auth])
    assert "Content-Encoding" not in plain_headers
    assert json.loads(plain)["object"] == "list"
    assert client.models.list().data


def test_client_vanishing_during_upload_is_recorded(fake: FakeUpstream) -> None:
    with socket.create_connection(("127.0.0.1", fake.port), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/files HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: 1000000\r\n\r\n" + b"x" * 1000
        )
        fake.wait_for(lambda: len(fake.log) == 1)
    wire = fake.wait_done(fake.log[-1], timeout=2)
    assert wire.disconnected_at is not None


def test_client_leaving_a_download_early_is_recorded(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    # Bigger than loopback socket buffers, so the server cannot have written it all already.
    created = client.files.create(file=("big.bin", os.urandom(32_000_000)), purpose="user_data")
    with client.files.with_streaming_response.content(created.id) as response:
        next(response.iter_bytes(1024))
    wire = fake.wait_done(fake.log[-1], timeout=2)
    assert wire.finished_at is None
    assert wire.disconnected_at is not None


def test_huge_upload_streams_to_disk_with_flat_memory(fake: FakeUpstream) -> None:
    size = 200 * 1024 * 1024
    block = os.urandom(1024 * 1024)
    head = (
        b'--B0UND\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nuser_data\r\n'
        b'--B0UND\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n"
    )
    tail = b"\r\n--B0UND--\r\n"
    whole = hashlib.sha256(head)
    process = psutil.Process()
    rss_before = process.memory_info().rss
    with socket.create_connection(("127.0.0.1", fake.port), timeout=30) as sock:
        sock.sendall(
            b"POST /v1/files HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {KEY}\r\n".encode()
            + b"Content-Type: multipart/form-data; boundary=B0UND\r\n"
            + f"Content-Length: {len(head) + size + len(tail)}\r\n\r\n".encode()
            + head
        )
        for _ in range(size // len(block)):
            sock.sendall(block)
            whole.update(block)
        sock.sendall(tail)
        whole.update(tail)
        wire = fake.wait_done(fake.requests_to("/v1/files")[0], timeout=30)
    assert process.memory_info().rss - rss_before < 64 * 1024 * 1024
    assert wire.status == 200
    assert wire.body is None
    assert wire.body_len == len(head) + size + len(tail)
    assert wire.body_sha256 == whole.hexdigest()
    stored = next(iter(fake.store.files.values()))
    assert stored.obj["bytes"] == size


async def test_async_client_streams_and_waits_without_blocking(fake: FakeUpstream) -> None:
    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key=KEY, max_retries=0) as sdk:
        stream = await sdk.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices[0].finish_reason == "stop"
    wire = await fake.wait_done_async(fake.log[-1])
    assert wire.finished_at is not None
