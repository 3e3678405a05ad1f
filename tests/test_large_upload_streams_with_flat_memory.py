"""A 200 MB multipart upload flows through the relay without the relay holding it."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator

import httpx2
import psutil

from fakeupstream import FakeUpstream
from servers import RELAY_KEY, relay_process

SIZE = 200 * 1024 * 1024
BLOCK = 1024 * 1024
BOUNDARY = "teamrelay-upload-test"


def _form(digest: hashlib._Hash) -> Iterator[bytes]:
    """The multipart body, generated block by block; `digest` sees every byte sent."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    block = bytes(range(256)) * (BLOCK // 256)
    for part in (head, *([block] * (SIZE // BLOCK)), tail):
        digest.update(part)
        yield part


def test_a_200_mb_upload_passes_with_flat_relay_memory(upstream: FakeUpstream) -> None:
    with relay_process(upstream.base_url) as relay:
        assert relay.process is not None
        process = psutil.Process(relay.process.pid)
        before = process.memory_info().rss
        peak = before
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.wait(0.01):
                peak = max(peak, process.memory_info().rss)

        sampler = threading.Thread(target=sample)
        sampler.start()
        digest = hashlib.sha256()
        try:
            answer = httpx2.post(
                relay.base_url + "/files",
                content=_form(digest),
                headers={
                    "Authorization": f"Bearer {RELAY_KEY}",
                    "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                },
                timeout=120,
            )
        finally:
            done.set()
            sampler.join()
    assert answer.status_code == 200, answer.text
    assert answer.json()["bytes"] == SIZE
    received = upstream.requests_to("/v1/files", "POST")[-1]
    assert received.body_sha256 == digest.hexdigest()
    growth_mb = (peak - before) / 2**20
    print(f"relay RSS {before / 2**20:.1f} MB -> peak {peak / 2**20:.1f} MB (+{growth_mb:.1f} MB)")
    assert growth_mb < 20
