"""Held before-send callbacks of likes (docs/webhooks.md, "Likes are never
skipped"): a real aiohttp backend on loopback that fails (HTTP 500), then
answers; the ``Webhooks`` client against it.  Synchronisation: a Condition
notified on every callback, awaited with a bounded timeout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from livecast.core import callbacks as cb
from livecast.core.callbacks import Action
from livecast.settings import Settings
from livecast.webhooks import Webhooks

WAIT = 10.0
OK = {"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""}


@dataclass
class Flaky:
    failing: bool = True
    bodies: list[dict[str, Any]] = field(default_factory=list)  # answered 200
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def handle(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        if self.failing:
            return web.Response(status=500, text="down")
        async with self.changed:
            self.bodies.append(body)
            self.changed.notify_all()
        return web.json_response(OK)

    async def until(self, what: Any) -> None:
        async with asyncio.timeout(WAIT), self.changed:
            await self.changed.wait_for(lambda: what(self.bodies))


@pytest.fixture
async def flaky() -> AsyncIterator[tuple[Flaky, str]]:
    backend = Flaky()
    app = web.Application()
    app.router.add_post("/cb", backend.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield backend, str(server.make_url("/cb"))
    await server.close()


def body(random: int) -> dict[str, Any]:
    return cb.before_send("g1", "fan", "fan", random, [], "", "Low", 1_700_000_000.0)


async def hooks(url: str, registry: CollectorRegistry | None = None, **kw: Any) -> Webhooks:
    settings = Settings(callback_url=url, callback_breaker=2, callback_breaker_cooldown=0.2,
                        callback_timeout=1.0, **kw)
    webhooks = Webhooks(settings, registry or CollectorRegistry())
    await webhooks.start()
    return webhooks


async def test_failed_like_callbacks_are_sent_again_once_the_backend_answers(
        flaky: tuple[Flaky, str]) -> None:
    backend, url = flaky
    registry = CollectorRegistry()
    w = await hooks(url, registry)
    try:
        for random in range(1, 6):  # 2 fail (500), the breaker opens, 3 are not sent
            verdict = await w.before_send(body(random), "", cb.PLATFORM_WEB, hold=True)
            assert verdict.action is Action.ALLOW  # fail open: the message goes on
        await w.before_send(body(99), "", cb.PLATFORM_WEB)  # not a like: not held
        assert w.held >= 5
        dropped = registry.get_sample_value(
            "livecast_callbacks_dropped_total", {"command": cb.BEFORE_SEND})
        assert dropped == 1  # 99 alone: the held likes are sent later, not dropped
        backend.failing = False
        await backend.until(lambda bodies: {b["Random"] for b in bodies if b.get("Replayed")}
                            >= {1, 2, 3, 4, 5})
    finally:
        await w.close()
    replayed = [b for b in backend.bodies if b.get("Replayed") == 1]
    assert [b["Random"] for b in replayed] == [1, 2, 3, 4, 5]  # each once, in order
    assert all(b == dict(body(b["Random"]), Replayed=1) for b in replayed)
    assert 99 not in {b["Random"] for b in replayed}


async def test_fail_closed_holds_nothing(flaky: tuple[Flaky, str]) -> None:
    _, url = flaky
    w = await hooks(url, callback_fail_closed=True)
    try:
        verdict = await w.before_send(body(1), "", cb.PLATFORM_WEB, hold=True)
        assert verdict.action is Action.REJECT and verdict.code == 80003
        assert w.held == 0
    finally:
        await w.close()
