"""Connection churn leaves nothing behind: once a connection's socket is
closed, no timer of the server holds it (the login deadline, the close's
abort after LIVECAST_SHUTDOWN_GRACE), so its memory is freed at once rather
than up to LIVECAST_LOGIN_TIMEOUT seconds later (docs/benchmarks.md, "Memory
after connection churn")."""

from __future__ import annotations

import gc

from livecast.gateway.ws import WsConnection
from livecast.node.node import Node
from tests.conftest import LiveFactory
from tests.gateway.test_stall import until

CYCLES = 20


def held(node: Node) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, WsConnection) and o.node is node)


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

    async def all_lost() -> bool:  # the server's side ends with its transport: no event
        return not live.node.sockets

    await until(all_lost)
    assert held(live.node) == 0
