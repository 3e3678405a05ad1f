"""A real nginx started for a test, with TLS from a private CA: one way to start and stop it
for every test that puts nginx in front of something (the upstream, the relay)."""

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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def require_nginx() -> None:
    """Skips the test without nginx, or fails it under RELAY_REQUIRE_SERVICES=1."""
    if not Path(NGINX).exists():
        services_unavailable("nginx is not installed (apt-get install nginx)")


@contextlib.contextmanager
def tls_nginx(conf: str, tmp: Path, *names: str, **values: object) -> Iterator[tuple[int, Path]]:
    """nginx running `conf` (formatted with `tmp`, `port` and `values`), its certificate for
    `names` in tmp/server.pem and .key: its port and the CA file that trusts it. Skipped
    without nginx, or failing under RELAY_REQUIRE_SERVICES=1."""
    require_nginx()
    ca = trustme.CA()
    cert = ca.issue_cert(*names)
    cert.private_key_pem.write_to_path(tmp / "server.key")
    cert.cert_chain_pems[0].write_to_path(tmp / "server.pem")
    ca.cert_pem.write_to_path(tmp / "ca.pem")
    port = free_port()
    (tmp / "nginx.conf").write_text(conf.format(tmp=tmp, port=port, **values))
    process = subprocess.Popen(
        [NGINX, "-c", str(tmp / "nginx.conf"), "-p", str(tmp)],
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
                assert process.poll() is None, (tmp / "error.log").read_text()
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)
        yield port, tmp / "ca.pem"
    finally:
        process.terminate()
        process.wait(10)
