"""The per-message counts kept as plain ints: exported at collection time as
the prometheus counters and histogram they replace would show them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from livecast.core.fate import Delivered, Dropped, Failed
from livecast.core.scheduler import Priority
from livecast.errors import Code
from livecast.node.metrics import TICK_BUCKETS, Metrics


def test_fates_are_counted_by_priority_and_reason() -> None:
    m = Metrics()
    sample = m.registry.get_sample_value
    hot = m.hot
    hot.admitted[Priority.HIGH] += 3
    hot.settled(Priority.HIGH, Delivered(1, 1000))
    hot.settled(Priority.HIGH, Delivered(2, 1000))
    hot.settled(Priority.LOW, Dropped(1000))
    hot.settled(Priority.LOWEST, Failed(Code.GROUP_NOT_FOUND))
    hot.settled(Priority.NORMAL, Failed(Code.INTERNAL))
    assert sample("livecast_messages_admitted_total", {"priority": "High"}) == 3
    assert sample("livecast_messages_admitted_total", {"priority": "Lowest"}) == 0
    assert sample("livecast_messages_delivered_total", {"priority": "High"}) == 2
    assert sample("livecast_messages_delivered_total", {"priority": "Normal"}) == 0
    dropped = "livecast_messages_dropped_total"
    assert sample(dropped, {"priority": "Low", "reason": "MsgFreqCtrl"}) == 1
    assert sample(dropped, {"priority": "High", "reason": "MsgFreqCtrl"}) == 0
    assert sample(dropped, {"priority": "Lowest", "reason": "GroupDestroyed"}) == 1
    assert sample(dropped, {"priority": "Normal", "reason": "Shutdown"}) == 1
    assert sample(dropped, {"priority": "High", "reason": "Shutdown"}) is None


def test_frames_are_counted() -> None:
    m = Metrics()
    m.hot.frames += 12
    m.hot.frames_lite += 2
    assert m.registry.get_sample_value("livecast_frames_written_total") == 12
    assert m.registry.get_sample_value("livecast_frames_degraded_total") == 2


def test_the_tick_histogram_matches_a_prometheus_histogram() -> None:
    """The same observations, bounds included, give the same buckets, count and sum."""
    values = [0.0, 0.00005, 0.0001, 0.00011, 0.001, 0.003, 0.1, 0.7, 1.0, 1.5, 30.0]
    m = Metrics()
    for v in values:
        m.hot.ticked(v)
    reference = CollectorRegistry()
    h = Histogram("livecast_tick_duration_seconds", "x", buckets=TICK_BUCKETS,
                  registry=reference)
    for v in values:
        h.observe(v)
    for le in [*(repr(b) for b in TICK_BUCKETS), "+Inf"]:
        name, labels = "livecast_tick_duration_seconds_bucket", {"le": le}
        assert m.registry.get_sample_value(name, labels) == reference.get_sample_value(name,
                                                                                       labels)
    for suffix in ("_count", "_sum"):
        name = "livecast_tick_duration_seconds" + suffix
        assert m.registry.get_sample_value(name) == reference.get_sample_value(name)


def test_the_text_exposition_has_every_family() -> None:
    m = Metrics()
    m.hot.ticked(0.002)
    text = generate_latest(m.registry).decode()
    for line in ('livecast_messages_admitted_total{priority="Normal"} 0.0',
                 'livecast_messages_delivered_total{priority="High"} 0.0',
                 'livecast_messages_dropped_total{priority="Lowest",reason="MsgFreqCtrl"} 0.0',
                 "livecast_frames_written_total 0.0",
                 "livecast_frames_degraded_total 0.0",
                 'livecast_tick_duration_seconds_bucket{le="0.0025"} 1.0',
                 "livecast_tick_duration_seconds_count 1.0",
                 "# TYPE livecast_tick_duration_seconds histogram",
                 "# TYPE livecast_messages_dropped_total counter"):
        assert line in text
