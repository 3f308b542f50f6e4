"""The in-memory broker: the ``Broker`` of one process, or of several
"processes" on one event loop sharing one ``MemoryHub`` (the contract tests
run two nodes this way).

It is the same interface as the Redis broker, not a mock: batches go to the
brokers subscribed to the room, control messages are encoded with orjson and
decoded on arrival, and deliveries are scheduled on the event loop (never
inside the caller), in call order; the one exception is ``publish_now``,
which hands a batch to the publishing broker's own handler before it returns
(one process fans a tick out within the tick: no task, no future, no await).
Leases and heartbeats expire by the hub's clock (``time.monotonic`` unless given).

Invariants: those of broker.py; the hub's state is what Redis's keys are
for the Redis broker (fence, seq, lease and node entries).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from livecast.backplane.broker import (
    ALL,
    Control,
    EventHandler,
    RoomRefs,
    StreamAppend,
    deliver,
    encode_control,
    encode_controls,
    hand_batch,
)

__all__ = ["MemoryBroker", "MemoryHub"]

log = logging.getLogger(__name__)


class MemoryHub:
    """What the processes of one event loop share (Redis's part)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.brokers: dict[str, MemoryBroker] = {}
        self.fences: dict[str, int] = {}
        self.seqs: dict[str, int] = {}
        self.leases: dict[str, tuple[str, int, float]] = {}  # gid -> (node, token, until)
        self.beats: dict[str, tuple[bytes, float]] = {}  # node -> (info as JSON, until)
        self.published = 0

    def lease(self, group_id: str) -> tuple[str, int] | None:
        held = self.leases.get(group_id)
        if held is None:
            return None
        if held[2] <= self.clock():
            del self.leases[group_id]
            return None
        return held[0], held[1]


class MemoryBroker:
    def __init__(self, hub: MemoryHub | None = None, node_id: str = "local") -> None:
        self.hub = hub if hub is not None else MemoryHub()
        self.node_id = node_id
        self.refs = RoomRefs()
        self.streams = False  # history stores are written apart (broker.py, invariant 7)
        self._handler: EventHandler | None = None

    async def start(self, handler: EventHandler) -> None:
        if self.hub.brokers.get(self.node_id, self) is not self:
            raise ValueError(f"node id {self.node_id!r} is already on this hub")
        self._handler = handler
        self.hub.brokers[self.node_id] = self

    # ----------------------------------------------------------- batches
    def _accepts(self, group_id: str, seq_end: int, token: int, prev: int) -> bool:
        """The publish rule (broker.py, ``Broker.publish``); recorded when accepted."""
        hub = self.hub
        last = hub.seqs.get(group_id, 0)
        if hub.fences.get(group_id, 0) != token or seq_end < last or (prev >= 0 and prev != last):
            return False
        hub.seqs[group_id] = seq_end
        hub.published += 1
        return True

    async def publish(self, group_id: str, full: bytes, lite: bytes | None, seq_end: int,
                      token: int, prev: int = -1, fates: bytes = b"",
                      stream: StreamAppend | None = None) -> bool:
        if not self._accepts(group_id, seq_end, token, prev):
            return False
        hub = self.hub
        loop = asyncio.get_running_loop()
        for broker in hub.brokers.values():
            if group_id in broker.refs:
                loop.call_soon(broker._batch, group_id, full, lite, fates)
        return True

    def publish_now(self, group_id: str, full: bytes, lite: bytes | None, seq_end: int,
                    token: int, prev: int = -1) -> bool:
        if not self._accepts(group_id, seq_end, token, prev):
            return False
        hub = self.hub
        for broker in hub.brokers.values():  # few calls: this is every tick's path
            if group_id not in broker.refs.counts:
                continue
            if broker is not self:
                asyncio.get_running_loop().call_soon(broker._batch, group_id, full, lite)
            elif self._handler is not None:
                try:
                    self._handler.on_batch(group_id, full, lite)
                except Exception:
                    log.exception("the handler failed on a batch of %s", group_id)
        return True

    def _batch(self, group_id: str, full: bytes, lite: bytes | None,
               fates: bytes = b"") -> None:
        if self._handler is not None and group_id in self.refs:
            hand_batch(self._handler, group_id, full, lite, fates)

    async def subscribe(self, group_id: str) -> None:
        await self.refs.add(group_id, _nothing)

    async def unsubscribe(self, group_id: str) -> None:
        await self.refs.remove(group_id, _nothing)

    # ----------------------------------------------------------- control
    async def control(self, target: str, message: Control) -> None:
        self._send(target, encode_control(self.node_id, message))

    async def control_many(self, batches: Mapping[str, Sequence[Control]]) -> None:
        for target, messages in batches.items():
            if messages:
                self._send(target, encode_controls(self.node_id, messages))

    def _send(self, target: str, data: bytes) -> None:
        brokers = self.hub.brokers
        targets = list(brokers.values()) if target == ALL else [brokers.get(target)]
        loop = asyncio.get_running_loop()
        for broker in targets:
            if broker is not None:
                loop.call_soon(broker._control, data)

    def _control(self, data: bytes) -> None:
        if self._handler is not None:
            deliver(self._handler, data)

    # ----------------------------------------------------------- leases
    async def acquire_lease(self, group_id: str, node_id: str, ttl: float) -> int | None:
        hub = self.hub
        held = hub.lease(group_id)
        if held is not None and held[0] != node_id:
            return None
        token = held[1] if held is not None else hub.fences.get(group_id, 0) + 1
        hub.fences[group_id] = token
        hub.leases[group_id] = (node_id, token, hub.clock() + ttl)
        return token

    async def renew_lease(self, group_id: str, node_id: str, token: int, ttl: float) -> bool:
        hub = self.hub
        held = hub.lease(group_id)
        if held != (node_id, token) and (held is not None or hub.fences.get(group_id) != token):
            return False  # taken over (an expired lease nobody took is taken again)
        hub.leases[group_id] = (node_id, token, hub.clock() + ttl)
        return True

    async def renew_leases(self, node_id: str, held: Mapping[str, int],
                           ttl: float) -> set[str]:
        return {gid for gid, token in held.items()
                if await self.renew_lease(gid, node_id, token, ttl)}

    async def acquire_leases(self, node_id: str, group_ids: Sequence[str],
                             ttl: float) -> dict[str, int | str | None]:
        got: dict[str, int | str | None] = {}
        for gid in group_ids:
            token = await self.acquire_lease(gid, node_id, ttl)
            got[gid] = token if token is not None else await self.owner_of(gid)
        return got

    async def release_lease(self, group_id: str, node_id: str, token: int) -> bool:
        if self.hub.lease(group_id) != (node_id, token):
            return False
        del self.hub.leases[group_id]
        return True

    async def owner_of(self, group_id: str) -> str | None:
        held = self.hub.lease(group_id)
        return None if held is None else held[0]

    async def last_seq(self, group_id: str) -> int:
        return self.hub.seqs.get(group_id, 0)

    # ----------------------------------------------------------- liveness
    async def heartbeat(self, node_id: str, info: Mapping[str, Any],
                        ttl: float) -> dict[str, dict[str, Any]]:
        self.hub.beats[node_id] = (orjson.dumps(dict(info)), self.hub.clock() + ttl)
        return await self.nodes()

    async def nodes(self) -> dict[str, dict[str, Any]]:
        now = self.hub.clock()
        beats = self.hub.beats
        for node in [n for n, (_, until) in beats.items() if until <= now]:
            del beats[node]
        return {node: orjson.loads(info) for node, (info, _) in beats.items()}

    async def ready(self) -> bool:
        return True

    def connected(self) -> bool:
        return True

    def reconnects(self) -> int:
        return 0  # nothing in memory is ever missed

    async def close(self) -> None:
        if self.hub.brokers.get(self.node_id) is self:
            del self.hub.brokers[self.node_id]
        self._handler = None


async def _nothing(group_id: str) -> None:
    return None
