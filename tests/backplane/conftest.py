"""Broker fixtures: each implementation on real parts (an in-memory hub shared
by the brokers of one test, a redis-server, a 3-master Redis Cluster).

``backend`` starts brokers ("nodes") of one kind on one backend, each with a
``Recorder`` as its event handler, and closes them at teardown. Redis
backends are flushed before each test.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from livecast.backplane.broker import (
    Broadcast,
    Broker,
    Control,
    Destroy,
    FateNotice,
    ForwardedSend,
    Kick,
    MemberTips,
    Tips,
)
from livecast.backplane.memory_broker import MemoryBroker, MemoryHub
from livecast.backplane.redis_broker import RedisBroker
from tests.redis_fixtures import RedisCluster, RedisServer, redis_cluster, redis_server

__all__ = ["redis_cluster", "redis_server"]

BACKENDS = ("memory", "redis", "cluster")
WAIT = 10.0


class Recorder:
    """An EventHandler that records what it hears and lets a test wait for it."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, bytes, bytes | None]] = []
        self.controls: list[tuple[str, Control]] = []
        self.fates: list[tuple[str, bytes]] = []  # (room, encoded fates) riding on batches
        self._changed = asyncio.Event()

    def _note(self) -> None:
        self._changed.set()

    def on_batch(self, group_id: str, full: bytes, lite: bytes | None) -> None:
        self.batches.append((group_id, full, lite))
        self._note()

    def on_batch_fates(self, group_id: str, fates: bytes) -> None:
        self.fates.append((group_id, fates))
        self._note()

    def _control(self, origin: str, message: Control) -> None:
        self.controls.append((origin, message))
        self._note()

    def on_forwarded_send(self, origin: str, message: ForwardedSend) -> None:
        self._control(origin, message)

    def on_fate(self, origin: str, message: FateNotice) -> None:
        self._control(origin, message)

    def on_kick(self, origin: str, message: Kick) -> None:
        self._control(origin, message)

    def on_tips(self, origin: str, message: Tips) -> None:
        self._control(origin, message)

    def on_destroy(self, origin: str, message: Destroy) -> None:
        self._control(origin, message)

    def on_broadcast(self, origin: str, message: Broadcast) -> None:
        self._control(origin, message)

    def on_member_tips(self, origin: str, message: MemberTips) -> None:
        self._control(origin, message)

    async def until(self, condition: Callable[[], bool], within: float = WAIT) -> None:
        """Wait for ``condition`` to hold after some event; fail after ``within`` seconds."""
        deadline = time.monotonic() + within
        while not condition():
            self._changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the expected events did not arrive")
            await asyncio.wait_for(self._changed.wait(), left)


@dataclass
class Backend:
    name: str
    target: RedisServer | RedisCluster | None
    hub: MemoryHub = field(default_factory=MemoryHub)
    brokers: list[Broker] = field(default_factory=list)

    def broker(self, node_id: str) -> Broker:
        if self.target is None:
            return MemoryBroker(self.hub, node_id)
        return RedisBroker(self.target.url, node_id)

    async def node(self, node_id: str) -> tuple[Broker, Recorder]:
        broker = self.broker(node_id)
        recorder = Recorder()
        await broker.start(recorder)
        self.brokers.append(broker)
        await until_true(broker.ready)
        return broker, recorder


async def until_true(probe: Callable[[], Any], within: float = WAIT) -> None:
    """Ask ``probe`` (async) again until it answers true; fail after ``within`` seconds.
    For state with no event to wait on (a Redis key's expiry, a reconnection)."""
    deadline = time.monotonic() + within
    while not await probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{probe} stayed false")
        await asyncio.sleep(0.02)


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    target: RedisServer | RedisCluster | None = None
    if request.param != "memory":
        target = request.getfixturevalue(
            "redis_server" if request.param == "redis" else "redis_cluster")
        target.flush()
    backend = Backend(request.param, target)
    yield backend
    for broker in backend.brokers:
        await broker.close()
