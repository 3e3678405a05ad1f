"""The relay's upstream is a real nginx with TLS from a private CA (`RELAY_UPSTREAM_CA_FILE`)
that closes idle connections after 1 s and every connection after 3 requests, as load balancers
in front of an API do. A thousand mixed SDK calls (JSON, SSE streams, uploads, reads), with
pauses past the idle limit, all succeed, and no POST reaches the API twice."""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import trustme

from fakeupstream import FakeUpstream
from servers import RELAY_KEY, relay_in_thread

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
CALLS = 1000
CONCURRENCY = 8

CONF = """
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream fake {{ server 127.0.0.1:{upstream_port}; keepalive 8; }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {tmp}/server.pem;
        ssl_certificate_key {tmp}/server.key;
        keepalive_timeout 1s;
        keepalive_requests 3;
        client_max_body_size 0;
        location / {{
            proxy_pass http://fake;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_request_buffering off;
            proxy_buffering off;
        }}
    }}
}}
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def nginx(upstream: FakeUpstream, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """nginx's https base URL in front of the fake upstream, and the CA file that trusts it."""
    if not Path(NGINX).exists():
        pytest.skip("nginx is not installed")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(tmp_path / "server.key")
    cert.cert_chain_pems[0].write_to_path(tmp_path / "server.pem")
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    port = _free_port()
    upstream_port = upstream.base_url.removesuffix("/v1").rsplit(":", 1)[1]
    conf = tmp_path / "nginx.conf"
    conf.write_text(CONF.format(tmp=tmp_path, port=port, upstream_port=upstream_port))
    process = subprocess.Popen(
        [NGINX, "-c", str(conf), "-p", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert process.poll() is None, (tmp_path / "error.log").read_text()
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)
        yield f"https://127.0.0.1:{port}/v1", tmp_path / "ca.pem"
    finally:
        process.terminate()
        process.wait(10)


async def _call(sdk: openai.AsyncOpenAI, kind: int, index: int) -> str:
    """One SDK call; returns the method it made."""
    if kind == 0:
        chat = await sdk.chat.completions.create(
            model="gpt-5-mini", messages=[{"role": "user", "content": f"hello {index}"}]
        )
        assert chat.choices[0].message.content
        return "POST"
    if kind == 1:
        stream = await sdk.chat.completions.create(
            model="gpt-5-mini",
            messages=[{"role": "user", "content": f"stream {index}"}],
            stream=True,
        )
        chunks = [chunk async for chunk in stream]
        assert chunks
        return "POST"
    if kind == 2:
        made = await sdk.files.create(
            file=(f"notes-{index}.jsonl", b'{"a": 1}\n' * 200), purpose="assistants"
        )
        assert made.id
        return "POST"
    models = await sdk.models.list()
    assert models.data is not None
    return "GET"


async def test_a_thousand_mixed_calls_through_a_strict_nginx_all_succeed_none_resent(
    nginx: tuple[str, Path], upstream: FakeUpstream
) -> None:
    base_url, ca_file = nginx
    rng = random.Random(17)
    kinds = [rng.randrange(4) for _ in range(CALLS)]
    sent = {"POST": 0, "GET": 0}
    with relay_in_thread(base_url, RELAY_UPSTREAM_CA_FILE=str(ca_file)) as relay:
        async with openai.AsyncOpenAI(
            base_url=relay.base_url, api_key=RELAY_KEY, max_retries=0, timeout=20
        ) as sdk:
            for start in range(0, CALLS, 100):
                batch = kinds[start : start + 100]
                semaphore = asyncio.Semaphore(CONCURRENCY)

                async def one(kind: int, index: int) -> str:
                    async with semaphore:
                        return await _call(sdk, kind, index)

                methods = await asyncio.gather(
                    *(one(kind, start + i) for i, kind in enumerate(batch))
                )
                for method in methods:
                    sent[method] += 1
                if start // 100 % 3 == 1:
                    await asyncio.sleep(1.1)  # every pooled connection is past nginx's idle limit
    posts = [r for r in upstream.log if r.method == "POST"]
    assert sent["POST"] + sent["GET"] == CALLS
    assert len(posts) == sent["POST"]
