"""Run relays for tests: in a thread (fast, shares the test's process) or as a subprocess
(for memory figures and signals). Both listen on a free 127.0.0.1 port."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx2
import uvicorn

from teamrelay.app import create_app
from teamrelay.config import Settings

UPSTREAM_KEY = "sk-test-upstream-0000000000000000"
RELAY_KEY = "tr-test-alice-0000000000000000"
ADMIN = {"Authorization": f"Bearer {RELAY_KEY}"}  # a bootstrap key holds every scope


@dataclass
class RunningRelay:
    url: str
    process: subprocess.Popen[bytes] | None = None
    output: IO[bytes] | None = None  # a process's stdout and stderr

    @property
    def base_url(self) -> str:
        return self.url + "/v1"


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def relay_env(upstream_base_url: str, data_dir: str, **extra: str) -> dict[str, str]:
    """A relay's environment; its SQLite file lives in `data_dir` unless `extra` says otherwise."""
    return {
        "OPENAI_API_KEY": UPSTREAM_KEY,
        "OPENAI_BASE_URL": upstream_base_url,
        "RELAY_KEYS": RELAY_KEY,
        "RELAY_DATABASE_URL": f"sqlite+aiosqlite:///{data_dir}/relay.db",
        **extra,
    }


@contextlib.contextmanager
def relay_in_thread(upstream_base_url: str, **extra: Any) -> Iterator[RunningRelay]:
    with tempfile.TemporaryDirectory() as data_dir:
        env = relay_env(upstream_base_url, data_dir, RELAY_TUNE_GC="false", **extra)
        settings = Settings(_env_file=None, **env)  # type: ignore[call-arg]
        with _serve_in_thread(settings) as running:
            yield running


@contextlib.contextmanager
def _serve_in_thread(settings: Settings) -> Iterator[RunningRelay]:
    config = uvicorn.Config(
        create_app(settings),
        lifespan="on",
        log_level="warning",
        loop="uvloop",
        http="httptools",
        proxy_headers=False,  # as `teamrelay serve`: RELAY_TRUSTED_PROXIES decides
        server_header=False,
        date_header=False,
    )
    server = uvicorn.Server(config)
    sock = free_socket()
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("relay did not start")
        time.sleep(0.01)
    try:
        yield RunningRelay(f"http://127.0.0.1:{sock.getsockname()[1]}")
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextlib.contextmanager
def relay_process(
    upstream_base_url: str, log_level: str = "warning", **extra: str
) -> Iterator[RunningRelay]:
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    command = [str(Path(sys.executable).parent / "teamrelay"), "serve", "--host", "127.0.0.1"]
    with tempfile.TemporaryDirectory() as data_dir, tempfile.TemporaryFile() as output:
        env = {**os.environ, **relay_env(upstream_base_url, data_dir, **extra)}
        process = subprocess.Popen(
            [*command, "--port", str(port), "--log-level", log_level],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(url, process, output)
            yield RunningRelay(url, process, output)
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_healthy(url: str, process: subprocess.Popen[bytes], output: IO[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output.seek(0)
            raise RuntimeError(f"relay exited: {output.read().decode()}")
        with contextlib.suppress(httpx2.HTTPError):
            if httpx2.get(url + "/health", timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError("relay did not become healthy")
