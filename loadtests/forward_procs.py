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
from loadtests.idle_cost import schedstat
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
                pids: list[int]) -> tuple[list[float], list[float]]:
    before = [cpu(p) for p in pids]
    ran = [schedstat(p)[1] for p in pids]
    readers = [asyncio.create_task(drain(m, sends)) for m in members]
    for i in range(sends):
        r = await sender.send(GID, text(f"m{i}"))
        assert r["code"] == 0, r
        await asyncio.sleep(gap)
    assert await asyncio.gather(*readers) == [sends] * len(members)
    return ([(cpu(p) - b) / sends * 1e6 for p, b in zip(pids, before, strict=True)],
            [(schedstat(p)[1] - r) / sends for p, r in zip(pids, ran, strict=True)])


async def run(url: str, redis_pid: int, directory: Path, sends: int, gap: float,
              rounds: int, where: str = "ab") -> None:
    servers: list[Server] = []
    await start_servers(cluster_env(url, directory), 2, servers)
    a, b = servers
    clients: list[Client] = []
    try:
        await a.ok("group_open_http_svc", "create_group",
                   {"Type": "AVChatRoom", "GroupId": GID, "Name": "forward"})
        members = [await joined(a, "ma"), await joined(b, "mb")]
        on_a, on_b = await joined(a, "sa"), await joined(b, "sb")
        clients += [*members, on_a, on_b]
        assert a.proc is not None and b.proc is not None
        pids = [a.proc.pid, b.proc.pid, redis_pid]
        names = ["A (owner)", "B", "redis"]
        first, last = ("ab".index(where[0]), "ab".index(where[-1]) + 1)
        print(f"pids: A {pids[0]}, B {pids[1]}, redis {pids[2]}", flush=True)
        extra: list[list[float]] = []
        for n in range(rounds):
            costs = {}
            for where, sender in (("on A", on_a), ("on B", on_b))[first:last]:
                costs[where], woken = await phase(sender, members, sends, gap, pids)
                shown = ", ".join(f"{name} {us:.0f} ({w:.1f} runs)" for name, us, w in zip(
                    names, costs[where], woken, strict=True))
                print(f"round {n + 1}, sends {where}: µs CPU per send (times on a CPU per "
                      f"send): {shown}; total {sum(costs[where]):.0f}", flush=True)
            if len(costs) == 2:
                extra.append([y - x for x, y in zip(costs["on A"], costs["on B"],
                                                    strict=True)])
        if not extra:
            return
        medians = [statistics.median(col) for col in zip(*extra, strict=True)]
        print("forwarded from B, beyond a send on A (medians, µs per send): "
              + ", ".join(f"{name} {us:+.0f}" for name, us in zip(names, medians, strict=True))
              + f"; total {sum(medians):+.0f}", flush=True)
    finally:
        for c in clients:
            await c.close()
        await kill_servers(servers)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sends", type=int, default=1000)
    ap.add_argument("--gap", type=float, default=0.025)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--where", choices=["ab", "a", "b"], default="ab",
                    help="the sender's process: A then B (default), or only one (profiling)")
    args = ap.parse_args()
    uvloop.install()
    with tempfile.TemporaryDirectory() as d:
        directory = Path(d)
        server = start_server(directory)
        try:
            assert server.process is not None
            asyncio.run(run(server.url, server.process.pid, directory, args.sends, args.gap,
                            args.rounds, args.where))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
