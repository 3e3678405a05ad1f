"""nginx as the reference proxy: one worker, keep-alive pool to the upstream, no buffering.

Buffering is off both ways (`proxy_request_buffering`, `proxy_buffering`) because the relay
streams both ways too; everything nginx writes stays under the bench's temporary directory.
"""

import os
import shutil
from pathlib import Path

from bench.processes import Child, wait_tcp

CONFIG = """\
{user}worker_processes 1;
error_log {tmp}/error.log warn;
pid {tmp}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 1000000;
    upstream fast {{
        server 127.0.0.1:{upstream_port};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=1024;
        client_max_body_size 0;
        location / {{
            proxy_pass http://fast;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_request_buffering off;
            proxy_buffering off;
        }}
    }}
}}
"""


def available() -> bool:
    return shutil.which("nginx") is not None


def start(tmp: Path, port: int, upstream_port: int, cpus: set[int] | None) -> Child:
    root = tmp / "nginx"
    root.mkdir()
    # As root, nginx drops its worker to `nobody`, which could not write under our private tmp.
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = root / "nginx.conf"
    conf.write_text(CONFIG.format(user=user, tmp=root, port=port, upstream_port=upstream_port))
    child = Child(
        "nginx",
        ["nginx", "-c", str(conf), "-p", str(root), "-g", "daemon off;"],
        root / "stdout.log",
        cpus=cpus,
    )
    try:
        wait_tcp(child, port)
    except BaseException:
        child.stop()
        raise
    return child
