"""`python -m bench.compressed`: what reading usage from gzip answers costs the relay.

One relay with everything on (ledger, metrics, request log) and a member's key with rate
limits, so every answer's usage is read; wrk asks for `identity` and for `gzip` answers in
alternating rounds against the same relay and upstream. Prints each round's requests/s and
the median ratio gzip/identity.
"""

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from bench import payloads, wrk
from bench.processes import Child, cpu_plan, free_port, running, wait_http, wait_tcp
from bench.relays import REPO, member_key, relay_env, upstream_child


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.compressed", description=__doc__)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--connections", type=int, default=32)
    args = p.parse_args(argv)
    relay_cpus, client_cpus = cpu_plan()
    if client_cpus:  # as scripts/bench: the relay on its own CPU, upstream and wrk on the rest
        os.sched_setaffinity(0, client_cpus)
    with tempfile.TemporaryDirectory(prefix="bench-gzip-") as name:
        tmp = Path(name)
        upstream_port, relay_port = free_port(), free_port()
        env = relay_env(upstream_port, tmp, [])
        key = member_key(env, tmp)
        relay_argv = [
            str(REPO / ".venv/bin/teamrelay"),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(relay_port),
        ]
        upstream = upstream_child(tmp, upstream_port)
        relay = Child("relay", relay_argv, tmp / "relay.log", relay_cpus, env=env, cwd=tmp)
        with running(upstream), running(relay):
            wait_tcp(upstream, upstream_port)
            wait_http(relay, relay_port, "/health")
            url = f"http://127.0.0.1:{relay_port}{payloads.CHAT_PATH}"
            scripts = {c: wrk.write_script(tmp, key, c) for c in ("identity", "gzip")}
            rounds: dict[str, list[float]] = {c: [] for c in scripts}
            for script in scripts.values():
                wrk.run(url, script, args.connections, 2)
            for n in range(args.rounds):
                for coding, script in scripts.items():
                    r = wrk.run(url, script, args.connections, args.duration)
                    if r.requests == 0 or r.non_2xx:
                        raise RuntimeError(f"{coding}: {r.non_2xx}/{r.requests} non-2xx answers")
                    rounds[coding].append(r.rps)
                    print(f"round {n + 1} {coding}: {r.rps:,.0f} requests/s", file=sys.stderr)
    ratios = [g / i for g, i in zip(rounds["gzip"], rounds["identity"], strict=True)]
    print("| answers | requests/s (best) | each round |")
    print("| --- | ---: | --- |")
    for coding, values in rounds.items():
        print(f"| {coding} | {max(values):,.0f} | {' '.join(f'{v:,.0f}' for v in values)} |")
    print(f"\ngzip/identity per round: {' '.join(f'{r:.3f}' for r in ratios)}")
    print(f"median: {statistics.median(ratios):.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
