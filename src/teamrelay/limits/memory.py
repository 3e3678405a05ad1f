"""A `limits` storage in memory for one event loop: no locks, no expiry thread.

`limits.storage.MemoryStorage` locks every key and, while any counter lives, starts a
`threading.Timer` every 10 ms to expire entries. Under load that was about 40 thread starts a
second, each taking the GIL from the event loop, and about 600 bytecodes of a member's request
(bench/README.md). The relay touches its storage only from its event loop, so this one needs
neither: an entry expires when it is next read. It implements the library's storage interfaces
with the same semantics, so the library's strategies work on it unchanged (the tests compare
the two operation by operation).
"""

from __future__ import annotations

import time
from collections import deque
from itertools import repeat
from math import floor

from limits.storage import MovingWindowSupport, SlidingWindowCounterSupport, Storage

# Past this many keys, expired ones are dropped when another key is added.
_SWEEP_ABOVE = 10_000


class LoopMemoryStorage(Storage, MovingWindowSupport, SlidingWindowCounterSupport):
    """Counters hold a count and when it expires; moving windows a deque of hit times, oldest
    first; sliding windows `[window index, previous count, current count, expiry]` under one
    key, where the library's storages keep a key per window.

    The library wraps each interface method in an exception translator (one more call each);
    `add`, `enter` and `slide`, behind `incr`, `acquire_entry` and
    `acquire_sliding_window_entry`, are for the relay's hot path, which needs no translation.
    """

    STORAGE_SCHEME = None

    def __init__(self) -> None:
        super().__init__()
        self.counters: dict[str, _Count] = {}
        self.entries: dict[str, deque[float]] = {}
        self.windows: dict[str, list[int]] = {}
        self._longest = 0
        self._sweep_above = _SWEEP_ABOVE

    @property
    def base_exceptions(self) -> type[Exception]:
        return ValueError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return self.add(key, expiry, amount)

    def add(self, key: str, expiry: int, amount: int) -> int:
        now = time.time()
        held = self.counters.get(key)
        # As in the library's storages: a window starts when the count leaves zero.
        if held is not None and held.count and held.expires > now:
            held.count += amount
            return held.count
        if held is None and len(self.counters) > self._sweep_above:
            self._sweep(now)
        self.counters[key] = _Count(amount, now + expiry)
        return amount

    def correct(self, key: str, expiry: int, difference: int) -> None:
        """Adds `difference` to a live counter, never below zero (a refund never becomes
        credit); a positive one starts a window as `add` does. One lookup, for settling."""
        held = self.counters.get(key)
        if held is not None and held.count and held.expires > time.time():
            held.count = max(0, held.count + difference)
        elif difference > 0:
            self.add(key, expiry, difference)

    def get(self, key: str) -> int:
        held = self.counters.get(key)
        if held is None:
            return 0
        if held.expires <= time.time():
            del self.counters[key]
            return 0
        return held.count

    def get_expiry(self, key: str) -> float:
        now = time.time()
        held = self.counters.get(key)
        return held.expires if held is not None and held.expires > now else now

    def check(self) -> bool:
        return True

    def reset(self) -> int | None:
        held = max(len(self.counters), len(self.entries), len(self.windows))
        self.counters.clear()
        self.entries.clear()
        self.windows.clear()
        return held

    def clear(self, key: str) -> None:
        self.counters.pop(key, None)
        self.entries.pop(key, None)
        self.windows.pop(key, None)

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        return self.enter(key, limit, expiry, amount)

    def enter(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False
        now = time.time()
        entries = self._live_entries(key, now - expiry)
        if entries is None:
            if len(self.entries) > self._sweep_above:
                self._sweep(now)
            self._longest = max(self._longest, expiry)
            entries = self.entries[key] = deque()
        if len(entries) + amount > limit:
            return False
        entries.extend(repeat(now, amount))
        return True

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        now = time.time()
        entries = self._live_entries(key, now - expiry)
        if not entries:
            return now, 0
        return entries[0], len(entries)

    def _live_entries(self, key: str, since: float) -> deque[float] | None:
        entries = self.entries.get(key)
        if entries is not None:
            while entries and entries[0] < since:
                entries.popleft()
        return entries

    def acquire_sliding_window_entry(
        self, key: str, limit: int, expiry: int, amount: int = 1
    ) -> bool:
        return self.slide(key, limit, expiry, amount)

    def slide(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False
        now = time.time()
        window = self.windows.get(key)
        if window is None or window[0] != int(now / expiry):
            window = self._window(key, expiry, now)
        count = window[2]
        if window[1]:
            count = floor(window[1] * _previous_ttl(now, expiry) / expiry + count)
        if count + amount > limit:
            return False
        window[2] += amount
        return True

    def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        now = time.time()
        _, previous, current, _ = self._window(key, expiry, now)
        current_ttl = (1 - ((now / expiry) % 1)) * expiry + expiry
        return previous, _previous_ttl(now, expiry) if previous else 0.0, current, current_ttl

    def clear_sliding_window(self, key: str, expiry: int) -> None:
        self.windows.pop(key, None)

    def _window(self, key: str, expiry: int, now: float) -> list[int]:
        """The key's counts, moved on to the window `now` falls in."""
        index = int(now / expiry)
        window = self.windows.get(key)
        if window is None:
            if len(self.windows) > self._sweep_above:
                self._sweep(now)
            window = self.windows[key] = [index, 0, 0, expiry]
        elif window[0] != index:
            window[1] = window[2] if window[0] == index - 1 else 0
            window[2] = 0
            window[0] = index
        return window

    def _sweep(self, now: float) -> None:
        """Drops the keys whose every entry has expired."""
        self.counters = {key: held for key, held in self.counters.items() if held.expires > now}
        since = now - self._longest
        self.entries = {
            key: held for key, held in self.entries.items() if held and held[-1] >= since
        }
        self.windows = {
            key: held for key, held in self.windows.items() if (held[0] + 2) * held[3] > now
        }
        # Many live keys: sweep again only once they have doubled, not on every new key.
        live = max(len(self.counters), len(self.entries), len(self.windows))
        self._sweep_above = max(_SWEEP_ABOVE, 2 * live)


class _Count:
    __slots__ = ("count", "expires")

    def __init__(self, count: int, expires: float) -> None:
        self.count = count
        self.expires = expires


def _previous_ttl(now: float, expiry: int) -> float:
    """How much of the previous window still weighs, as the library's storages compute it."""
    return (1 - (((now - expiry) / expiry) % 1)) * expiry
