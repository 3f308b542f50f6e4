"""Store instrumentation (livecast/store/base.py): Prometheus metrics, engine choice."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram

from livecast.core.records import GroupRecord
from livecast.store import RedisStore, SqliteStore, open_store
from livecast.store.base import expired, prometheus_observer
from tests.redis_fixtures import RedisServer


def _metrics() -> tuple[CollectorRegistry, Histogram, Counter]:
    registry = CollectorRegistry()
    latency = Histogram("store_seconds", "store latency", ["op"], registry=registry)
    errors = Counter("store_errors", "store errors", ["op"], registry=registry)
    return registry, latency, errors


async def test_the_prometheus_observer_counts_latency_and_errors(tmp_path: Path) -> None:
    registry, latency, errors = _metrics()
    store = await SqliteStore.open(tmp_path, observe=prometheus_observer(latency, errors))
    await store.put_group(GroupRecord("room", "owner", 1.0), create=True)
    await store.put_group(GroupRecord("room", "owner", 2.0))
    await store.close()
    await store.ping()  # fails: the store is closed
    sample = registry.get_sample_value
    assert sample("store_seconds_count", {"op": "put_group"}) == 2
    assert sample("store_errors_total", {"op": "put_group"}) is None
    assert sample("store_seconds_count", {"op": "ping"}) is None  # refused before any I/O
    assert store.healthy is False


async def test_open_store_picks_redis_when_a_url_is_set(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    embedded = await open_store("", tmp_path / "data")
    shared = await open_store(redis_server.url, tmp_path / "unused")
    try:
        assert isinstance(embedded, SqliteStore) and isinstance(shared, RedisStore)
        assert (tmp_path / "data" / "livecast.db").exists()
        assert not (tmp_path / "unused").exists()
    finally:
        await embedded.close()
        await shared.close()


def test_forever_never_expires() -> None:
    assert expired(10.0, 10.0) and not expired(10.5, 10.0)
    assert not expired(4294967295.0, 5e9)
