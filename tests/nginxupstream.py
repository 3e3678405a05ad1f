"""A real nginx in front of the fake upstream, with TLS from a private CA and the strict
keep-alive limits of load balancers in front of an API (idle 1 s, 3 requests a connection).
WebSocket upgrades pass through it. Without nginx the test is skipped, or fails under
RELAY_REQUIRE_SERVICES=1 (CI, whose `.ci/run` installs nginx)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from nginxserver import tls_nginx

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


@contextlib.contextmanager
def nginx_upstream(upstream_base_url: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """nginx's https base URL in front of `upstream_base_url`, and the CA file that trusts it."""
    upstream_port = upstream_base_url.removesuffix("/v1").rsplit(":", 1)[1]
    with tls_nginx(CONF, tmp_path, "127.0.0.1", upstream_port=upstream_port) as (port, ca):
        yield f"https://127.0.0.1:{port}/v1", ca
