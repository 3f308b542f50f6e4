"""Store figures by hand (not a test): write latency p50/p99, load_all of 10,000 rooms.

    .venv/bin/python -m tests.store.measure [--writes 2000] [--rooms 10000]

Runs each engine on real parts: a SQLite file (synchronous FULL, then NORMAL)
in a temporary directory, a redis-server, and a 3-master Redis Cluster
started as the tests start them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from livecast.core.records import GroupRecord
from livecast.store.base import Store
from livecast.store.redis import RedisStore
from livecast.store.sqlite import SqliteStore
from tests.redis_fixtures import start_cluster, start_server

Opener = Callable[[], Awaitable[Store]]


def room(n: int) -> GroupRecord:
    return GroupRecord(
        f"room-{n}", "anchor", 1.7e9 + n, name=f"Room {n}", introduction="x" * 100,
        app_defined={"Topic": "music", "Level": "3"}, counters={"likes": n, "gifts": 2 * n},
        mutes={"loud": 1.8e9}, bans={"troll": 4294967295.0}, rate=40, burst=80)


def percentiles(samples: list[float]) -> str:
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return f"p50 {q[49] * 1e3:.3f} ms  p99 {q[98] * 1e3:.3f} ms"


async def writes(store: Store, count: int) -> dict[str, list[float]]:
    ops: dict[str, Callable[[int], Awaitable[object]]] = {
        "put_settings": lambda i: store.put_settings(room(i % 100)),
        "set_mute": lambda i: store.set_mute(f"room-{i % 100}", f"user-{i}", 1.8e9),
        "seen": lambda i: store.seen(f"room-1:user:{i}", time.time()),
        "add_likes": lambda i: store.add_likes(f"room-{i % 100}", 1),
    }
    for n in range(100):  # put_settings writes only a stored room
        await store.put_group(room(n), create=True)
    found: dict[str, list[float]] = {}
    for name, op in ops.items():
        samples = found[name] = []
        for i in range(count):
            start = time.perf_counter()
            await op(i)
            samples.append(time.perf_counter() - start)
    return found


async def measure(name: str, opener: Opener, writes_n: int, rooms: int) -> None:
    store = await opener()
    for label, samples in (await writes(store, writes_n)).items():
        print(f"{name:14} {label:13} {percentiles(samples)}")
    for n in range(100, rooms):
        await store.put_group(room(n), create=True)
    await store.close()
    fresh = await opener()
    start = time.perf_counter()
    snapshot = await fresh.load_all(now=time.time())
    elapsed = time.perf_counter() - start
    await fresh.close()
    print(f"{name:14} load_all      {len(snapshot.groups)} rooms in {elapsed:.3f} s")


async def main(writes_n: int, rooms: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for sync in ("FULL", "NORMAL"):
            directory = base / sync

            def sqlite(d: Path = directory, s: str = sync) -> Awaitable[Store]:
                return SqliteStore.open(d, synchronous=s)  # type: ignore[arg-type]

            await measure(f"sqlite {sync}", sqlite, writes_n, rooms)
        server = start_server(base)
        try:
            await measure("redis", lambda: RedisStore.open(server.url), writes_n, rooms)
        finally:
            server.stop()
        cluster = start_cluster(base)
        try:
            await measure("redis cluster", lambda: RedisStore.open(cluster.url), writes_n, rooms)
        finally:
            cluster.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--rooms", type=int, default=10_000)
    args = parser.parse_args()
    asyncio.run(main(args.writes, args.rooms))
