"""The room owners' timers on the running event loop (node.LoopTimers)."""

from __future__ import annotations

import asyncio

from livecast.node.node import LoopTimers


async def _fires_on_the_running_loop(timers: LoopTimers) -> asyncio.AbstractEventLoop:
    loop = asyncio.get_running_loop()
    fired: asyncio.Future[str] = loop.create_future()
    timers.call_soon(lambda: fired.set_result("soon"))
    assert await fired == "soon"
    before = loop.time()
    now = timers.time()
    assert before <= now <= loop.time()  # the running loop's own clock
    later: asyncio.Future[str] = loop.create_future()
    timers.call_at(timers.time(), lambda: later.set_result("at"))
    assert await later == "at"
    assert timers.loop is loop
    return loop


def test_timers_use_the_running_loop_and_a_later_loop_after_it_closed() -> None:
    timers = LoopTimers()
    first = asyncio.run(_fires_on_the_running_loop(timers))
    second = asyncio.run(_fires_on_the_running_loop(timers))  # the first loop is closed now
    assert second is not first and first.is_closed()
