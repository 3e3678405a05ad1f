"""Misbehaviour the fake upstream can be told to show, per path and for a number of requests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class Fault:
    """One planned misbehaviour.

    Matching: `path` is the raw request path, exact or a prefix when it ends with `*`;
    `method` narrows it; `times` limits it to the next N matching requests (None: until
    cleared); `hits` counts the requests it applied to.

    Effects, in the order they apply once the body has been read and auth passed:
    - `delay`: seconds before anything is answered; `hang`: never answer;
    - `status`: answer this status in OpenAI's error shape (`message`, `error_type`,
      `error_code` override the usual ones; `retry_after` adds `retry-after`);
    - `sse_events`: the number of text deltas in a chat/responses stream; `sse_interval`:
      seconds between any two SSE events;
    - `drop_after_events` / `drop_after_bytes`: close the socket after that many SSE events
      or body bytes, with no terminating chunk;
    - `headers`: added to the response.
    """

    path: str
    method: str | None = None
    times: int | None = None
    status: int | None = None
    message: str | None = None
    error_type: str | None = None
    error_code: str | None = None
    retry_after: float | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    hang: bool = False
    sse_events: int | None = None
    sse_interval: float = 0.0
    drop_after_events: int | None = None
    drop_after_bytes: int | None = None
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        return path == self.path


class FaultBook:
    """The faults in force; the first matching fault with uses left wins."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times is not None and fault.hits >= fault.times:
                    continue
                if fault.matches(method, path):
                    fault.hits += 1
                    return fault
        return None

    def __iter__(self) -> Iterator[Fault]:
        with self._lock:
            return iter(list(self._faults))
