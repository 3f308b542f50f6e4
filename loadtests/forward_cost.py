"""CPU of a send made on a room's owner against one forwarded from another
process, both processes' nodes in this one interpreter on a real redis-server
(started here): ``n`` sends paced ``--gap`` seconds apart, each answered,
alternating owner / forwarded for ``--rounds`` rounds.

    python -m loadtests.forward_cost --sends 1000 --rounds 2
    python -m loadtests.forward_cost --sends 1000 --rounds 2 --following

``--following``: the forwarding process follows the room, as one with members
in it does (subscribed to its batches; a Delivered fate then rides on the
tick's batch instead of a ``FateNotice``: docs/design.md, "The cluster").
Without it the forwarding process has no member in the room (a REST send).

Prints µs of this process's CPU (``time.process_time``) per send, per round,
and the median ratio forwarded / on the owner.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import uvloop

from livecast.node.node import Node
from livecast.store.memory import MemoryStore
from tests.node.test_cluster_bundles import GID, outgoing, owner_and_other
from tests.redis_fixtures import start_server


async def follow(b: Node) -> None:
    """``b`` subscribes to the room as the hub's first join makes it do."""
    b.link.watch(GID, True)
    async with asyncio.timeout(10):
        while GID not in b.link.broker.refs or GID not in getattr(b.link, "following", {GID}):
            await asyncio.sleep(0.01)  # the subscription's confirmation has no event here
        await b.link.broker.ready()  # one more round trip: the SUBSCRIBE is through


async def run(url: str, sends: int, gap: float, rounds: int, following: bool) -> None:
    a, b = await owner_and_other(url, MemoryStore())
    ratios: list[float] = []
    try:
        if following:
            await follow(b)
        for _ in range(rounds):
            costs: list[float] = []
            for who, node in (("on the owner", a), ("forwarded", b)):
                started = time.process_time()
                answers = []
                for i in range(sends):
                    msg, answer = outgoing(node, i)
                    node.submit(GID, msg)
                    answers.append(answer)
                    await asyncio.sleep(gap)
                await asyncio.gather(*answers)
                us = (time.process_time() - started) / sends * 1e6
                costs.append(us)
                print(f"{who}: {us:.0f} us CPU per send", flush=True)
            ratios.append(costs[1] / costs[0])
        print(f"forwarded / on the owner: {statistics.median(ratios):.2f} (median of "
              f"{', '.join(f'{r:.2f}' for r in ratios)})", flush=True)
    finally:
        await b.close_collaborators()
        await a.close_collaborators()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sends", type=int, default=1000)
    ap.add_argument("--gap", type=float, default=0.002)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--following", action="store_true",
                    help="the forwarding process is subscribed to the room (has members in it)")
    args = ap.parse_args()
    uvloop.install()
    with tempfile.TemporaryDirectory() as directory:
        server = start_server(Path(directory))
        try:
            asyncio.run(run(server.url, args.sends, args.gap, args.rounds, args.following))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
