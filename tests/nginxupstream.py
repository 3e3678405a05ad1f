"""A real nginx in front of the fake upstream, with TLS from a private CA and the strict
keep-alive limits of load balancers in front of an API (idle 1 s, 3 requests a connection).
WebSocket upgrades pass through it. Without nginx the test is skipped, or fails under
RELAY_REQUIRE_SERVICES=1 (CI, whose `.ci/run` installs nginx)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import trustme

from dbfixtures import services_unavailable

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

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
    map $http_upgrade $connection_upgrade {{ default upgrade; "" ""; }}
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
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
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


@contextlib.contextmanager
def nginx_upstream(upstream_base_url: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """nginx's https base URL in front of `upstream_base_url`, and the CA file that trusts it."""
    if not Path(NGINX).exists():
        services_unavailable("nginx is not installed")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(tmp_path / "server.key")
    cert.cert_chain_pems[0].write_to_path(tmp_path / "server.pem")
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    port = _free_port()
    upstream_port = upstream_base_url.removesuffix("/v1").rsplit(":", 1)[1]
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
