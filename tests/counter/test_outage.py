"""Likes are never lost to a counter outage (docs/counter.md, "Never lost, never
counted twice"): real processes on loopback and a real redis-server.

``livecast serve`` posts its webhooks to a ``livecast counter`` process that keeps
its tallies in Redis.  A member sends likes at a steady rate; mid-way the
counter is killed with SIGKILL and started again.  The likes whose before-send
callback failed meanwhile (connection refused, then the open breaker) are held
by the server and sent again; those the dead counter had counted are in
Redis.  At the end the room's total is exactly the number of likes sent.

Synchronisation: processes are polled for readiness and the total is polled
over REST, each within a bounded time; the only sleep paces the sender.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import orjson
import pytest

from livecast.client import custom
from livecast.core import callbacks
from tests.redis_fixtures import RedisServer, free_port, redis_server
from tests.test_restart import (
    KEY,
    SDKAPPID,
    Process,
    Server,
    app_data,
    group_info,
    until,
)

__all__ = ["redis_server"]

LIKES = 120  # sent in all
RATE = 60.0  # likes per second
KILL_AT = LIKES // 3
LIKE = custom(json.dumps({"type": "like"}))


@dataclass
class CounterProcess(Process):
    """One ``livecast counter`` process."""

    command: ClassVar[str] = "counter"
    ready: ClassVar[str] = "/healthz"

    async def kill(self) -> None:
        await self.stop(signal.SIGKILL)

    async def post(self, body: dict[str, Any]) -> int:
        params = callbacks.query(SDKAPPID, body["CallbackCommand"], "127.0.0.1", "Web", "",
                                 int(time.time()))
        async with aiohttp.ClientSession() as http, http.post(
                self.base + "/", params=params, data=orjson.dumps(body)) as resp:
            return resp.status


@dataclass
class Rig:
    server: Server
    counter: CounterProcess


@pytest.fixture
async def rig(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[Rig]:
    redis_server.flush()
    base = {k: v for k, v in os.environ.items() if not k.startswith("LIVECAST_")}
    base.update(LIVECAST_SECRET_KEY=KEY, LIVECAST_SDKAPPID=str(SDKAPPID))
    sport, cport = free_port(), free_port()
    server = Server(dict(base, LIVECAST_PORT=str(sport), LIVECAST_SHUTDOWN_GRACE="1",
                         LIVECAST_DATA_DIR=str(tmp_path / "data"),
                         LIVECAST_CALLBACK_URL=f"http://127.0.0.1:{cport}/",
                         LIVECAST_CALLBACK_BREAKER_COOLDOWN="0.5"), sport)
    counter = CounterProcess(dict(base, LIVECAST_COUNTER_PORT=str(cport),
                                  LIVECAST_COUNTER_API=server.base,
                                  LIVECAST_REDIS_URL=redis_server.url,
                                  LIVECAST_COUNTER_MIN_S="0.2", LIVECAST_COUNTER_MAX_S="0.3"),
                             cport)
    await server.start()
    await counter.start()
    yield Rig(server, counter)
    for proc in (counter.proc, server.proc):
        if proc is not None:
            proc.kill()
            await proc.wait()


async def total(rig: Rig, gid: str) -> int:
    return int(app_data(await group_info(rig.server, gid)).get("likes", "0"))


async def test_a_counter_killed_mid_stream_loses_no_like(rig: Rig) -> None:
    gid = "outage"
    await rig.server.ok("group_open_http_svc", "create_group",
                        {"Type": "AVChatRoom", "GroupId": gid, "Name": "outage"})
    fan, code = await rig.server.client("fan")
    assert code == 0
    assert (await fan.join(gid))["code"] == 0
    start = time.monotonic()
    for i in range(LIKES):
        if i == KILL_AT:
            await rig.counter.kill()
        if i == 2 * KILL_AT:
            await rig.counter.start()
        reply = await fan.send(gid, LIKE, priority="Low")
        assert reply["code"] == 0, reply
        await asyncio.sleep(max(0.0, start + (i + 1) / RATE - time.monotonic()))  # pacing
    await fan.close()

    async def complete() -> bool:
        return await total(rig, gid) >= LIKES

    await until(complete, f"{LIKES} likes in the room's total", within=30.0)
    assert await total(rig, gid) == LIKES


def like_body(gid: str, rnd: int) -> dict[str, Any]:
    return callbacks.before_send(gid, "fan", "fan", rnd, LIKE, "", "Low", time.time())


async def test_a_resent_callback_is_counted_once_across_a_restart(rig: Rig) -> None:
    gid = "resent"
    await rig.server.ok("group_open_http_svc", "create_group",
                        {"Type": "AVChatRoom", "GroupId": gid, "Name": "resent"})
    first, second = like_body(gid, 1), like_body(gid, 2)
    assert await rig.counter.post(first) == 200
    assert await rig.counter.post(dict(first, Replayed=1)) == 200  # a replay: same key
    await rig.counter.kill()  # before any write-back could run
    await rig.counter.start()
    assert await rig.counter.post(first) == 200  # resent after the restart
    assert await rig.counter.post(second) == 200

    async def written() -> bool:
        return await total(rig, gid) >= 2

    await until(written, "the total written", within=10.0)
    assert await total(rig, gid) == 2
