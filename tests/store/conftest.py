"""Store fixtures: each engine on real parts (a SQLite file, redis-server, a Redis
Cluster), and the in-memory twin.

``engine`` opens stores of one kind on one backend: the same file or the same
servers for every store it opens, so a test can close a store and open a
fresh one on the same data. Redis backends are flushed before each test.
``durable`` is the same but for the memory twin, which keeps nothing across a
restart and reports no metrics (livecast/store/memory.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from livecast.store.base import Observer, Store
from livecast.store.memory import MemoryStore
from livecast.store.redis import RedisStore
from livecast.store.sqlite import SqliteStore
from tests.redis_fixtures import RedisCluster, RedisServer, redis_cluster, redis_server

__all__ = ["redis_cluster", "redis_server"]

DURABLE = ("sqlite", "redis", "cluster")
ENGINES = ("memory", *DURABLE)


@dataclass
class Engine:
    """Opens stores of one engine on one backend and closes them at teardown."""

    name: str
    opener: Callable[[Observer | None], Awaitable[Store]]
    opened: list[Store] = field(default_factory=list)

    async def open(self, observe: Observer | None = None) -> Store:
        store = await self.opener(observe)
        self.opened.append(store)
        return store


async def _memory(observe: Observer | None) -> Store:
    return MemoryStore()


def _opener(name: str, request: pytest.FixtureRequest, tmp_path: Path
            ) -> Callable[[Observer | None], Awaitable[Store]]:
    if name == "memory":
        return _memory
    if name == "sqlite":
        return lambda observe: SqliteStore.open(tmp_path / "data", observe=observe)
    backend: RedisServer | RedisCluster = request.getfixturevalue(
        "redis_server" if name == "redis" else "redis_cluster")
    backend.flush()
    return lambda observe: RedisStore.open(backend.url, observe=observe)


async def _engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Engine]:
    engine = Engine(request.param, _opener(request.param, request, tmp_path))
    yield engine
    for store in engine.opened:
        await store.close()


@pytest.fixture(params=ENGINES)
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Engine]:
    async for opened in _engine(request, tmp_path):
        yield opened


@pytest.fixture(params=DURABLE)
async def durable(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Engine]:
    async for opened in _engine(request, tmp_path):
        yield opened


@pytest.fixture
async def store(engine: Engine) -> Store:
    return await engine.open()
