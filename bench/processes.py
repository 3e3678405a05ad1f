"""Child processes of the bench: started pinned, watched for readiness, always stopped.

Every child gets its own session (so stopping it stops what it spawned, e.g. nginx's worker or
extra relay workers) and PR_SET_PDEATHSIG, so a bench killed with SIGKILL leaves nothing behind.
"""

import contextlib
import ctypes
import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_plan(no_pin: bool = False) -> tuple[set[int] | None, set[int] | None]:
    """(CPUs for the proxy under test, CPUs for upstream + load generator + this client)."""
    cpus = sorted(os.sched_getaffinity(0))
    if no_pin or len(cpus) < 2:
        return None, None
    return {cpus[0]}, set(cpus[1:])


def pinned_setup(cpus: set[int] | None) -> Callable[[], None]:
    def setup() -> None:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if cpus:
            os.sched_setaffinity(0, cpus)

    return setup


class Child:
    """A started process with its log file; `stop()` ends its whole process group."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log: Path,
        cpus: set[int] | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=pinned_setup(cpus),
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout)
        else:
            # The leader is gone but its group (e.g. uvicorn workers) may not be.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def running(child: Child) -> Iterator[Child]:
    try:
        yield child
    finally:
        child.stop()


def wait_tcp(child: Child, port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        child.check_alive()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{child.name} not listening on {port}:\n{child.tail()}"
                ) from None
            time.sleep(0.05)


def wait_http(child: Child, port: int, path: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        child.check_alive()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", path)
            status = conn.getresponse().status
            if status == 200:
                return
            last = f"status {status}"
        except OSError as exc:
            last = str(exc)
        finally:
            conn.close()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{child.name} GET {path}: {last}:\n{child.tail()}")
        time.sleep(0.1)
