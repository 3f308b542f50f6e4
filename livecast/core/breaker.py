"""A circuit breaker for the webhook client (docs/webhooks.md, "When your backend is slow or down":
"a slow or dead business backend must never stall a room, a node, or other
rooms' webhooks").

Pure: no clock reads; every call takes ``now`` (unix seconds).  The caller
asks ``allow(now)`` before each callback and reports its outcome with
``record(ok, now)``.

Invariants:
- CLOSED lets every call through and counts consecutive failures; the
  ``threshold``-th one in a row opens the breaker (a success resets the
  count).  ``threshold`` 0 means the breaker never opens.
- OPEN refuses every call until ``cooldown`` seconds after it opened; the
  first ``allow`` after that moves to HALF_OPEN and is the probe.
- HALF_OPEN lets exactly one probe through at a time: its success closes the
  breaker, its failure opens it again for a new cooldown.  A probe whose
  outcome is never reported (cancelled) stops blocking after ``cooldown``
  seconds: the next ``allow`` grants a new probe, so the breaker cannot stick.
- An outcome reported late (a call let through before the breaker opened)
  counts like a probe's: a success closes, a failure restarts the cooldown.
- ``blocked(now)`` is a query with no side effect: True exactly when
  ``allow(now)`` would return False.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["Breaker", "BreakerState"]


class BreakerState(IntEnum):
    """The state, as exported by the ``livecast_callback_breaker_state`` gauge."""

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


class Breaker:
    __slots__ = ("_failures", "_since", "cooldown", "state", "threshold")

    def __init__(self, threshold: int, cooldown: float) -> None:
        if threshold < 0 or cooldown < 0:
            raise ValueError("threshold and cooldown must not be negative")
        self.threshold = threshold
        self.cooldown = cooldown
        self.state = BreakerState.CLOSED
        self._failures = 0
        self._since = 0.0  # when OPEN began, or when the HALF_OPEN probe was granted

    @property
    def failures(self) -> int:
        """Consecutive failures counted while CLOSED."""
        return self._failures

    def blocked(self, now: float) -> bool:
        """Would ``allow(now)`` refuse?  (No state change.)"""
        if self.state is BreakerState.CLOSED:
            return False
        return now < self._since + self.cooldown

    def allow(self, now: float) -> bool:
        """May a callback go out now?  OPEN turns HALF_OPEN (one probe) after the cooldown."""
        if self.blocked(now):
            return False
        if self.state is not BreakerState.CLOSED:
            self.state = BreakerState.HALF_OPEN
            self._since = now
        return True

    def record(self, ok: bool, now: float) -> None:
        """Report the outcome of a callback that ``allow`` let through."""
        if ok:
            self.state = BreakerState.CLOSED
            self._failures = 0
            return
        if self.state is BreakerState.CLOSED:
            self._failures += 1
            if not self.threshold or self._failures < self.threshold:
                return
        self.state = BreakerState.OPEN
        self._since = now
        self._failures = 0
