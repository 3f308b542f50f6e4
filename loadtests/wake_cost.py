"""What one wake-up costs a Python process on this machine: two uvloop
processes echo one byte over a socketpair, back to back (the echoing process
never goes idle) and then with a pause between round trips (it sleeps in
``epoll`` and is woken by each byte).

    python -m loadtests.wake_cost --trips 300 --gaps 0,0.01,0.025

Prints, per pause, the CPU (``getrusage``: user + system) of the echoing
process per echo and of the asking process per round trip.  The difference
between an echo that found its process awake and one that woke it is the
cost of a wake-up, which the per-process figures of a cluster are made of
(docs/benchmarks.md, "Fewer wake-ups").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import time

import uvloop


async def _echo(sock: socket.socket) -> None:
    reader, writer = await asyncio.open_connection(sock=sock)
    while data := await reader.read(64):
        writer.write(data)
    writer.close()


async def _ask(sock: socket.socket, trips: int, gap: float) -> float:
    """CPU seconds of this process per round trip."""
    reader, writer = await asyncio.open_connection(sock=sock)
    start = time.process_time()
    for _ in range(trips):
        writer.write(b"x")
        assert await reader.read(64) == b"x"
        if gap:
            await asyncio.sleep(gap)  # the pause whose cost is measured
    spent = (time.process_time() - start) / trips
    writer.close()
    return spent


def measure(trips: int, gap: float) -> tuple[float, float]:
    """(µs CPU per echo in the echoing process, µs per round trip in the asking one)."""
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the echoing process
        ours.close()
        uvloop.run(_echo(theirs))
        os._exit(0)
    theirs.close()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    asking = uvloop.run(_ask(ours, trips, gap))
    ours.close()
    os.waitpid(pid, 0)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    echoing = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / trips
    return echoing * 1e6, asking * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trips", type=int, default=300)
    ap.add_argument("--gaps", default="0,0.01,0.025", help="seconds between round trips")
    args = ap.parse_args()
    for gap in (float(g) for g in args.gaps.split(",")):
        echoing, asking = measure(args.trips, gap)
        print(f"pause {gap * 1000:g} ms: {echoing:.1f} µs CPU per echo (echoing process), "
              f"{asking:.1f} µs per round trip (asking process)", flush=True)


if __name__ == "__main__":
    main()
