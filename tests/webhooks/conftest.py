"""A fake business backend for the webhook wiring tests: a real aiohttp app
on loopback that records every callback (query string and JSON body) and
answers per command, or per message, as each test tells it.

Synchronisation is by an ``asyncio.Condition`` notified on every callback:
tests await a predicate over the recorded callbacks (``wait_for``), never a
sleep.  ``dead`` makes every handler hang until teardown (a hung backend).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

OK: dict[str, Any] = {"ActionStatus": "OK", "ErrorInfo": "", "ErrorCode": 0}
WAIT = 10.0  # a safety net for awaited conditions; never reached when things work

Reply = dict[str, Any] | web.StreamResponse
Replier = Callable[["Seen"], Reply]


@dataclass
class Seen:
    """One recorded callback."""

    query: list[tuple[str, str]]
    raw: bytes

    @property
    def q(self) -> dict[str, str]:
        return dict(self.query)

    @property
    def command(self) -> str:
        return self.q["CallbackCommand"]

    @property
    def body(self) -> dict[str, Any]:
        result: dict[str, Any] = orjson.loads(self.raw)
        return result


def code(n: int, info: str = "", **fields: Any) -> Replier:
    """A replier answering HTTP 200 with ``ErrorCode`` ``n``."""
    reply = {"ActionStatus": "OK" if n == 0 else "FAIL", "ErrorInfo": info, "ErrorCode": n,
             **fields}
    return lambda seen: reply


def status(http_status: int, text: str) -> Replier:
    return lambda seen: web.Response(status=http_status, text=text)


@dataclass
class Backend:
    """The business backend.  ``replies`` maps a CallbackCommand to its replier
    (default: OK)."""

    server: TestServer | None = None
    seen: list[Seen] = field(default_factory=list)
    replies: dict[str, Replier] = field(default_factory=dict)
    dead: bool = False
    release: asyncio.Event = field(default_factory=asyncio.Event)
    gates: dict[int, asyncio.Event] = field(default_factory=dict)  # by Random: held until set
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/im/callback"))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        seen = Seen(list(request.query.items()), await request.read())
        async with self.changed:
            self.seen.append(seen)
            self.changed.notify_all()
        if self.dead:
            await self.release.wait()
        gate = self.gates.get(seen.body.get("Random", -1))
        if gate is not None:
            await gate.wait()
        reply = self.replies.get(seen.command, lambda s: OK)(seen)
        if isinstance(reply, web.StreamResponse):
            return reply
        return web.json_response(reply)

    def of(self, command: str, **match: Any) -> list[Seen]:
        """The callbacks of ``command`` whose body has every ``match`` field."""
        return [s for s in self.seen if s.command == command
                and all(s.body.get(k) == v for k, v in match.items())]

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(predicate), WAIT)

    async def wait_count(self, command: str, n: int, **match: Any) -> list[Seen]:
        """Wait until at least ``n`` callbacks of ``command`` (matching) arrived."""
        await self.wait_for(lambda: len(self.of(command, **match)) >= n)
        return self.of(command, **match)


async def serve_callbacks(handle: Callable[[web.Request], Awaitable[web.StreamResponse]]
                          ) -> TestServer:
    """A real aiohttp app on loopback answering POST /im/callback with ``handle``."""
    app = web.Application()
    app.router.add_post("/im/callback", handle)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    return server


@pytest.fixture
async def business() -> AsyncIterator[Backend]:
    b = Backend()
    b.server = await serve_callbacks(b.handle)
    yield b
    b.release.set()
    await b.server.close()
