"""CPU of a forwarded send across real processes: two ``livecast serve``
processes (A and B) on one redis-server started here, a room created on A
(so A owns it), a member on each, and one sender that sends ``--sends``
messages paced ``--gap`` seconds apart, each answered before the next: on A
(the owner: nothing forwarded), then on B (every send forwarded to A, its
fate back on the room's batch), alternating for ``--rounds``.

    python -m loadtests.forward_procs --sends 1000 --gap 0.025 --rounds 3

Prints, per phase, the CPU of A, of B and of redis-server per send
(``/proc/<pid>/stat``, so the kernel's share counted where it is spent),
every message checked delivered to both members, and the medians of what a
send forwarded from B costs beyond one made on A.  Unlike
``loadtests/forward_cost.py`` (both nodes in one interpreter) each process
here wakes for its own sockets, as in a deployment.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import uvloop

from livecast.client import Client, text
from tests.redis_fixtures import start_server
from tests.test_restart import Server, cluster_env, kill_servers, start_servers

CLK_TCK = os.sysconf("SC_CLK_TCK")
GID = "fwd-room"


def cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


async def joined(s: Server, user: str) -> Client:
    c, code = await s.client(user)
    assert code == 0, code
    deadline = time.monotonic() + 15
    while (await c.join(GID))["code"] != 0:  # the room reaches B through Redis
        if time.monotonic() > deadline:
            raise RuntimeError(f"{user} could not join on :{s.port}")
        await asyncio.sleep(0.05)
    return c


async def drain(c: Client, count: int) -> int:
    """The messages ``c`` receives until ``count`` (checked contiguous)."""
    seqs: list[int] = []
    while len(seqs) < count:
        push = await asyncio.wait_for(c.next_push("msgs"), 15)
        seqs += [m["seq"] for m in push["msgs"]]
    assert seqs == list(range(seqs[0], seqs[0] + count)), "a gap or a duplicate"
    return len(seqs)


async def phase(sender: Client, members: list[Client], sends: int, gap: float,
                pids: list[int]) -> list[float]:
    before = [cpu(p) for p in pids]
    readers = [asyncio.create_task(drain(m, sends)) for m in members]
    for i in range(sends):
        r = await sender.send(GID, text(f"m{i}"))
        assert r["code"] == 0, r
        await asyncio.sleep(gap)
    assert await asyncio.gather(*readers) == [sends] * len(members)
    return [(cpu(p) - b) / sends * 1e6 for p, b in zip(pids, before, strict=True)]


async def run(url: str, redis_pid: int, directory: Path, sends: int, gap: float,
              rounds: int) -> None:
    servers: list[Server] = []
    await start_servers(cluster_env(url, directory), 2, servers)
    a, b = servers
    try:
        await a.ok("group_open_http_svc", "create_group",
                   {"Type": "AVChatRoom", "GroupId": GID, "Name": "forward"})
        members = [await joined(a, "ma"), await joined(b, "mb")]
        on_a, on_b = await joined(a, "sa"), await joined(b, "sb")
        assert a.proc is not None and b.proc is not None
        pids = [a.proc.pid, b.proc.pid, redis_pid]
        names = ["A (owner)", "B", "redis"]
        extra: list[list[float]] = []
        for n in range(rounds):
            costs = {}
            for where, sender in (("on A", on_a), ("on B", on_b)):
                costs[where] = await phase(sender, members, sends, gap, pids)
                shown = ", ".join(f"{name} {us:.0f}" for name, us in zip(names, costs[where],
                                                                         strict=True))
                print(f"round {n + 1}, sends {where}: µs CPU per send: {shown}; "
                      f"total {sum(costs[where]):.0f}", flush=True)
            extra.append([y - x for x, y in zip(costs["on A"], costs["on B"], strict=True)])
        medians = [statistics.median(col) for col in zip(*extra, strict=True)]
        print("forwarded from B, beyond a send on A (medians, µs per send): "
              + ", ".join(f"{name} {us:+.0f}" for name, us in zip(names, medians, strict=True))
              + f"; total {sum(medians):+.0f}", flush=True)
    finally:
        await kill_servers(servers)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sends", type=int, default=1000)
    ap.add_argument("--gap", type=float, default=0.025)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    uvloop.install()
    with tempfile.TemporaryDirectory() as d:
        directory = Path(d)
        server = start_server(directory)
        try:
            assert server.process is not None
            asyncio.run(run(server.url, server.process.pid, directory, args.sends, args.gap,
                            args.rounds))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
