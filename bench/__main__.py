"""`python -m bench`: start the fast upstream, nginx and the relay, measure, print the table."""

import argparse
import contextlib
import dataclasses
import json
import os
import shlex
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from bench import client, nginx, payloads, wrk
from bench.memory import PeakRss
from bench.processes import Child, cpu_plan, free_port, running, wait_http, wait_tcp
from bench.relays import CORE_ENV, RELAY_CMD, REPO, member_key, relay_env, upstream_child
from bench.report import RELAY_TARGETS, TARGETS, Results, checks, notes, percentile, table

MEASUREMENTS = ("rps", "latency", "sse", "upload")


def _csv(allowed: tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        unknown = sorted(set(items) - set(allowed))
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {', '.join(allowed)}")
        return items

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure the relay against a direct connection and nginx on one fast upstream.",
    )
    p.add_argument(
        "--only",
        type=_csv(MEASUREMENTS),
        default=list(MEASUREMENTS),
        help=f"measurements to run, comma-separated ({','.join(MEASUREMENTS)})",
    )
    p.add_argument(
        "--targets",
        type=_csv(TARGETS),
        default=list(TARGETS),
        help=f"targets to measure, comma-separated ({','.join(TARGETS)})",
    )
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--duration", type=float, default=10.0, help="seconds of each wrk run")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of wrk warm-up per target")
    p.add_argument("--requests", type=int, default=3000, help="sequential requests for p50/p99")
    p.add_argument("--sse-requests", type=int, default=200)
    p.add_argument("--sse-events", type=int, default=20)
    p.add_argument(
        "--sse-gap-ms",
        type=float,
        default=1.0,
        help="upstream pause between SSE events after the first",
    )
    p.add_argument("--upload-mb", type=int, default=200)
    p.add_argument("--relay-workers", type=int, default=1)
    p.add_argument(
        "--relay-cmd",
        default=RELAY_CMD,
        help="command starting the relay (run in a temporary directory, paths relative to the "
        "repository); {port}, {workers} and {repo} are filled in",
    )
    p.add_argument(
        "--relay-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the relay (repeatable)",
    )
    p.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin: by default servers under test get CPU 0, everything else CPU 1",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat rps/latency/sse this many times, keeping each target's best figure",
    )
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    p.add_argument("--check", action="store_true", help="exit 1 if an acceptance check fails")
    args = p.parse_args(argv)
    for item in args.relay_env:
        if "=" not in item:
            p.error(f"--relay-env wants NAME=VALUE, got {item!r}")
    return args


@dataclasses.dataclass(frozen=True)
class Target:
    port: int
    key: str = payloads.RELAY_KEY


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _start_upstream(args: argparse.Namespace, tmp: Path, port: int, cpus: set[int] | None) -> Child:
    options = ("--sse-events", str(args.sse_events), "--sse-gap-ms", str(args.sse_gap_ms))
    return upstream_child(tmp, port, options, cpus)


def _start_relay(
    args: argparse.Namespace,
    tmp: Path,
    port: int,
    upstream_port: int,
    cpus: set[int] | None,
    name: str,
    extra_env: tuple[str, ...] = (),
) -> Child:
    argv = shlex.split(args.relay_cmd.format(port=port, workers=args.relay_workers, repo=REPO))
    if "/" in argv[0] and not os.path.isabs(argv[0]):
        argv[0] = str(REPO / argv[0])  # the relay runs in the temporary directory
    env = relay_env(upstream_port, tmp, [*args.relay_env, *extra_env])
    return Child(name, argv, tmp / f"{name}.log", cpus=cpus, env=env, cwd=tmp)


def _measure_rps(
    args: argparse.Namespace,
    results: Results,
    targets: dict[str, Target],
    tmp: Path,
    cpus: set[int] | None,
) -> None:
    for t, target in targets.items():
        script = wrk.write_script(tmp, target.key)
        url = f"http://127.0.0.1:{target.port}{payloads.CHAT_PATH}"
        wrk.run(url, script, args.connections, args.warmup, cpus=cpus)
        r = wrk.run(url, script, args.connections, args.duration, cpus=cpus)
        if r.requests == 0 or r.non_2xx:
            raise RuntimeError(f"wrk against {t}: {r.non_2xx}/{r.requests} non-2xx answers")
        results.rps[t] = max(results.rps.get(t, 0.0), r.rps)
        results.rps_rounds.setdefault(t, []).append(r.rps)
        results.rps_errors[t] = results.rps_errors.get(t, 0) + r.errors
        _say(
            f"rps {t}: {r.rps:.0f} ({r.requests} requests, avg {r.latency_avg_ms:.2f} ms,"
            f" {r.errors} socket errors)"
        )


def _measure_latency(
    args: argparse.Namespace, results: Results, targets: dict[str, Target]
) -> None:
    for t, target in targets.items():
        samples = client.latencies(target.port, args.requests, target.key)
        p50, p99 = statistics.median(samples), percentile(samples, 0.99)
        results.p50[t] = min(results.p50.get(t, p50), p50)
        results.p99[t] = min(results.p99.get(t, p99), p99)
        _say(f"latency {t}: p50 {p50:.3f} ms, p99 {p99:.3f} ms")


def _measure_sse(args: argparse.Namespace, results: Results, targets: dict[str, Target]) -> None:
    for t, target in targets.items():
        events = args.sse_events + 2
        samples = client.first_events(target.port, args.sse_requests, events, target.key)
        median = statistics.median(samples)
        results.ttfe[t] = min(results.ttfe.get(t, median), median)
        _say(f"sse {t}: first event median {median:.3f} ms")


def _measure_upload(
    args: argparse.Namespace,
    results: Results,
    targets: dict[str, Target],
    watched: tuple[str, Child] | None,
) -> None:
    """Every target uploads; the relay process of `watched` has its memory sampled."""
    size = args.upload_mb * 1024 * 1024
    for t, target in targets.items():
        if watched is not None and t == watched[0]:
            time.sleep(0.5)  # let the relay settle after the previous load
            with PeakRss(watched[1].pid) as rss:
                up = client.upload(target.port, size, target.key)
            results.rss_target = t
            results.rss_before_mb = rss.before / 2**20
            results.rss_peak_mb = rss.peak / 2**20
            if rss.kernel_peak is not None:
                results.rss_kernel_peak_mb = rss.kernel_peak / 2**20
            _say(
                f"upload {t} RSS: {rss.samples} samples, before {results.rss_before_mb:.1f} MB,"
                f" peak {results.rss_peak_mb:.1f} MB, kernel peak {results.rss_kernel_peak_mb} MB"
            )
        else:
            up = client.upload(target.port, size, target.key)
        results.upload_seconds[t] = up.seconds
        results.upload_intact[t] = up.intact
        _say(
            f"upload {t}: {up.sent / 2**20:.0f} MB in {up.seconds:.2f} s, "
            f"upstream got {up.received} bytes, intact={up.intact}"
        )


def _start_targets(
    args: argparse.Namespace,
    tmp: Path,
    up_port: int,
    stack: contextlib.ExitStack,
    proxy_cpus: set[int] | None,
) -> tuple[dict[str, Target], dict[str, Child]]:
    """The targets asked for, in TARGETS order; one relay process serves both of its keys."""
    wanted = [t for t in TARGETS if t in args.targets]
    member = None
    if any(RELAY_TARGETS[t][1] for t in wanted if t in RELAY_TARGETS):
        member = member_key(relay_env(up_port, tmp, args.relay_env), tmp)
    processes: dict[str, Child] = {}
    targets: dict[str, Target] = {}
    for t in wanted:
        if t == "direct":
            targets[t] = Target(up_port)
            continue
        if t == "nginx":
            targets[t] = Target(free_port())
            stack.enter_context(running(nginx.start(tmp, targets[t].port, up_port, proxy_cpus)))
            continue
        process, limited = RELAY_TARGETS[t]
        if process not in processes:
            port = free_port()
            env = CORE_ENV if process == "core" else ()
            child = _start_relay(args, tmp, port, up_port, proxy_cpus, process, env)
            stack.enter_context(running(child))
            wait_http(child, port, "/health")
            processes[process] = child
            targets[process] = Target(port)
        port = targets[process].port
        targets[t] = Target(port, member) if limited and member else Target(port)
    return {t: targets[t] for t in wanted}, processes


def run(args: argparse.Namespace) -> Results:
    proxy_cpus, client_cpus = cpu_plan(args.no_pin)
    if client_cpus:
        os.sched_setaffinity(0, client_cpus)
        _say(f"pinning: nginx/relay on CPU {proxy_cpus}, upstream + wrk + client on {client_cpus}")
    results = Results()
    with (
        tempfile.TemporaryDirectory(prefix="teamrelay-bench-") as tmp_name,
        contextlib.ExitStack() as stack,
    ):
        tmp = Path(tmp_name)
        up_port = free_port()
        upstream = stack.enter_context(running(_start_upstream(args, tmp, up_port, client_cpus)))
        wait_tcp(upstream, up_port)
        targets, processes = _start_targets(args, tmp, up_port, stack, proxy_cpus)
        _say(f"targets: {', '.join(f'{t}=:{target.port}' for t, target in targets.items())}")
        for round_ in range(1, args.rounds + 1):
            if args.rounds > 1:
                _say(f"round {round_}/{args.rounds}")
            if "rps" in args.only:
                _measure_rps(args, results, targets, tmp, client_cpus)
            if "latency" in args.only:
                _measure_latency(args, results, targets)
            if "sse" in args.only:
                _measure_sse(args, results, targets)
        if "upload" in args.only:
            watched = next(((t, processes[t]) for t in ("relay", "core") if t in processes), None)
            _measure_upload(args, results, targets, watched)
        for child in processes.values():
            child.check_alive()
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGHUP, _on_term)
    started = time.strftime("%Y-%m-%d %H:%M")
    load = os.getloadavg()[0]
    results = run(args)
    print(
        f"\nteamrelay bench, {started}, {os.cpu_count()} CPUs "
        f"(1-min load {load:.2f} before the run), "
        f"relay workers {args.relay_workers}, relay env {args.relay_env or 'default'}\n"
    )
    print(table(results))
    outcome = checks(results)
    if outcome:
        print()
    for text, ok in outcome:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    for line in notes(results):
        print(line)
    if args.json:
        doc = dataclasses.asdict(results) | {
            "started": started,
            "args": vars(args) | {"json": str(args.json)},
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2, default=str))
    return 1 if args.check and not all(ok for _, ok in outcome) else 0


if __name__ == "__main__":
    sys.exit(main())
