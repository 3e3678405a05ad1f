"""Requests/s at N connections with wrk, POSTing the ~1 KB chat body with the relay's headers.

Every target gets the same request (including the relay key: direct and nginx ignore it), so
the only difference between the figures is what sits between wrk and the upstream.
"""

import hashlib
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench import payloads
from bench.processes import pinned_setup

SCRIPT = """\
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
"""


@dataclass
class WrkResult:
    rps: float
    latency_avg_ms: float
    requests: int
    errors: int
    non_2xx: int


def available() -> bool:
    return shutil.which("wrk") is not None


def write_script(tmp: Path, key: str, accept_encoding: str | None = None) -> Path:
    name = hashlib.sha256(f"{key} {accept_encoding}".encode()).hexdigest()[:8]
    path = tmp / f"chat-{name}.lua"
    body = payloads.chat_request().decode()
    script = SCRIPT.format(body=body, key=key)
    if accept_encoding is not None:
        script += f'wrk.headers["Accept-Encoding"] = "{accept_encoding}"\n'
    path.write_text(script)
    return path


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def parse(output: str) -> WrkResult:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    lat = re.search(r"Latency\s+([\d.]+)(us|ms|s|m)\b", output)
    total = re.search(r"(\d+) requests in", output)
    if rps is None or lat is None or total is None:
        raise RuntimeError(f"cannot read wrk output:\n{output}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        rps=float(rps.group(1)),
        latency_avg_ms=float(lat.group(1)) * _UNITS[lat.group(2)],
        requests=int(total.group(1)),
        errors=errors,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


def run(
    url: str,
    script: Path,
    connections: int,
    seconds: float,
    threads: int = 1,
    cpus: set[int] | None = None,
) -> WrkResult:
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "5s",
        "-s",
        str(script),
        url,
    ]
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        preexec_fn=pinned_setup(cpus),
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse(done.stdout)
