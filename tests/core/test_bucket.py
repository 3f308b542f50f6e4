"""TokenBucket: refill, whole tokens, clock steps back, configure, and the rate bound."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livecast.core.bucket import EPSILON, TokenBucket

#: Float slack for the rate bound: the bucket may run EPSILON into debt, and
#: the witness sums the same products in a different order.
SLACK = 1e-6


class RateWitness:
    """Checks spec rooms.md invariant 1 over every window of take times, incrementally.

    With C the takes so far, I(t) the integral of the rate up to t and B(t) the
    burst in effect at t, every window [t_i, t_j] must satisfy
    C_j - C_(before i) <= B(t_i) + I(t_j) - I(t_i).  Rearranged:
    C_j - I(t_j) <= min over i <= j of (C_(before i) - I(t_i) + B(t_i)), a running
    minimum, so each take is checked against all earlier windows in O(1).
    """

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst, self.last = rate, burst, now
        self.integral = 0.0
        self.count = 0
        self.best = math.inf

    def _advance(self, now: float) -> None:
        self.integral += self.rate * (now - self.last)
        self.last = now

    def configure(self, rate: float, burst: float, now: float) -> None:
        self._advance(now)
        self.rate, self.burst = rate, burst

    def took(self, n: int, now: float) -> None:
        self._advance(now)
        self.best = min(self.best, self.count - self.integral + self.burst)
        self.count += n
        excess = self.count - self.integral - self.best
        assert excess <= SLACK, f"rate bound exceeded by {excess} at t={now}"


def test_starts_full_and_refills_at_rate() -> None:
    bucket = TokenBucket(rate=10, burst=5, now=100.0)
    assert bucket.available(100.0) == 5
    assert bucket.take_whole(100.0, limit=1000) == 5
    assert bucket.take_whole(100.0, limit=1000) == 0
    assert bucket.take_whole(100.25, limit=1000) == 2  # 2.5 tokens, whole ones only
    assert bucket.tokens == pytest.approx(0.5)
    assert bucket.take_whole(101.0, limit=3) == 3  # limited
    assert bucket.tokens == pytest.approx(5 - 3)  # capped at burst before taking


def test_refill_caps_at_burst() -> None:
    bucket = TokenBucket(rate=100, burst=3, now=0.0)
    bucket.refill(1000.0)
    assert bucket.tokens == 3


def test_clock_going_backwards_is_ignored() -> None:
    bucket = TokenBucket(rate=10, burst=10, now=50.0)
    assert bucket.take_whole(50.0, limit=10) == 10
    bucket.refill(40.0)
    assert bucket.tokens == 0
    assert bucket.take_whole(45.0, limit=10) == 0
    # refill counts from the latest time seen (50.0), not from the step back
    assert bucket.take_whole(50.2, limit=10) == 2
    bucket.refill(math.nan)
    assert bucket.available(50.2) == 0


def test_float_slack_counts_a_whole_token() -> None:
    bucket = TokenBucket(rate=40, burst=40, now=1000.0)
    bucket.take_whole(1000.0, limit=40)
    taken = [bucket.take_whole(1000.0 + k * 0.025, limit=100) for k in range(1, 401)]
    assert taken == [1] * 400


def test_try_take() -> None:
    bucket = TokenBucket(rate=1, burst=2, now=0.0)
    assert bucket.try_take(0.0)
    assert bucket.try_take(0.0)
    assert not bucket.try_take(0.0)
    assert not bucket.try_take(0.5)  # half a token is not enough, and is kept
    assert bucket.try_take(1.0)
    assert not bucket.try_take(100.0, n=3)  # more than burst: never
    assert bucket.tokens == 2
    assert bucket.try_take(100.0, n=2)


def test_configure_refills_at_old_rate_then_caps() -> None:
    bucket = TokenBucket(rate=10, burst=10, now=0.0)
    bucket.take_whole(0.0, limit=10)
    bucket.configure(rate=100, burst=20, now=0.5)  # 5 tokens earned at the old rate
    assert bucket.tokens == pytest.approx(5)
    assert (bucket.rate, bucket.burst) == (100, 20)
    assert bucket.take_whole(0.6, limit=100) == 15
    bucket.refill(10.0)
    bucket.configure(rate=1, burst=4, now=10.0)
    assert bucket.tokens == 4  # kept, capped at the new burst


@pytest.mark.parametrize(
    ("rate", "burst"),
    [(-1, 5), (1, 0), (1, 0.5), (math.inf, 5), (1, math.nan), (math.nan, 1)],
)
def test_rejects_bad_settings(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst, now=0.0)
    bucket = TokenBucket(1, 1, now=0.0)
    with pytest.raises(ValueError):
        bucket.configure(rate, burst, now=0.0)


def test_rejects_negative_amounts() -> None:
    bucket = TokenBucket(1, 1, now=0.0)
    with pytest.raises(ValueError):
        bucket.take_whole(0.0, limit=-1)
    with pytest.raises(ValueError):
        bucket.try_take(0.0, n=-1)


_dts = st.one_of(
    st.just(0.0),
    st.floats(0.0, 0.5),
    st.sampled_from([0.001, 0.025, 0.1, 1.0, 3.0]),
)
_ops = st.one_of(
    st.tuples(st.just("whole"), _dts, st.integers(0, 100)),
    st.tuples(st.just("try"), _dts, st.integers(0, 5)),
    st.tuples(st.just("configure"), _dts, st.tuples(st.integers(0, 50), st.integers(1, 50))),
    st.tuples(st.just("back"), st.floats(0.0, 10.0), st.just(0)),
)


@settings(max_examples=200, deadline=None)
@given(
    rate=st.integers(0, 50),
    burst=st.integers(1, 50),
    start=st.sampled_from([0.0, 1000.0, 1.7e9]),
    ops=st.lists(_ops, max_size=80),
)
def test_rate_bound_over_every_window(
    rate: int, burst: int, start: float, ops: list[tuple[str, float, object]]
) -> None:
    bucket = TokenBucket(rate, burst, start)
    witness = RateWitness(rate, burst, start)
    now = start
    for kind, dt, arg in ops:
        if kind == "back":  # a clock step backwards: no tokens may appear
            before = bucket.tokens
            bucket.refill(now - dt)
            assert bucket.tokens == before
            continue
        now += dt
        if kind == "configure":
            assert isinstance(arg, tuple)
            bucket.configure(arg[0], arg[1], now)
            witness.configure(arg[0], arg[1], now)
        elif kind == "whole":
            assert isinstance(arg, int)
            taken = bucket.take_whole(now, arg)
            assert 0 <= taken <= arg
            if taken < arg:  # took every whole token there was
                assert bucket.tokens + EPSILON < 1
            witness.took(taken, now)
        else:
            assert isinstance(arg, int)
            witness.took(arg if bucket.try_take(now, arg) else 0, now)
        assert -EPSILON <= bucket.tokens <= bucket.burst


def test_a_bucket_made_with_some_tokens_starts_with_them_and_refills_at_rate() -> None:
    b = TokenBucket(rate=10, burst=5, now=0.0, tokens=0.0)
    assert b.tokens == 0 and b.available(0.0) == 0
    assert b.available(0.1) == 1 and b.available(1.0) == 5  # then as any bucket
    assert TokenBucket(rate=10, burst=5, now=0.0, tokens=2.5).available(0.0) == 2
    assert TokenBucket(rate=10, burst=5, now=0.0, tokens=9.0).tokens == 5  # capped
    assert TokenBucket(rate=10, burst=5, now=0.0).tokens == 5  # default: full


def test_a_charge_goes_into_debt_that_later_takes_wait_for() -> None:
    b = TokenBucket(10, 20, 0.0)
    b.charge(0.0, 25)  # 5 more than held: a debt
    assert not b.try_take(0.0)
    assert not b.try_take(0.55)  # 5.5 refilled: the debt paid, half a token
    assert b.try_take(0.6)
    b.charge(0.6, 1000)  # the debt goes no deeper than the burst
    assert b.available(0.6 + 2.0) == 0 and b.available(0.6 + 2.1) == 1
    with pytest.raises(ValueError):
        b.charge(3.0, -1)
