"""Resident memory of a server process tree while a load runs: sampled, and the kernel's peak.

Sampling every 20 ms can miss a short spike, so where Linux allows it the kernel's own high-water
mark (VmHWM) is reset before the load (`echo 5 > /proc/PID/clear_refs`) and read after it.
"""

import contextlib
import threading
from pathlib import Path

import psutil  # type: ignore[import-untyped]  # no stubs in the dev set


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def tree_rss(pid: int) -> int:
    """RSS of the process and all its descendants (uvicorn workers are children), in bytes."""
    total = 0
    for proc in _tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += proc.memory_info().rss
    return total


def _reset_hwm(pid: int) -> bool:
    try:
        for proc in _tree(pid):
            Path(f"/proc/{proc.pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _tree_hwm(pid: int) -> int:
    """Sum of each process's own peak RSS: an upper bound of the tree's peak."""
    total = 0
    for proc in _tree(pid):
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) * 1024
    return total


class PeakRss:
    """Context manager recording the highest tree RSS seen every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.before = tree_rss(pid)
        self.peak = self.before
        self.kernel_peak: int | None = None
        self.samples = 0
        self._hwm = _reset_hwm(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss(self.pid))
        if self._hwm:
            self.kernel_peak = _tree_hwm(self.pid)
