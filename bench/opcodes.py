"""`python -m bench.opcodes`: Python bytecodes per request of the relay's event-loop thread.

Timed figures on a shared 2-core machine move 10-25 % between runs; a count of bytecodes does
not, so it shows what a change to the hot path did. It misses C code (parsers, the database)
and scheduling, so it complements the timed bench rather than replacing it.

The relay runs as a child (`--serve`) with a tracer that SIGUSR1 starts and SIGUSR2 stops; the
parent drives the ~1 KB chat request over 8 keep-alive connections and prints bytecodes per
request by package, then the busiest functions.
"""

import argparse
import collections
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from bench import client, payloads
from bench.processes import Child, free_port, running, wait_http, wait_tcp
from bench.relays import CORE_ENV, REPO, member_key, relay_env, upstream_child

CONNECTIONS = 8


def _serve(port: int, out: Path, app: str) -> None:
    """The relay, as `teamrelay serve` runs it, with the signal-driven opcode counter."""
    import uvicorn

    from teamrelay.config import load_settings
    from teamrelay.observability.logs import logging_config

    counts: collections.Counter[tuple[str, int, str]] = collections.Counter()

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        if event == "opcode":
            code = frame.f_code
            counts[(code.co_filename, code.co_firstlineno, code.co_name)] += 1
        return trace

    def start(*_: object) -> None:
        sys.settrace(trace)

    def stop(*_: object) -> None:
        sys.settrace(None)
        out.write_text(json.dumps([[*key, n] for key, n in counts.items()]))

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    settings = load_settings()
    uvicorn.run(
        app,
        factory=True,
        port=port,
        loop="uvloop",
        http="httptools",
        log_config=logging_config(settings.log_format, "info"),
        access_log=False,
        proxy_headers=False,
        server_header=False,
        date_header=False,
    )


def _drive(port: int, key: str, requests: int) -> None:
    request = client.build_request(
        "POST", payloads.CHAT_PATH, port, payloads.chat_request(), "application/json", key
    )

    def one_connection() -> None:
        with client.Connection(port) as conn:
            for _ in range(requests // CONNECTIONS):
                if conn.exchange(request).status != 200:
                    raise RuntimeError("the relay refused a bench request")

    threads = [threading.Thread(target=one_connection) for _ in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _package(filename: str) -> str:
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0]
    return "teamrelay" if "/teamrelay/" in filename else "stdlib"


def _report(rows: list[list[Any]], requests: int, top: int) -> str:
    by_package: collections.Counter[str] = collections.Counter()
    by_function: collections.Counter[str] = collections.Counter()
    for filename, line, name, n in rows:
        by_package[_package(filename)] += n
        short = filename.split("site-packages/")[-1].split("/src/")[-1]
        by_function[f"{short}:{line} {name}"] += n
    total = sum(by_package.values())
    lines = [f"bytecodes per request: {total / requests:,.0f}"]
    lines += [
        f"  {name:20s} {n / requests:7,.0f}  {n / total:6.1%}"
        for name, n in by_package.most_common()
    ]
    lines += [f"{n / requests:9.1f}  {name}" for name, n in by_function.most_common(top)]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.opcodes", description=__doc__)
    p.add_argument("--requests", type=int, default=1000, help="counted requests (after 500)")
    p.add_argument("--core", action="store_true", help="ledger, metrics and request log off")
    p.add_argument("--member", action="store_true", help="a member's key with rpm and tpm")
    p.add_argument("--relay-env", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--top", type=int, default=30, help="functions to list")
    p.add_argument(
        "--app",
        default="teamrelay.app:create_app",
        help="the ASGI app factory (bench.alternatives:bare_aiohttp for the bare pass-through)",
    )
    p.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        _serve(args.serve, args.out, args.app)
        return 0
    with tempfile.TemporaryDirectory(prefix="teamrelay-opcodes-") as name:
        tmp = Path(name)
        up_port, port = free_port(), free_port()
        upstream = upstream_child(tmp, up_port)
        with running(upstream):
            wait_tcp(upstream, up_port)
            env = relay_env(up_port, tmp, [*(CORE_ENV if args.core else ()), *args.relay_env])
            env["PYTHONPATH"] = os.pathsep.join(filter(None, (env.get("PYTHONPATH"), str(REPO))))
            key = member_key(env, tmp) if args.member else payloads.RELAY_KEY
            counts = tmp / "counts.json"
            argv = [sys.executable, "-m", "bench.opcodes", "--serve", str(port), "--out", counts]
            argv += ["--app", args.app]
            relay = Child("relay", [str(a) for a in argv], tmp / "relay.log", env=env, cwd=tmp)
            with running(relay):
                wait_http(relay, port, "/health")
                _drive(port, key, 500)
                os.kill(relay.pid, signal.SIGUSR1)
                _drive(port, key, args.requests)
                time.sleep(0.7)  # the batches written behind the requests, too
                os.kill(relay.pid, signal.SIGUSR2)
                deadline = time.monotonic() + 10
                while not counts.exists() and time.monotonic() < deadline:
                    time.sleep(0.05)
            print(_report(json.loads(counts.read_text()), args.requests, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
