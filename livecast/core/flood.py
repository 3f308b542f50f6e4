"""The flood rule of one connection: a decaying score of refused requests.

A request that finds no token in the connection's bucket (``LIVECAST_REQ_RATE``
/ ``LIVECAST_REQ_BURST``) is refused with 10023 and adds 1 to the score; the
score halves every ``HALF_LIFE`` seconds; accepted requests do not reset it.
When the score passes ``limit`` (``max(4, LIVECAST_REQ_BURST / 4)``, 100 by
default) the connection is closed with 4029 (docs/protocol.md, "Request rate").

So a burst beyond the bucket in one write is closed after ``limit`` + 1
refusals, and a sustained excess of ``e`` refusals a second settles at a score
of ``e * HALF_LIFE / ln 2`` (about 14.4 e): any excess above about 7 requests
a second over the allowed rate is closed once the bucket's burst is spent.
At the defaults (200/s, burst 400), measured on a simulated clock
(tests/core/test_flood.py): 4.6 times the rate is closed after 0.7 s, twice
the rate after 2.5 s, 1.5 times after 5 s.  A client at or under its rate is
never refused, so never closed.  Pure: ``now`` is passed in.
"""

from __future__ import annotations

HALF_LIFE = 10.0  # seconds for the score to halve


def flood_limit(burst: float) -> float:
    return max(4.0, burst / 4)


class FloodScore:
    __slots__ = ("at", "limit", "score")

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.score = 0.0
        self.at = 0.0

    def refused(self, now: float) -> bool:
        """One more refused request at ``now``; True when the connection must close."""
        if self.score:
            self.score *= 0.5 ** (max(0.0, now - self.at) / HALF_LIFE)
        self.score += 1.0
        self.at = now
        return self.score > self.limit
