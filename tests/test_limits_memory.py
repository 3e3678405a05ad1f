"""The relay's in-memory `limits` storage answers as the library's own `MemoryStorage` does."""

from __future__ import annotations

import threading
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from limits import RateLimitItemPerMinute, storage, strategies

from teamrelay.limits.memory import LoopMemoryStorage

EXPIRY = 10
# Ticks on a 0.3 s grid never land exactly `EXPIRY` after an earlier hit: at that instant the
# library's storage answers one way or the other depending on when its expiry thread ran.
_TICK = 0.3

_operations = st.one_of(
    st.tuples(st.just("tick"), st.integers(1, 50)),
    st.tuples(st.just("incr"), st.sampled_from("ab"), st.integers(-3, 5)),
    st.tuples(st.just("get"), st.sampled_from("ab")),
    st.tuples(st.just("expiry"), st.sampled_from("ab")),
    st.tuples(st.just("acquire"), st.sampled_from("cd"), st.integers(1, 5), st.integers(1, 3)),
    st.tuples(st.just("moving"), st.sampled_from("cd"), st.integers(1, 5)),
    st.tuples(st.just("slide"), st.sampled_from("ef"), st.integers(1, 8), st.integers(1, 3)),
    st.tuples(st.just("sliding"), st.sampled_from("ef")),
)


class _Clock:
    """`time.time` for both storages, moved by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _apply(store: Any, operation: tuple[Any, ...]) -> object:
    match operation:
        case ("incr", key, amount):
            return store.incr(key, EXPIRY, amount=amount)
        case ("get", key):
            return store.get(key)
        case ("expiry", key):  # after `get`, which drops an expired key from both
            return store.get(key), store.get_expiry(key)
        case ("acquire", key, limit, amount):
            return store.acquire_entry(key, limit, EXPIRY, amount)
        case ("moving", key, limit):
            start, count = store.get_moving_window(key, limit, EXPIRY)
            return (round(start, 6) if count else None), count
        case ("slide", key, limit, amount):
            return store.acquire_sliding_window_entry(key, limit, EXPIRY, amount)
        case ("sliding", key):
            return tuple(round(value, 6) for value in store.get_sliding_window(key, EXPIRY))
    raise AssertionError(operation)


@settings(max_examples=300, deadline=None)
@given(st.lists(_operations, max_size=60))
def test_every_operation_answers_as_the_librarys_memory_storage(
    operations: list[tuple[Any, ...]],
) -> None:
    clock = _Clock(1_700_000_000.15)
    with mock.patch("time.time", clock):
        ours, theirs = LoopMemoryStorage(), storage.MemoryStorage()
        try:
            for operation in operations:
                if operation[0] == "tick":
                    clock.now += operation[1] * _TICK
                    continue
                assert _apply(ours, operation) == _apply(theirs, operation), operation
        finally:
            theirs.timer.cancel()


def test_it_starts_no_thread() -> None:
    before = threading.active_count()
    store = LoopMemoryStorage()
    store.incr("k", 60)
    store.acquire_entry("m", 5, 60)
    store.acquire_sliding_window_entry("s", 5, 60)
    assert threading.active_count() == before


@pytest.mark.parametrize(
    "limiter",
    [
        strategies.FixedWindowRateLimiter,
        strategies.MovingWindowRateLimiter,
        strategies.SlidingWindowCounterRateLimiter,
    ],
)
def test_the_librarys_strategies_limit_and_report_with_it(limiter: Any) -> None:
    strategy = limiter(LoopMemoryStorage())
    item = RateLimitItemPerMinute(3)
    assert [strategy.hit(item, "key") for _ in range(4)] == [True, True, True, False]
    stats = strategy.get_window_stats(item, "key")
    assert stats.remaining == 0
    strategy.clear(item, "key")
    assert strategy.hit(item, "key")


def test_expired_keys_are_dropped_once_many_are_held() -> None:
    clock = _Clock(1_700_000_000.0)
    with (
        mock.patch("time.time", clock),
        mock.patch("teamrelay.limits.memory._SWEEP_ABOVE", 100),
    ):
        store = LoopMemoryStorage()
        for number in range(150):  # a sweep at 101 keys finds them all live
            store.incr(f"counter{number}", 60)
            store.acquire_entry(f"moving{number}", 5, 60)
            store.acquire_sliding_window_entry(f"sliding{number}", 5, 60)
        clock.now += 121
        for number in range(60):  # the next, at 203, finds the first 150 expired
            store.incr(f"late{number}", 60)
            store.acquire_entry(f"late{number}", 5, 60)
            store.acquire_sliding_window_entry(f"late{number}", 5, 60)
        assert (len(store.counters), len(store.entries), len(store.windows)) == (60, 60, 60)
        assert store.get_expiry("late0") == clock.now + 60
        assert store.get_expiry("counter0") == clock.now


def test_a_counter_given_back_to_zero_starts_a_new_window_on_its_next_hit() -> None:
    """As in the library's storages, Redis included: its window starts when it leaves zero."""
    clock = _Clock(1_700_000_000.0)
    with mock.patch("time.time", clock):
        store = LoopMemoryStorage()
        store.incr("tokens", 60, amount=5)
        store.incr("tokens", 60, amount=-5)
        clock.now += 30
        assert store.incr("tokens", 60, amount=2) == 2
        assert store.get_expiry("tokens") == clock.now + 60


def test_many_live_keys_are_not_swept_on_every_new_key() -> None:
    with mock.patch("teamrelay.limits.memory._SWEEP_ABOVE", 100):
        store = LoopMemoryStorage()
        with mock.patch.object(store, "_sweep", wraps=store._sweep) as sweep:
            for number in range(1_000):
                store.incr(f"counter{number}", 60)
        assert len(store.counters) == 1_000
        assert sweep.call_count <= 5  # at 101, 203, 407, 815 keys


def test_a_correction_refunds_never_below_zero_and_a_charge_starts_a_window() -> None:
    memory = LoopMemoryStorage()
    memory.add("k", 60, 300)
    memory.correct("k", 60, -270)
    assert memory.get("k") == 30
    memory.correct("k", 60, -500)  # more than is held: a refund is not credit
    assert memory.get("k") == 0
    memory.correct("fresh", 60, -5)
    assert memory.get("fresh") == 0
    memory.correct("fresh", 60, 40)
    assert memory.get("fresh") == 40
