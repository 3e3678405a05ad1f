"""What the fake upstream saw, kept so tests can assert on the wire traffic a relay produced."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .faults import Fault

BODY_KEEP_LIMIT = 1024 * 1024


@dataclass
class Received:
    """One request as it arrived on the socket; fields after `body` fill in while it is served."""

    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body_sha256: str = ""
    body_len: int = 0
    body: bytes | None = None
    disconnected_at: float | None = None
    finished_at: float | None = None
    started_at: float = field(default_factory=time.monotonic)
    body_completed_at: float | None = None
    request_id: str = ""
    status: int | None = None
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    events_sent_at: list[float] = field(default_factory=list)
    sent: bytearray = field(
        default_factory=bytearray
    )  # a streamed body's first MiB, or a compressed one, as on the wire
    dropped_at: float | None = None
    fault: Fault | None = None

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None

    def response_header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.response_headers:
            if key.lower() == lowered:
                return value
        return None

    @property
    def target(self) -> str:
        """The request target as on the wire: path plus `?query` when there is one."""
        return f"{self.path}?{self.query}" if self.query else self.path

    @property
    def done(self) -> bool:
        return (
            self.finished_at is not None
            or self.disconnected_at is not None
            or self.dropped_at is not None
        )


class Log(list[Received]):
    """The request log: a list whose changes wake up threads waiting in `wait_for`."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = threading.Condition()

    def add(self, received: Received) -> None:
        with self.changed:
            self.append(received)
            self.changed.notify_all()

    def touch(self) -> None:
        with self.changed:
            self.changed.notify_all()

    def wipe(self) -> None:
        with self.changed:
            self.clear()
            self.changed.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Block until `predicate()` holds; raise TimeoutError after `timeout` seconds."""
        with self.changed:
            if not self.changed.wait_for(predicate, timeout):
                raise TimeoutError(f"condition not met within {timeout}s")
