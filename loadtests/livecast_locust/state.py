"""Per-process run state: the Config, user ids, and counters locust has no column for.

Invariants:
- ``CONFIG`` is set once per test start in every process that runs users
  (local runner, each worker) and read by the users' ``on_start``.
- ``TALLY`` holds counts that are not request events (seq gaps, reconnects).
  A worker hands its counts to the master with each report and starts again
  from zero (``take``); the master adds them up (``merge``); a local runner
  keeps its own. So the counts the summary prints are the run's totals.
"""

from __future__ import annotations

import itertools
import secrets
from collections import Counter

from livecast_locust.options import Config

COUNTERS = {
    "seq_gaps": "seq gaps seen by members (one per jump)",
    "seq_missed": "messages missed inside those gaps",
    "seq_disorder": "messages whose seq was not above the previous one",
    "reconnects": "reconnect attempts (after a close or a failed connect)",
    "closes": "connections closed by the server or the network",
    "system_tips": "system notifications received",
    "tips": "tips received (member join/quit, groupInfo, mute, system...)",
}


# The counts that are also locust statistics: one ``WS count`` request event per
# occurrence (a gap of n missed messages: one ``seq gap`` and n ``missed
# message``), so they reach locust's tables, charts and CSV files.
COUNT_TYPE = "WS count"
COUNTED = {
    "seq_gaps": "seq gap",
    "seq_missed": "missed message",
    "seq_disorder": "seq disorder",
    "reconnects": "reconnect",
    "closes": "server close",
}


class Tally:
    """Named integer counts, mergeable across processes."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def add(self, name: str, n: int = 1) -> None:
        self.counts[name] += n

    def take(self) -> dict[str, int]:
        """The counts so far, and start again from zero (a worker's report)."""
        out = dict(self.counts)
        self.counts.clear()
        return out

    def merge(self, counts: dict[str, int]) -> None:
        self.counts.update(counts)


TALLY = Tally()
CONFIG: Config | None = None
TAG = secrets.token_hex(2)  # tells this process's user ids from another run's
_numbers = itertools.count(1)
VIEWERS_LOGGED_IN: set[str] = set()  # ids the Admin may mute (they never send)


def config() -> Config:
    if CONFIG is None:
        raise RuntimeError("the livecast kit was not configured (test_start did not run)")
    return CONFIG


def next_number() -> int:
    return next(_numbers)


def user_id(worker: int, role: str, number: int) -> str:
    """A user id unique across the workers and runs: ``lc0-3fa2-v17``."""
    return f"lc{worker}-{TAG}-{role[0]}{number}"
