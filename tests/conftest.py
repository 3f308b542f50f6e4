"""Shared fixtures: a real livecast app on a loopback socket, real clients.

``live`` starts the app as ``livecast serve`` does (the same factory, the same
listener and WebSocket front) on 127.0.0.1 with an ephemeral port; clients
speak real WebSocket to it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from livecast.client import Client
from livecast.core.usersig import mint
from livecast.gateway.app import make_app
from livecast.gateway.front import Front
from livecast.gateway.keys import NODE
from livecast.node.node import Node
from livecast.runner import Listener
from livecast.settings import Secret, Settings
from tests.redis_fixtures import RedisServer, start_server

SDKAPPID = 1400000000
KEY = "test-key-0123456789abcdef0123456789abcdef"


def sig(user: str, key: str = KEY, sdkappid: int = SDKAPPID, expire: int = 3600) -> str:
    return mint(sdkappid, key, user, time.time(), expire)


def base_settings(**overrides: Any) -> Settings:
    s = Settings(sdkappid=SDKAPPID, secret_key=Secret(KEY), port=0, shutdown_grace=2.0)
    return replace(s, **overrides)


@dataclass
class Live:
    """A running server and helpers to talk to it."""

    server: Listener
    node: Node
    settings: Settings
    clients: list[Client] = field(default_factory=list)

    @property
    def ws_url(self) -> str:
        return f"ws://{self.server.host}:{self.server.port}/v1/ws"

    def url(self, path: str) -> str:
        return f"http://{self.server.host}:{self.server.port}{path}"

    async def client(self, user: str | None = None, join: str | None = None) -> Client:
        """A connected client, logged in as ``user`` (guest when None), joined to ``join``."""
        c = Client(self.ws_url)
        await c.connect()
        self.clients.append(c)
        if user is not None:
            r = await c.login(SDKAPPID, user, sig(user))
            assert r["code"] == 0, r
        if join is not None:
            r = await c.join(join)
            assert r["code"] == 0, r
        return c

    async def room(self, group_id: str = "live-1", **fields: Any) -> str:
        await self.node.create_group("administrator", {"Name": group_id, **fields}, group_id)
        return group_id

    async def rest(self, service: str, command: str, body: Any,
                   identifier: str = "administrator", usersig: str | None = None,
                   sdkappid: int = SDKAPPID) -> dict[str, Any]:
        params = {"sdkappid": str(sdkappid), "identifier": identifier,
                  "usersig": usersig if usersig is not None else sig(identifier),
                  "random": "1", "contenttype": "json"}
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        async with aiohttp.ClientSession() as http, http.post(
                self.url(f"/v4/{service}/{command}"), params=params, data=data) as resp:
            assert resp.status == 200
            result: dict[str, Any] = await resp.json(content_type=None)
            return result


LiveFactory = Callable[..., Awaitable[Live]]


async def start_live(settings: Settings, node: Node | None = None, port: int = 0) -> Live:
    """The app served as ``livecast serve`` serves it; ``Live.server.close()`` stops it."""
    app = make_app(settings, node)
    server = Listener(app, Front, shutdown_timeout=settings.shutdown_grace)
    await server.start("127.0.0.1", port)
    return Live(server, app[NODE], settings)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, which it may stop, restart or kill
    (the session-wide ``redis_server`` is shared and must be left running)."""
    server = start_server(tmp_path)
    yield server
    server.stop()


@pytest.fixture
async def live_factory() -> AsyncIterator[LiveFactory]:
    started: list[Live] = []

    async def start(**overrides: Any) -> Live:
        live = await start_live(base_settings(**overrides))
        started.append(live)
        return live

    yield start
    for live in started:
        for c in live.clients:
            await c.close()
        await live.server.close()


@pytest.fixture
async def live(live_factory: LiveFactory) -> Live:
    return await live_factory()
