"""Client processes: each opens its share of the members and counts deliveries.

A client process (``worker_main``, started with multiprocessing) talks to the
bench over one Pipe:
  -> ("progress", {"joined", "failed", "deliveries", "frames", "gaps"}) every
     ``PROGRESS_EVERY`` seconds
  -> ("ready", {"joined_by_room": [...], "failed": {reason: n}}) once all tried
  <- ("stop", [max seq delivered, per room])
  -> ("result", {...final counts, latency samples...}), then it exits.

Member ``i`` (global index) joins room ``i % rooms``; with ``per_source`` > 0
it binds its socket to 127.0.0.(2 + i // per_source) before connecting, so
that more than one address's worth of ephemeral ports can be used.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from livecast.bench.dialects import DIALECTS
from livecast.bench.member import Member, Tally
from livecast.bench.wire import handshake_request
from livecast.core.usersig import mint
from livecast.runner import raise_fd_limit

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
PROGRESS_EVERY = 0.5


@dataclass(frozen=True, slots=True)
class Plan:
    """One client process's share of the members."""

    host: str
    port: int
    path: str
    sdkappid: int
    key: str                 # "" -> members join as guests, without login
    rooms: tuple[str, ...]
    first: int               # global index of the first member
    count: int
    per_source: int          # 0: no bind; else bind to 127.0.0.(2 + i // per_source)
    sample_every: int        # member i samples latency when i % sample_every == 0
    concurrency: int
    timeout: float
    dialect: str = "livecast"
    user_prefix: str = "m"


def source_address(i: int, per_source: int) -> str | None:
    """The loopback source address of member ``i`` (None: let the kernel choose)."""
    if per_source <= 0:
        return None
    return f"127.0.0.{2 + i // per_source}"


def make_socket(src: str | None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    if src is not None:
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((src, 0))
    return sock


async def connect(host: str, port: int, member: Member, src: str | None,
                  limit: float) -> str:
    """Connect, upgrade, login and join; "" when joined, else why not."""
    loop = asyncio.get_running_loop()
    sock = make_socket(src)
    try:
        async with asyncio.timeout(limit):
            await loop.sock_connect(sock, (host, port))
            await loop.create_connection(lambda: member, sock=sock)
            code = await member.ready
    except (OSError, TimeoutError) as exc:
        sock.close()
        member.abort()
        if isinstance(exc, OSError) and exc.errno:
            return f"errno {exc.errno}"
        return type(exc).__name__
    if code:
        member.abort()
        return f"code {code}"
    return ""


class Opener:
    """Opens members ``concurrency`` at a time and keeps the tally."""

    def __init__(self, plan: Plan, tally: Tally) -> None:
        self.plan = plan
        self.tally = tally
        self.members: list[Member] = []
        self.joined_by_room = [0] * len(plan.rooms)
        self.failed: Counter[str] = Counter()
        self.hello = handshake_request(plan.host, plan.port, plan.path)
        self.dialect = DIALECTS[plan.dialect]

    async def open_all(self) -> None:
        todo = iter(range(self.plan.first, self.plan.first + self.plan.count))
        await asyncio.gather(*(self._runner(todo) for _ in range(self.plan.concurrency)))

    async def _runner(self, todo: Iterator[int]) -> None:
        for i in todo:
            reason = await self._open(i)
            if reason:
                self.failed[reason] += 1

    async def _open(self, i: int) -> str:
        p = self.plan
        room = i % len(p.rooms)
        user = f"{p.user_prefix}{i}"
        sig = mint(p.sdkappid, p.key, user, time.time()) if p.key else ""
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        member = Member(self.tally, self.dialect, self.hello,
                        self.dialect.setup(p.sdkappid, user, sig, p.rooms[room]), room,
                        i % p.sample_every == 0, ready)
        reason = await connect(p.host, p.port, member, source_address(i, p.per_source),
                               p.timeout)
        if not reason:
            self.members.append(member)
            self.joined_by_room[room] += 1
        return reason

    def progress(self) -> dict[str, int]:
        return {"joined": len(self.members), "failed": sum(self.failed.values()),
                **self.tally.snapshot()}

    def result(self, room_max: list[int]) -> dict[str, Any]:
        t = self.tally
        tail = sum(m.tail_gap(room_max[m.room]) for m in self.members) if room_max else 0
        return {"joined_by_room": self.joined_by_room, "failed": dict(self.failed),
                "deliveries": t.deliveries, "frames": t.frames, "gaps": t.gaps + tail,
                "disorder": t.disorder, "kicked": t.kicked,
                "closes": {str(k): v for k, v in t.closes.items()}, "latencies": t.latencies}


def worker_main(plan: Plan, pipe: Connection) -> None:
    """Entry point of one client process."""

    raise_fd_limit()
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency
        pass
    asyncio.run(_work(plan, pipe))


async def _work(plan: Plan, pipe: Connection) -> None:
    loop = asyncio.get_running_loop()
    opener = Opener(plan, Tally())
    stop: asyncio.Future[list[int]] = loop.create_future()

    def on_pipe() -> None:
        try:
            while pipe.poll():
                kind, payload = pipe.recv()
                if kind == "stop" and not stop.done():
                    stop.set_result(payload)
        except (EOFError, OSError):  # the bench is gone: stop without tail counts
            loop.remove_reader(pipe.fileno())
            if not stop.done():
                stop.set_result([])

    loop.add_reader(pipe.fileno(), on_pipe)
    os.set_blocking(pipe.fileno(), True)  # add_reader made it non-blocking: messages are whole
    reporter = asyncio.create_task(_report(opener, pipe))
    await opener.open_all()
    pipe.send(("ready", {"joined_by_room": opener.joined_by_room,
                         "failed": dict(opener.failed)}))
    room_max = await stop
    reporter.cancel()
    for m in opener.members:
        m.abort()
    if room_max:
        loop.remove_reader(pipe.fileno())
        pipe.send(("result", opener.result(room_max)))


async def _report(opener: Opener, pipe: Connection) -> None:
    while True:
        await asyncio.sleep(PROGRESS_EVERY)
        pipe.send(("progress", opener.progress()))
