"""A recovery storm: every member of the rooms loses its socket at once, the
rooms go on, and every member rejoins with ``sinceSeq`` within seconds
(docs/benchmarks.md, "History and recovery").

    python -m loadtests.recovery_storm --members 10000 --rooms 10 --rate 10 \\
        --away 3 --servers 2

Started here, on free loopback ports: a ``redis-server`` (no persistence) and
``--servers`` ``livecast serve`` processes on it (a cluster; ``--servers 0``:
one ``livecast serve`` without Redis, history in memory).  The members are
guests, spread evenly over the servers and rooms, opened by ``--procs``
client processes (raw WebSocket clients, ``livecast.bench.wire``).  One
logged-in sender per room sends ``--rate`` messages per second throughout.

Phases: all members join and follow the rooms; at the blip every client
aborts all its sockets; ``--away`` seconds later every member reconnects
and rejoins with ``sinceSeq`` (its last seq) and ``historyEpoch``, all at
once (``--concurrency`` connects in flight per client process).  A member is
live again when its join reply says ``recovered: true``; the reply's
messages must continue its last seq, and the live messages after them too
(gaps and duplicates are counted, and must be 0).

Printed, one JSON line: ``live_s`` (from the rejoin start until the last
member is live again), ``recovered``/``not_recovered``, ``gaps``,
``duplicates``, the servers' CPU seconds in the storm window
(``/proc/<pid>/stat``), and Redis's commands in the window (``INFO
commandstats`` difference: ``xrange`` is the stream reads, i.e. history
seeds; ``evalsha`` every script call, publishes included).  ``seq_events``
lists the first gaps and duplicates seen, each as (room, in a join's
``reply`` or a ``live`` batch, the member's last seq, the seq that came,
whether the member had rejoined), so that a failed run says where.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

import orjson

from livecast.bench.wire import client_frame, handshake_request, read_frame, seq_span
from livecast.client import Client, text
from livecast.core.usersig import mint
from livecast.core.wsframe import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT
from livecast.runner import raise_fd_limit

SDKAPPID = 1400000000
TICK_S = float(os.environ.get("LIVECAST_TICK_MS", "100")) / 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------ a member
@dataclass
class Tally:
    recovered: int = 0
    not_recovered: int = 0
    gaps: int = 0
    duplicates: int = 0
    failed: int = 0
    why: dict[str, int] = field(default_factory=dict)  # failed joins by reason
    # the first gaps and duplicates seen: (room, where, last seq, seq, rejoined)
    events: list[tuple[str, str, int, int, bool]] = field(default_factory=list)
    live_at: list[float] = field(default_factory=list)


class Member(asyncio.Protocol):
    """A guest that joins one room and follows its seq."""

    def __init__(self, tally: Tally, host: str, port: int, room: str) -> None:
        self.tally, self.room = tally, room
        self.hello = handshake_request(host, port, "/v1/ws")
        self.buf = b""
        self.handshaking = True
        self.last_seq = 0
        self.epoch: int | None = None
        self.rejoining = False
        self.joined: asyncio.Future[bool] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.hello)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._fail("lost")

    def data_received(self, data: bytes) -> None:
        data, self.buf = self.buf + data, b""
        if self.handshaking:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.buf = data
                return
            self.handshaking = False
            self._join()
            data = data[end + 4:]
        pos = 0
        while (f := read_frame(data, pos)) is not None:
            op, start, pos, _mask = f
            if op == OP_TEXT:
                self._text(data[start:pos])
            elif op == OP_PING and self.transport is not None:
                self.transport.write(client_frame(data[start:pos], OP_PONG))
            elif op == OP_CLOSE:
                code = int.from_bytes(data[start:start + 2], "big") if pos - start >= 2 else 1005
                self._fail(f"close {code}")
                self.abort()
                return
        self.buf = data[pos:]

    def _fail(self, why: str) -> None:
        if self.joined is not None and not self.joined.done():
            self.tally.why[why] = self.tally.why.get(why, 0) + 1
            self.joined.set_result(False)

    def _join(self) -> None:
        req: dict[str, Any] = {"op": "join", "id": 1, "groupId": self.room}
        if self.rejoining and self.epoch is not None:
            req.update(sinceSeq=self.last_seq, historyEpoch=self.epoch)
        assert self.transport is not None
        self.transport.write(client_frame(orjson.dumps(req)))

    def _text(self, payload: bytes) -> None:
        if payload.startswith(b'{"op":"msgs"'):
            count, first, last = seq_span(payload, 0, len(payload))
            if count == last - first + 1:  # contiguous within the batch (the server's rule)
                self._follow(range(first, last + 1))
            else:
                self._follow([int(m["seq"]) for m in orjson.loads(payload)["msgs"]])
            return
        frame = orjson.loads(payload)
        if frame.get("op") == "reply" and frame.get("id") == 1:
            self._joined(frame)

    def _joined(self, r: dict[str, Any]) -> None:
        ok = r.get("code") == 0
        if ok:
            if self.rejoining:
                t = self.tally
                if r.get("recovered"):
                    t.recovered += 1
                    t.live_at.append(time.monotonic())
                else:
                    t.not_recovered += 1
                self._follow([int(m["seq"]) for m in r.get("msgs", [])], "reply")
                if not r.get("recovered"):
                    self.last_seq = int(r.get("lastSeq", self.last_seq))
            else:
                self.last_seq = int(r.get("lastSeq", 0))
            self.epoch = int(r["historyEpoch"])
        if not ok:
            self._fail(f"code {r.get('code')}")
        if self.joined is not None and not self.joined.done():
            self.joined.set_result(ok)

    def _follow(self, seqs: Iterable[int], where: str = "live") -> None:
        t = self.tally
        for seq in seqs:
            if seq <= self.last_seq:
                t.duplicates += 1
            elif seq > self.last_seq + 1:
                t.gaps += seq - self.last_seq - 1
            else:
                self.last_seq = seq
                continue
            if len(t.events) < 20:  # where it happened, for the report
                t.events.append((self.room, where, self.last_seq, seq, self.rejoining))
            self.last_seq = max(self.last_seq, seq)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


async def _open(m: Member, host: str, port: int, sem: asyncio.Semaphore) -> bool:
    loop = asyncio.get_running_loop()
    async with sem:
        m.joined = loop.create_future()
        m.handshaking, m.buf = True, b""
        for attempt in range(10):
            try:
                await loop.create_connection(lambda: m, host, port)
                break
            except OSError:
                await asyncio.sleep(0.1 * 2 ** min(attempt, 4))  # backlog full: back off
        else:
            m.tally.why["connect"] = m.tally.why.get("connect", 0) + 1
            return False
        try:
            return await asyncio.wait_for(m.joined, 30)
        except TimeoutError:
            m.tally.why["timeout"] = m.tally.why.get("timeout", 0) + 1
            return False


def client_main(targets: list[tuple[str, int, str]], concurrency: int, pipe: Connection) -> None:
    raise_fd_limit()
    asyncio.run(_client(targets, concurrency, pipe))


async def _client(targets: list[tuple[str, int, str]], concurrency: int,
                  pipe: Connection) -> None:
    tally = Tally()
    members = [Member(tally, h, p, r) for h, p, r in targets]
    sem = asyncio.Semaphore(concurrency)
    loop = asyncio.get_running_loop()

    async def command() -> str:
        return str(await loop.run_in_executor(None, pipe.recv))

    ok = await asyncio.gather(*(_open(m, h, p, sem) for m, (h, p, _r) in zip(members, targets,
                                                                            strict=True)))
    pipe.send(("ready", (sum(ok), dict(tally.why))))
    tally.why.clear()
    assert await command() == "drop"
    for m in members:
        m.abort()
    pipe.send(("dropped", 0))
    assert await command() == "rejoin"
    for m in members:
        m.rejoining = True
    ok = await asyncio.gather(*(_open(m, h, p, sem) for m, (h, p, _r) in zip(members, targets,
                                                                            strict=True)))
    tally.failed = len(ok) - sum(ok)
    pipe.send(("rejoined", max(tally.live_at, default=0.0)))
    last = await loop.run_in_executor(None, pipe.recv)  # the room's final seqs
    while any(m.last_seq < last[m.room] for m in members if m.transport is not None):
        await asyncio.sleep(0.05)  # draining the last live batches (bounded below)
        if time.monotonic() > _deadline[0]:
            break
    pipe.send(("result", {"recovered": tally.recovered, "not_recovered": tally.not_recovered,
                          "gaps": tally.gaps, "duplicates": tally.duplicates,
                          "failed": tally.failed, "why": tally.why, "events": tally.events,
                          "behind": sum(m.last_seq < last[m.room] for m in members)}))
    for m in members:
        m.abort()


_deadline = [float("inf")]


# ------------------------------------------------------------------ the servers
def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_calls(port: int) -> dict[str, int]:
    out = subprocess.run(["redis-cli", "-p", str(port), "INFO", "commandstats"],
                         capture_output=True, text=True, check=True).stdout
    calls: dict[str, int] = {}
    for line in out.splitlines():
        if line.startswith("cmdstat_"):
            name, rest = line[8:].split(":", 1)
            calls[name] = int(rest.split("calls=")[1].split(",")[0])
    return calls


def rest(port: int, key: str, command: str, body: dict[str, Any]) -> dict[str, Any]:
    query = (f"sdkappid={SDKAPPID}&identifier=administrator&random=1&contenttype=json"
             f"&usersig={mint(SDKAPPID, key, 'administrator', time.time(), 3600)}")
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v4/group_open_http_svc/{command}?{query}",
        data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        result: dict[str, Any] = json.load(resp)
    return result


def wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, "livecast serve exited at start"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, "livecast serve never became ready"
        time.sleep(0.1)  # polling a process for readiness


@dataclass
class Stack:
    ports: list[int]
    procs: list[subprocess.Popen[bytes]]
    redis_port: int = 0

    def stop(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()


def start_stack(servers: int, key: str, tmp: Path, env_extra: dict[str, str]) -> Stack:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECAST_")}
    env.update(LIVECAST_SECRET_KEY=key, LIVECAST_CONNECT_GLOBAL_RATE="0",
               LIVECAST_LOGIN_GLOBAL_RATE="0", LIVECAST_DATA_DIR=str(tmp / "data"),
               LIVECAST_LOG_LEVEL="warning", **env_extra)
    stack = Stack([], [])
    if servers:
        stack.redis_port = free_port()
        redis = shutil.which("redis-server") or "redis-server"
        stack.procs.append(subprocess.Popen(
            [redis, "--port", str(stack.redis_port), "--save", "", "--appendonly", "no",
             "--bind", "127.0.0.1"], stdout=subprocess.DEVNULL))
        time.sleep(0.3)  # redis-server binds at once; the first server's start retries anyway
        env["LIVECAST_REDIS_URL"] = f"redis://127.0.0.1:{stack.redis_port}"
    for _ in range(max(1, servers)):
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "livecast", "serve"],
                                env=dict(env, LIVECAST_PORT=str(port)),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stack.ports.append(port)
        stack.procs.append(proc)
        wait_ready(port, proc)
    return stack


# ------------------------------------------------------------------ the storm
async def senders(port: int, key: str, rooms: list[str], rate: float,
                  stop: asyncio.Event) -> dict[str, int]:
    """One logged-in sender per room at ``rate``; returns each room's last seq."""
    last: dict[str, int] = dict.fromkeys(rooms, 0)

    async def one(room: str, i: int) -> None:
        c = Client(f"ws://127.0.0.1:{port}/v1/ws")
        await c.connect()
        user = f"sender{i}"
        await c.login(SDKAPPID, user, mint(SDKAPPID, key, user, time.time(), 3600))
        await c.join(room)
        n = 0
        while not stop.is_set():
            r = await c.send(room, text(f"m{n}"))
            if r.get("code") == 0 and r.get("msgSeq"):
                last[room] = max(last[room], int(r["msgSeq"]))
            n += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1 / rate)
        await c.close()

    await asyncio.gather(*(one(r, i) for i, r in enumerate(rooms)))
    return last


async def storm(a: argparse.Namespace) -> dict[str, Any]:
    key = secrets.token_hex(16)
    tmp = Path(tempfile.mkdtemp(prefix="storm-"))
    stack = start_stack(a.servers, key, tmp, {})
    try:
        return await _storm(a, key, stack)
    finally:
        stack.stop()
        shutil.rmtree(tmp, ignore_errors=True)


async def _storm(a: argparse.Namespace, key: str, stack: Stack) -> dict[str, Any]:
    rooms = [f"storm-{i}" for i in range(a.rooms)]
    for r in rooms:
        rest(stack.ports[0], key, "create_group", {"Type": "AVChatRoom", "GroupId": r,
                                                   "Name": r})
    targets = [("127.0.0.1", stack.ports[i % len(stack.ports)], rooms[i % len(rooms)])
               for i in range(a.members)]
    pipes, procs = [], []
    ctx = multiprocessing.get_context("spawn")
    for k in range(a.procs):
        mine, theirs = ctx.Pipe()
        p = ctx.Process(target=client_main, args=(targets[k::a.procs], a.concurrency, theirs))
        p.start()
        pipes.append(mine)
        procs.append(p)
    loop = asyncio.get_running_loop()

    async def each(what: str) -> list[Any]:
        got = await asyncio.gather(*(loop.run_in_executor(None, p.recv) for p in pipes))
        assert all(g[0] == what for g in got), got
        return [g[1] for g in got]

    stop = asyncio.Event()
    sending = asyncio.create_task(senders(stack.ports[-1], key, rooms, a.rate, stop))
    ready = await each("ready")
    joined = sum(n for n, _why in ready)
    first_failures: dict[str, int] = {}
    for _n, why in ready:
        for k, v in why.items():
            first_failures[k] = first_failures.get(k, 0) + v
    await asyncio.sleep(a.warm)  # members follow the rooms for a while
    for p in pipes:
        p.send("drop")
    await each("dropped")
    await asyncio.sleep(a.away)  # the network is away; the rooms go on
    server_pids = [p.pid for p in stack.procs[(1 if a.servers else 0):]]
    cpu0 = [cpu_seconds(pid) for pid in server_pids]
    redis0 = redis_calls(stack.redis_port) if a.servers else {}
    started = time.monotonic()
    for p in pipes:
        p.send("rejoin")
    live_at = max(await each("rejoined"))
    cpu = sum(cpu_seconds(pid) - c for pid, c in zip(server_pids, cpu0, strict=True))
    redis1 = redis_calls(stack.redis_port) if a.servers else {}
    window = time.monotonic() - started
    stop.set()
    last = await sending
    _deadline[0] = time.monotonic() + 10
    for p in pipes:
        p.send(last)
    results = await each("result")
    for p in procs:
        p.join(10)
    total = {k: sum(r[k] for r in results) for k in results[0] if k not in ("why", "events")}
    why_rejoin: dict[str, int] = {}
    for r in results:
        for k, v in r["why"].items():
            why_rejoin[k] = why_rejoin.get(k, 0) + v
    calls = {k: redis1.get(k, 0) - redis0.get(k, 0) for k in redis1}
    return {"members": a.members, "joined": joined, "rooms": a.rooms, "servers": a.servers,
            "rate": a.rate, "away_s": a.away, "join_failures": first_failures,
            "rejoin_failures": why_rejoin, **total,
            "seq_events": [e for r in results for e in r["events"]][:20],
            "live_s": round(live_at - started, 3) if live_at else None,
            "window_s": round(window, 3), "server_cpu_s": round(cpu, 3),
            "redis_calls": sum(calls.values()),
            "redis_xrange": calls.get("xrange", 0), "redis_evalsha": calls.get("evalsha", 0),
            "redis_by_command": {k: v for k, v in sorted(calls.items()) if v}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--members", type=int, default=10_000)
    p.add_argument("--rooms", type=int, default=10)
    p.add_argument("--rate", type=float, default=5.0, help="messages per second per room")
    p.add_argument("--servers", type=int, default=2, help="cluster processes (0: one, no Redis)")
    p.add_argument("--procs", type=int, default=4, help="client processes")
    p.add_argument("--concurrency", type=int, default=500, help="connects in flight per process")
    p.add_argument("--warm", type=float, default=2.0)
    p.add_argument("--away", type=float, default=3.0)
    a = p.parse_args(argv)
    print(json.dumps(asyncio.run(storm(a))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
