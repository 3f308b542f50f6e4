"""Prometheus metrics of one node, in a registry of its own (one per app).

Hot-path counters are bumped once per tick per room, never per member.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PRIORITY_LABELS = ("High", "Normal", "Low", "Lowest")


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
        self.admitted = Counter("livecast_messages_admitted", "Messages admitted to a room queue",
                                ["priority"], registry=r)
        self.delivered = Counter("livecast_messages_delivered", "Messages delivered (given a seq)",
                                 ["priority"], registry=r)
        self.dropped = Counter("livecast_messages_dropped", "Messages dropped",
                               ["priority", "reason"], registry=r)
        self.rejected = Counter("livecast_messages_rejected", "Sends refused with an error code",
                                ["code"], registry=r)
        self.frames = Counter("livecast_frames_written", "Frames written to member transports",
                              registry=r)
        self.frames_lite = Counter("livecast_frames_degraded",
                                   "Frames written without Low/Lowest to lagging members",
                                   registry=r)
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
                                   "REST calls refused (70398) from an IP locked out", registry=r)
        self.tick_seconds = Histogram(
            "livecast_tick_duration_seconds", "Duration of one room dispatch (schedule+fan-out)",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                     0.5, 1.0),
            registry=r)
        self.store_seconds = Histogram(
            "livecast_store_duration_seconds", "Duration of one durable-store operation",
            ["op"], buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                             0.1, 0.25, 0.5, 1.0, 2.5), registry=r)
        self.store_errors = Counter("livecast_store_errors", "Durable-store operations that failed",
                                    ["op"], registry=r)
        self.admitted_by = [self.admitted.labels(p) for p in PRIORITY_LABELS]
        self.delivered_by = [self.delivered.labels(p) for p in PRIORITY_LABELS]
        self.dropped_freq = [self.dropped.labels(p, "MsgFreqCtrl") for p in PRIORITY_LABELS]
