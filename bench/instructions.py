"""`python -m bench.instructions`: CPU instructions per request, counted by valgrind's callgrind.

On these shared machines one target's requests/s moves 10-30 % between rounds, and a ratio of
two such figures moves more. Instructions do not: callgrind counts them, the same for the same
code and inputs whatever else runs. They include C (uvloop, httptools, orjson, regular
expressions) where `bench.opcodes` sees only bytecodes, and exclude the kernel's share
(socket calls, wake-ups), which is the same for every key of one process, so a ratio of two
keys' counts is a little harsher than the timed one.

Each relay process (`core`: ledger, metrics and request log off; `relay`: as configured) runs
under callgrind; the bootstrap (admin) key and a member's key with limits take turns on one
keep-alive connection, and the counters are zeroed before and dumped after each turn.
"""

import argparse
import contextlib
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import client, payloads
from bench.processes import Child, free_port, running, wait_http, wait_tcp
from bench.relays import CORE_ENV, REPO, member_key, relay_env, upstream_child

PROCESSES = {"core": CORE_ENV, "relay": ()}
_TOTALS = re.compile(rb"^(?:totals|summary): (\d+)", re.M)


def _turn(conn: client.Connection, request: bytes, count: int) -> None:
    for _ in range(count):
        response = conn.exchange(request)
        if response.status != 200:
            raise RuntimeError(f"status {response.status}: {b''.join(response.body)[:300]!r}")


def _control(*argv: str) -> None:
    subprocess.run(["callgrind_control", *argv], capture_output=True, check=True)


def _measure(process: str, args: argparse.Namespace, tmp: Path, up_port: int) -> dict[str, int]:
    """Instructions per request of the admin key and the member's key, least of the rounds."""
    tmp = tmp / process  # a database of its own
    tmp.mkdir()
    env = relay_env(up_port, tmp, list(PROCESSES[process]))
    keys = {process: payloads.RELAY_KEY, f"{process} member": member_key(env, tmp)}
    port = free_port()
    out = tmp / f"{process}.callgrind"
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p"]
    argv += [str(REPO / ".venv/bin/teamrelay"), "serve", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--workers", "1"]
    best: dict[str, int] = {}
    with running(Child(process, argv, tmp / f"{process}.log", env=env, cwd=tmp)) as relay:
        wait_http(relay, port, "/health", timeout=300)
        requests = {
            name: client.build_request(
                "POST", payloads.CHAT_PATH, port, payloads.chat_request(), "application/json", key
            )
            for name, key in keys.items()
        }
        with client.Connection(port, timeout=120) as conn:
            for request in requests.values():
                _turn(conn, request, args.warmup)
            for round_ in range(args.rounds):
                for name, request in requests.items():
                    _control("-z", str(relay.pid))
                    _turn(conn, request, args.requests)
                    _control("-d", f"{name.replace(' ', '-')}-{round_}", str(relay.pid))
                    dump = max(tmp.glob(f"{out.name}.*"), key=lambda p: p.stat().st_mtime_ns)
                    found = _TOTALS.search(dump.read_bytes())
                    if found is None:
                        raise RuntimeError(f"no totals in {dump}")
                    per_request = int(found.group(1)) // args.requests
                    best[name] = min(best.get(name, per_request), per_request)
                    print(f"{name}: {per_request:,} instructions a request", file=sys.stderr)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", default="core,relay", help="core, relay or both")
    parser.add_argument("--requests", type=int, default=300, help="counted requests a turn")
    parser.add_argument("--warmup", type=int, default=200, help="requests a key before counting")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    started = time.strftime("%Y-%m-%d %H:%M")
    results: dict[str, int] = {}
    with (
        tempfile.TemporaryDirectory(prefix="teamrelay-instr-") as name,
        contextlib.ExitStack() as stack,
    ):
        tmp = Path(name)
        up_port = free_port()
        wait_tcp(stack.enter_context(running(upstream_child(tmp, up_port))), up_port)
        for process in args.processes.split(","):
            results |= _measure(process, args, tmp, up_port)
    print(f"\nteamrelay instructions a request (callgrind, user space), {started}\n")
    for name, count in results.items():
        print(f"{name:<14} {count:>9,}")
    for process in args.processes.split(","):
        member = results.get(f"{process} member")
        if member:
            ratio = results[process] / member
            print(f"{process}: admin/member {ratio:.3f}x (requests/s the member's key would keep)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
