"""CPU of a send made on a room's owner against one forwarded from another
process, both processes' nodes in this one interpreter on a real redis-server
(started here): ``n`` sends paced ``--gap`` seconds apart, each answered,
alternating owner / forwarded for ``--rounds`` rounds.

    python -m loadtests.forward_cost --sends 1000 --rounds 2

Prints µs of this process's CPU (``time.process_time``) per send, per round.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import uvloop

from livecast.store.memory import MemoryStore
from tests.node.test_cluster_bundles import GID, outgoing, owner_and_other
from tests.redis_fixtures import start_server


async def run(url: str, sends: int, gap: float, rounds: int) -> None:
    a, b = await owner_and_other(url, MemoryStore())
    try:
        for _ in range(rounds):
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
                print(f"{who}: {us:.0f} us CPU per send", flush=True)
    finally:
        await b.close_collaborators()
        await a.close_collaborators()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sends", type=int, default=1000)
    ap.add_argument("--gap", type=float, default=0.002)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    uvloop.install()
    with tempfile.TemporaryDirectory() as directory:
        server = start_server(Path(directory))
        try:
            asyncio.run(run(server.url, args.sends, args.gap, args.rounds))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
