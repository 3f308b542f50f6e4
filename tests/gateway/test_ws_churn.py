"""Connection churn leaves nothing behind: once a connection's socket is
closed, no timer of the server holds it (the login deadline, the close's
abort after LIVECAST_SHUTDOWN_GRACE), so its memory is freed at once rather
than up to LIVECAST_LOGIN_TIMEOUT seconds later (docs/benchmarks.md, "Memory
after connection churn")."""

from __future__ import annotations

import asyncio
import gc

from livecast.gateway.ws import WsConnection
from livecast.node.node import Node
from tests.conftest import LiveFactory

CYCLES = 20


def held(node: Node) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, WsConnection) and o.node is node)


async def until(condition: object, timeout: float = 10.0) -> None:
    """Wait (bounded) until ``condition()`` holds: the server's side of a close
    ends when its transport does, which no client event reports."""
    async with asyncio.timeout(timeout):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.01)


async def test_closed_connections_are_freed_before_their_login_deadline(
        live_factory: LiveFactory) -> None:
    live = await live_factory(login_timeout=600, shutdown_grace=600)
    gid = await live.room("churn")
    for i in range(CYCLES):
        c = await live.client(f"u{i}", join=gid)
        assert (await c.quit(gid))["code"] == 0
        await c.close()
    guest = await live.client()        # never logs in: its deadline is still 600 s away
    await guest.close()
    await until(lambda: not live.node.sockets)
    assert held(live.node) == 0
