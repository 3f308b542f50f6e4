"""Breaker: the state machine with a manual clock, and a Hypothesis property
over random call/outcome sequences checking the module's invariants."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from livecast.core.breaker import Breaker, BreakerState

CLOSED, OPEN, HALF = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def fail(b: Breaker, times: int, now: float) -> None:
    for _ in range(times):
        assert b.allow(now)
        b.record(False, now)


def test_opens_after_threshold_consecutive_failures() -> None:
    b = Breaker(3, 5.0)
    fail(b, 2, 100.0)
    assert b.state is CLOSED and b.failures == 2
    fail(b, 1, 100.0)
    assert b.state is OPEN
    assert not b.allow(100.0) and not b.allow(104.999)


def test_a_success_resets_the_count() -> None:
    b = Breaker(3, 5.0)
    fail(b, 2, 0.0)
    assert b.allow(0.0)
    b.record(True, 0.0)
    fail(b, 2, 0.0)
    assert b.state is CLOSED and b.failures == 2


def test_half_open_grants_one_probe_and_a_success_closes() -> None:
    b = Breaker(1, 5.0)
    fail(b, 1, 10.0)
    assert b.blocked(14.0) and not b.allow(14.0)
    assert not b.blocked(15.0)
    assert b.allow(15.0)
    assert b.state is HALF
    assert b.blocked(15.0) and not b.allow(16.0)  # one probe at a time
    b.record(True, 16.0)
    assert b.state is CLOSED and b.allow(16.0)


def test_a_failed_probe_reopens_for_a_new_cooldown() -> None:
    b = Breaker(2, 5.0)
    fail(b, 2, 0.0)
    assert b.allow(5.0)
    b.record(False, 6.0)
    assert b.state is OPEN
    assert not b.allow(10.9) and b.allow(11.0)


def test_an_unreported_probe_stops_blocking_after_the_cooldown() -> None:
    b = Breaker(1, 5.0)
    fail(b, 1, 0.0)
    assert b.allow(5.0)  # the probe's caller is cancelled and never reports
    assert not b.allow(9.9)
    assert b.allow(10.0) and b.state is HALF


def test_threshold_zero_never_opens() -> None:
    b = Breaker(0, 5.0)
    fail(b, 1000, 0.0)
    assert b.state is CLOSED and b.allow(0.0)


def test_negative_values_are_refused() -> None:
    with pytest.raises(ValueError):
        Breaker(-1, 1.0)
    with pytest.raises(ValueError):
        Breaker(1, -1.0)


steps = st.lists(st.tuples(st.sampled_from(["call", "ok", "fail"]),
                           st.floats(min_value=0, max_value=4, allow_nan=False)), max_size=80)


@given(threshold=st.integers(0, 4), cooldown=st.floats(0.5, 6), steps=steps)
def test_invariants_over_random_runs(threshold: int, cooldown: float,
                                     steps: list[tuple[str, float]]) -> None:
    b = Breaker(threshold, cooldown)
    now, run = 0.0, 0  # run: consecutive failures recorded while CLOSED
    last_probe: float | None = None
    for kind, dt in steps:
        now += dt
        if kind == "call":
            predicted = not b.blocked(now)
            was = b.state
            assert b.allow(now) is predicted
            if predicted and was is not CLOSED:
                # at most one probe per cooldown
                assert last_probe is None or now >= last_probe + cooldown
                last_probe = now
            continue
        was = b.state
        b.record(kind == "ok", now)
        if kind == "ok":
            run = 0
            assert b.state is CLOSED
        elif was is CLOSED:
            run += 1
            opened = threshold > 0 and run >= threshold
            assert b.state is (OPEN if opened else CLOSED)
            if opened:
                run = 0
        else:
            assert b.state is OPEN
        if b.state is OPEN:
            assert b.blocked(now) is (cooldown > 0)
