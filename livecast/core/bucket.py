"""Token bucket: the rate limiter of rooms and of per-connection request floods.

Invariants (docs/design.md, "The room scheduler", invariant 1):

- Rate: over any interval of length T the bucket hands out at most
  ``burst + rate * T`` tokens (up to ``EPSILON``).  It starts full, refills at
  ``rate`` per second, never holds more than ``burst``, and only whole tokens
  are taken, so a taker never outruns the refill.
- Time only moves forward: a ``now`` earlier than the last one seen is ignored
  (no refill, no rewind), so a clock step backwards never mints tokens.
- ``configure`` refills at the old rate up to ``now`` first, then switches to
  the new rate and keeps the current tokens, capped at the new burst.

Pure: no clock reads; every time-dependent call takes ``now`` (seconds).
"""

from __future__ import annotations

import math

__all__ = ["EPSILON", "TokenBucket"]

#: Float slack when counting whole tokens: 40 tokens/s refilled over 0.025 s
#: gives 0.999999999998 in floats, which must count as one token.  A token
#: taken on the strength of the slack leaves the bucket slightly in debt, so
#: the slack never accumulates past ``EPSILON`` overall.
EPSILON = 1e-9


def _check(rate: float, burst: float) -> None:
    if not (math.isfinite(rate) and rate >= 0):
        raise ValueError(f"rate must be a finite number >= 0, got {rate!r}")
    if not (math.isfinite(burst) and burst >= 1):
        raise ValueError(f"burst must be a finite number >= 1, got {burst!r}")


class TokenBucket:
    """A token bucket of ``rate`` tokens per second holding at most ``burst``."""

    __slots__ = ("_burst", "_last", "_rate", "_tokens")

    def __init__(self, rate: float, burst: float, now: float,
                 tokens: float | None = None) -> None:
        """``tokens``: what it starts with (default: full; capped at burst), as
        when a room's scheduler is made again and keeps what was spent."""
        _check(rate, burst)
        self._rate = float(rate)
        self._burst = float(burst)
        self._tokens = self._burst if tokens is None else max(0.0, min(self._burst, tokens))
        self._last = now

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def burst(self) -> float:
        return self._burst

    @property
    def tokens(self) -> float:
        """Tokens held as of the last refill (call ``refill(now)`` first)."""
        return self._tokens

    def refill(self, now: float) -> None:
        """Add ``rate`` tokens per second since the last refill, capped at burst."""
        if not now > self._last:  # earlier, equal or NaN: ignored
            return
        self._tokens = min(self._burst, self._tokens + self._rate * (now - self._last))
        self._last = now

    def configure(self, rate: float, burst: float, now: float) -> None:
        """Change rate and burst from ``now`` on, keeping the tokens (capped)."""
        _check(rate, burst)
        self.refill(now)
        self._rate = float(rate)
        self._burst = float(burst)
        self._tokens = min(self._tokens, self._burst)

    def available(self, now: float) -> int:
        """Whole tokens that could be taken at ``now``."""
        self.refill(now)
        return max(0, math.floor(self._tokens + EPSILON))

    def take_whole(self, now: float, limit: int) -> int:
        """Take as many whole tokens as are available, at most ``limit``."""
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit!r}")
        if now > self._last:  # ``refill``, inlined: this runs once per room and tick
            self._tokens = min(self._burst, self._tokens + self._rate * (now - self._last))
            self._last = now
        whole = math.floor(self._tokens + EPSILON)
        taken = limit if limit < whole else max(0, whole)
        self._tokens -= taken
        return taken

    def try_take(self, now: float, n: float = 1) -> bool:
        """Take ``n`` tokens if the bucket holds them; else take nothing."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n!r}")
        if now > self._last:  # ``refill``, inlined: this runs once per request
            self._tokens = min(self._burst, self._tokens + self._rate * (now - self._last))
            self._last = now
        if self._tokens + EPSILON < n:
            return False
        self._tokens -= n
        return True

    def charge(self, now: float, n: float) -> None:
        """Take ``n`` tokens whether or not the bucket holds them: what is
        missing is a debt (down to ``-burst``) that later takes wait for,
        for a cost known only once the work is done."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n!r}")
        self.refill(now)
        self._tokens = max(-self._burst, self._tokens - n)

    def __repr__(self) -> str:
        return (
            f"TokenBucket(rate={self._rate!r}, burst={self._burst!r}, "
            f"tokens={self._tokens!r}, last={self._last!r})"
        )
