"""What every gate shares: the clients pointed at the deployment, and how a gate reports.

A gate is a function that takes the `Probe` and returns a short detail when it passes. It
fails by raising `GateFailed` with the one line an operator needs; `step` turns any error
inside a named step into that line, so gates read as the sequence of calls they make.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import httpx2
import openai

from teamrelay.check.wiretap import REQUEST_ID_HEADER, Wiretap

Status = Literal["pass", "fail", "skip"]
_MAX_LINE = 240


class GateFailed(Exception):
    """A gate did not hold; `str()` is the one line to print."""


class GateSkipped(Exception):
    """A gate that does not apply to this deployment; `str()` says why."""


@dataclass(frozen=True)
class Outcome:
    gate: str
    status: Status
    detail: str
    seconds: float


@dataclass
class Probe:
    """The deployment under check and the clients that talk to it, closed with `close()`."""

    root_url: str
    key: str
    timeout: float
    batch_wait: float
    model: str | None = None
    tap: Wiretap = field(init=False)
    raw: httpx2.Client = field(init=False)
    sdk: openai.OpenAI = field(init=False)

    def __post_init__(self) -> None:
        timeout = httpx2.Timeout(self.timeout, connect=min(self.timeout, 10.0))
        self.tap = Wiretap(httpx2.HTTPTransport())
        self.raw = httpx2.Client(transport=self.tap, timeout=timeout)
        self.sdk = openai.OpenAI(
            base_url=f"{self.root_url}/v1",
            api_key=self.key,
            organization=None,
            project=None,
            max_retries=0,
            timeout=timeout,
            http_client=httpx2.Client(transport=self.tap, timeout=timeout),
        )

    def close(self) -> None:
        self.sdk.close()
        self.raw.close()


def root_of(base_url: str) -> str:
    """The deployment's root, whether the operator gave it with or without `/v1`."""
    root = base_url.strip().rstrip("/")
    return root.removesuffix("/v1")


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MAX_LINE else line[: _MAX_LINE - 1] + "…"


def describe(exc: BaseException) -> str:
    """An exception as the line an operator reads: status, code and message, or the cause."""
    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        code = body.get("code") or body.get("type") or ""
        label = f"{exc.status_code} {code}".strip()
        request_id = exc.response.headers.get(REQUEST_ID_HEADER)
        suffix = f" (relay request {request_id})" if request_id else ""
        return _one_line(f"{label}: {body.get('message') or exc.message}{suffix}")
    if isinstance(exc, openai.APITimeoutError):
        return "timed out waiting for the relay"
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc
        return _one_line(f"could not reach the relay: {type(cause).__name__}: {cause}")
    if isinstance(exc, openai.APIError):
        return _one_line(exc.message)
    if isinstance(exc, httpx2.TimeoutException):
        return "timed out waiting for the relay"
    if isinstance(exc, httpx2.TransportError):
        return _one_line(f"could not reach the relay: {type(exc).__name__}: {exc}")
    return _one_line(f"{type(exc).__name__}: {exc}")


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    """Name the call in flight, so a failure says which one broke."""
    try:
        yield
    except (GateFailed, GateSkipped):
        raise
    except Exception as exc:
        raise GateFailed(f"{name}: {describe(exc)}") from exc


def run_gate(name: str, gate: Callable[[Probe], str], probe: Probe) -> Outcome:
    started = time.monotonic()
    status: Status = "fail"
    try:
        detail = gate(probe)
        status = "pass"
    except GateSkipped as skipped:
        detail, status = str(skipped), "skip"
    except GateFailed as failed:
        detail = str(failed)
    except Exception as exc:
        detail = describe(exc)
    return Outcome(name, status, detail, round(time.monotonic() - started, 3))
