"""Prometheus metrics of one node, in a registry of its own (one per app).

Hot-path counts (messages admitted, delivered and dropped, frames written,
the dispatch histogram) are plain ints in ``HotCounts``, bumped per message
or per tick and per room (never per member) at the cost of an addition, and
turned into metric families only when the registry is collected (a scrape of
``/metrics``, the dashboard): a prometheus ``Counter.inc`` takes a lock and
costs about as much as the rest of a message's scheduling.  The event loop
is the only writer, so no lock is needed; a scrape reads the ints as they are.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from livecast.core.fate import Delivered, Dropped, Fate
from livecast.errors import Code

PRIORITY_LABELS = ("High", "Normal", "Low", "Lowest")
TICK_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                0.5, 1.0)


class HotCounts:
    """The per-message counters as plain ints, exported at collection time
    under the same names, labels and types as prometheus counters and a
    histogram (``livecast_messages_admitted_total`` and the rest)."""

    __slots__ = ("admitted", "delivered", "dropped", "frames", "frames_lite", "tick_buckets",
                 "tick_count", "tick_sum")

    def __init__(self) -> None:
        self.admitted = [0] * len(PRIORITY_LABELS)   # by Priority value
        self.delivered = [0] * len(PRIORITY_LABELS)
        # (priority label, reason) -> count; MsgFreqCtrl is shown from the start
        self.dropped: dict[tuple[str, str], int] = {(p, "MsgFreqCtrl"): 0
                                                    for p in PRIORITY_LABELS}
        self.frames = 0
        self.frames_lite = 0
        self.tick_buckets = [0] * (len(TICK_BUCKETS) + 1)  # the last one: +Inf
        self.tick_count = 0
        self.tick_sum = 0.0

    def settled(self, priority: int, fate: Fate) -> None:
        """A message's fate, counted: delivered, or dropped with its reason."""
        if isinstance(fate, Delivered):
            self.delivered[priority] += 1
            return
        if isinstance(fate, Dropped):
            reason = "MsgFreqCtrl"
        else:
            reason = "GroupDestroyed" if fate.code == Code.GROUP_NOT_FOUND else "Shutdown"
        key = (PRIORITY_LABELS[priority], reason)
        self.dropped[key] = self.dropped.get(key, 0) + 1

    def ticked(self, seconds: float) -> None:
        """One dispatch took ``seconds`` (``le`` buckets: a value on a bound counts in it)."""
        self.tick_buckets[bisect_left(TICK_BUCKETS, seconds)] += 1
        self.tick_count += 1
        self.tick_sum += seconds

    def describe(self) -> Iterator[Metric]:
        return self.collect()

    def collect(self) -> Iterator[Metric]:
        yield _by_priority("livecast_messages_admitted", "Messages admitted to a room queue",
                           self.admitted)
        yield _by_priority("livecast_messages_delivered", "Messages delivered (given a seq)",
                           self.delivered)
        dropped = CounterMetricFamily("livecast_messages_dropped", "Messages dropped",
                                      labels=("priority", "reason"))
        for (priority, reason), n in list(self.dropped.items()):
            dropped.add_metric((priority, reason), n)
        yield dropped
        yield CounterMetricFamily("livecast_frames_written",
                                  "Frames written to member transports", value=self.frames)
        yield CounterMetricFamily("livecast_frames_degraded",
                                  "Frames written without Low/Lowest to lagging members",
                                  value=self.frames_lite)
        yield self._ticks()

    def _ticks(self) -> Metric:
        cumulative, buckets = 0, []
        for bound, n in zip((*TICK_BUCKETS, float("inf")), self.tick_buckets, strict=True):
            cumulative += n
            buckets.append((_le(bound), float(cumulative)))
        return HistogramMetricFamily(
            "livecast_tick_duration_seconds", "Duration of one room dispatch (schedule+fan-out)",
            buckets=buckets, sum_value=self.tick_sum)


def _le(bound: float) -> str:
    """A bucket's bound as prometheus writes it ("0.0001", "1.0", "+Inf")."""
    return "+Inf" if bound == float("inf") else repr(bound)


def _by_priority(name: str, doc: str, counts: list[int]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=("priority",))
    for label, n in zip(PRIORITY_LABELS, counts, strict=True):
        family.add_metric((label,), n)
    return family


def _registry() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=True)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=_registry)

    def __post_init__(self) -> None:
        r = self.registry
        self.connections = Gauge("livecast_connections", "Open WebSocket connections", registry=r)
        self.rooms = Gauge("livecast_rooms", "Live rooms on this node", registry=r)
        self.members = Gauge("livecast_members", "Room memberships on this node", registry=r)
        self.hot = HotCounts()
        r.register(self.hot)
        self.rejected = Counter("livecast_messages_rejected", "Sends refused with an error code",
                                ["code"], registry=r)
        self.shed = Counter("livecast_connections_shed", "Connections shed as too slow (4008)",
                            registry=r)
        self.closes = Counter("livecast_connections_closed", "Connections closed by the server",
                              ["code"], registry=r)
        self.violations = Counter("livecast_protocol_violations", "Client protocol violations",
                                  registry=r)
        self.pings = Counter("livecast_heartbeat_pings", "Pings sent to silent connections",
                             registry=r)
        self.dead = Counter("livecast_heartbeat_dropped",
                            "Connections aborted after two heartbeats of silence", registry=r)
        self.stalled = Counter("livecast_connections_stalled",
                               "Connections shed (4008) after LIVECAST_STALL_TIMEOUT without "
                               "draining", registry=r)
        self.admission_refused = Counter(
            "livecast_admission_refused", "Connects and logins refused by admission control (4013)",
            ["what", "scope"], registry=r)
        self.auth_failures = Counter("livecast_rest_auth_failures",
                                     "REST calls refused for a bad UserSig or SDKAppID",
                                     registry=r)
        self.auth_locked = Counter("livecast_rest_auth_locked",
                                   "REST calls refused (70050) from an IP locked out", registry=r)
        self.store_seconds = Histogram(
            "livecast_store_duration_seconds", "Duration of one durable-store operation",
            ["op"], buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                             0.1, 0.25, 0.5, 1.0, 2.5), registry=r)
        self.store_errors = Counter("livecast_store_errors", "Durable-store operations that failed",
                                    ["op"], registry=r)
