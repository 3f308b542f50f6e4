"""One round of the bench: a server, its members, a paced publish, the counts.

Order within a round (each step's reading is taken where named):
1. start the server (or use the running one) and create the rooms (REST);
2. open the senders in this process: they log in, join, and warm the
   server's code paths; after ``settle`` seconds, RSS *before*;
3. start the client processes, which open the members; after ``settle``
   seconds (member tips flushed), RSS *after* and CPU at the window's start;
4. publish for ``duration`` seconds, a progress line each second;
5. drain: wait for every send's reply and every delivery to be counted,
   while progress is made (``_drain``);
   CPU at the window's end;
6. stop the client processes (they count tail gaps against the rooms' last
   seqs and return their counts), close the senders, stop the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from livecast.bench import server as srv
from livecast.bench.clients import Plan, connect, worker_main
from livecast.bench.dialects import DIALECTS
from livecast.bench.member import Tally
from livecast.bench.report import Round, percentiles
from livecast.bench.senders import Ledger, Publisher, Sender
from livecast.bench.wire import handshake_request
from livecast.core.usersig import mint

Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Workload:
    members: int
    rooms: int
    senders: int              # per room
    rate: float               # messages per second per room
    duration: float
    mix: tuple[int, int, int, int]
    size: int                 # text bytes per message
    tick_ms: int
    procs: int
    per_source: int           # members per loopback source address (0: no bind)
    sample_every: int
    concurrency: int          # connects in flight, over all client processes
    guests: bool
    settle: float = 1.5
    drain: float = 8.0        # give up after this long without a reply or a delivery
    drain_max: float = 0.0    # longest drain after publishing (0: ``duration``)
    timeout: float = 60.0


@dataclass(frozen=True, slots=True)
class Access:
    sdkappid: int
    key: str
    admin: str
    server_env: tuple[tuple[str, str], ...] = ()


def room_ids(n: int) -> tuple[str, ...]:
    return tuple(f"bench-{i}" for i in range(n))


def plans(server: srv.ServerProc, w: Workload, acc: Access) -> list[Plan]:
    """Members split evenly over the client processes."""
    procs = max(1, min(w.procs, w.members))
    per, extra = divmod(w.members, procs)
    out, first = [], 0
    for k in range(procs):
        count = per + (1 if k < extra else 0)
        out.append(Plan(server.host, server.port, server.path, acc.sdkappid,
                        "" if w.guests else acc.key, room_ids(w.rooms), first, count,
                        w.per_source if w.members > w.per_source else 0, w.sample_every,
                        max(1, w.concurrency // procs), w.timeout, server.dialect))
        first += count
    return out


class Workers:
    """The client processes and what they last reported."""

    def __init__(self, plans: list[Plan]) -> None:
        ctx = multiprocessing.get_context("spawn")
        loop = asyncio.get_running_loop()
        self.procs: list[Any] = []
        self.pipes: list[Any] = []
        n = len(plans)
        self.progress: list[dict[str, int]] = [{} for _ in range(n)]
        self.ready: list[dict[str, Any] | None] = [None] * n
        self.results: list[dict[str, Any] | None] = [None] * n
        self.changed = asyncio.Event()
        for i, plan in enumerate(plans):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(plan, theirs), daemon=True)
            proc.start()
            theirs.close()
            self.procs.append(proc)
            self.pipes.append(mine)
            loop.add_reader(mine.fileno(), self._on_pipe, i)
            os.set_blocking(mine.fileno(), True)  # add_reader made it non-blocking

    def _on_pipe(self, i: int) -> None:
        pipe = self.pipes[i]
        try:
            while pipe.poll():
                kind, payload = pipe.recv()
                if kind == "progress":
                    self.progress[i] = payload
                elif kind == "ready":
                    self.ready[i] = payload
                else:
                    self.results[i] = payload
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(pipe.fileno())
            if self.results[i] is None:
                self.results[i] = {"lost": 1}
            if self.ready[i] is None:
                self.ready[i] = {"joined_by_room": [], "failed": {"client process died": 1}}
        self.changed.set()

    def total(self, key: str) -> int:
        return sum(p.get(key, 0) for p in self.progress)

    async def wait_for(self, slots: list[Any], limit: float) -> None:
        async with asyncio.timeout(limit):
            while any(s is None for s in slots):
                self.changed.clear()
                await self.changed.wait()

    async def stop(self, room_max: list[int], limit: float) -> list[dict[str, Any]]:
        for pipe in self.pipes:
            pipe.send(("stop", room_max))
        await self.wait_for(self.results, limit)
        return [r for r in self.results if r is not None]

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for pipe in self.pipes:
            loop.remove_reader(pipe.fileno())
            pipe.close()
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)


async def open_senders(server: srv.ServerProc, w: Workload, acc: Access, tally: Tally,
                       ledger: Ledger) -> list[list[Sender]]:
    hello = handshake_request(server.host, server.port, server.path)
    dialect = DIALECTS[server.dialect]
    rooms = room_ids(w.rooms)
    out: list[list[Sender]] = []
    loop = asyncio.get_running_loop()
    for r, gid in enumerate(rooms):
        group = []
        for k in range(w.senders):
            user = f"s{r}-{k}"
            sig = mint(acc.sdkappid, acc.key, user, time.time())
            setup = dialect.setup(acc.sdkappid, user, sig, gid)
            sender = Sender(ledger, tally, dialect, hello, setup, r, loop.create_future())
            reason = await connect(server.host, server.port, sender, None, w.timeout)
            if reason:
                raise RuntimeError(f"sender {user} could not join {gid}: {reason}")
            group.append(sender)
        out.append(group)
    return out


class RoundState:
    """The state of one round while it runs."""

    def __init__(self, server: srv.ServerProc, w: Workload, index: int, say: Say) -> None:
        self.server = server
        self.w = w
        self.say = say
        self.tally = Tally()
        self.ledger = Ledger(w.rooms)
        self.result = Round("livecast" if server.kind == "external" else server.kind, index,
                            0, w.senders * w.rooms, w.rooms, w.rate, w.duration)
        self.members_by_room = [w.senders] * w.rooms
        self.cpu0 = self.bench0 = 0.0
        self.machine0 = (0.0, 0.0)
        self.t0 = 0.0

    @property
    def tag(self) -> str:
        return f"[{self.result.target}#{self.result.index}]"

    def expected(self) -> int:
        return sum(d * m for d, m in zip(self.ledger.delivered, self.members_by_room,
                                         strict=True))

    def received(self, workers: Workers) -> int:
        return workers.total("deliveries") + self.tally.deliveries

    def publish_line(self, workers: Workers) -> str:
        led = self.ledger
        t = time.monotonic() - self.t0
        cpu = self.server.cpu_seconds() - self.cpu0
        drops = sum(led.drops.values())
        return (f"{self.tag} t={t:5.1f}s sent {sum(led.sent):,} delivered "
                f"{sum(led.delivered):,} drops {drops:,} | received "
                f"{self.received(workers):,}/{self.expected():,} gaps "
                f"{workers.total('gaps') + self.tally.gaps:,} | server cpu {cpu:.2f}s "
                f"({cpu / max(t, 1e-9) * 100:.0f}% of a core) rss "
                f"{srv.rss_kb(self.server.pid) / 1024:.0f} MB")


async def run_round(server: srv.ServerProc, w: Workload, acc: Access, index: int,
                    say: Say) -> Round:
    """Measure one round against a server that is already listening."""
    rooms = room_ids(w.rooms)
    if server.kind in ("livecast", "external"):
        await srv.create_rooms(server, rooms, acc.sdkappid, acc.key, acc.admin)
    st = RoundState(server, w, index, say)
    limit = srv.open_files_limit(server.pid)
    if 0 < limit < w.members + w.senders * w.rooms + 32:
        say(f"{st.tag} warning: the server may open {limit:,} files; about "
            f"{max(0, limit - 32 - w.senders * w.rooms):,} members can join (see "
            "docs/benchmarks.md, Many connections)")
    senders = await open_senders(server, w, acc, st.tally, st.ledger)
    try:
        await asyncio.sleep(w.settle)
        st.result.rss_before_kb = srv.rss_kb(server.pid)
        workers = Workers(plans(server, w, acc))
        try:
            await _connect_members(st, workers)
            await _publish(st, workers, senders)
            results = await workers.stop(st.ledger.max_seq, w.timeout)
        finally:
            workers.close()
    finally:
        for group in senders:
            for s in group:
                s.abort()
    _merge(st, results, senders)
    return st.result


async def _connect_members(st: RoundState, workers: Workers) -> None:
    w = st.w
    ticker = asyncio.create_task(_every_second(lambda: st.say(
        f"{st.tag} connecting: {workers.total('joined'):,}/{w.members:,} joined, "
        f"{workers.total('failed'):,} failed")))
    try:
        await workers.wait_for(workers.ready, w.timeout + w.members / 100)
    finally:
        ticker.cancel()
    for ready in workers.ready:
        assert ready is not None
        for r, n in enumerate(ready["joined_by_room"]):
            st.members_by_room[r] += n
        st.result.failed.update(Counter(st.result.failed) + Counter(ready["failed"]))
    st.result.members = sum(st.members_by_room) - w.senders * w.rooms
    st.say(f"{st.tag} {st.result.members:,} members joined"
           + (f", failed: {st.result.failed}" if st.result.failed else ""))
    await asyncio.sleep(w.settle)


async def _publish(st: RoundState, workers: Workers, senders: list[list[Sender]]) -> None:
    w, pid = st.w, st.server.pid
    st.result.rss_after_kb = srv.rss_kb(pid)
    bench_pids = [os.getpid(), *(p.pid for p in workers.procs)]
    st.cpu0 = st.server.cpu_seconds()
    st.bench0 = sum(srv.cpu_seconds(p) for p in bench_pids)
    st.machine0 = srv.machine_seconds()
    st.t0 = time.monotonic()
    ticker = asyncio.create_task(_every_second(lambda: st.say(st.publish_line(workers))))
    try:
        pub = Publisher(senders, room_ids(w.rooms), w.rate, w.mix, w.size)
        await pub.run(st.ledger, w.duration)
        await _drain(st, workers)
    finally:
        ticker.cancel()
    r = st.result
    r.cpu_s = round(st.server.cpu_seconds() - st.cpu0, 3)
    r.bench_cpu_s = round(sum(srv.cpu_seconds(p) for p in bench_pids) - st.bench0, 3)
    busy, softirq = (b - a for a, b in zip(st.machine0, srv.machine_seconds(), strict=True))
    r.machine_busy_s, r.softirq_s = round(busy, 3), round(softirq, 3)
    st.result.window_s = time.monotonic() - st.t0
    st.say(st.publish_line(workers))


async def _drain(st: RoundState, workers: Workers) -> None:
    """Until every send is answered and every delivery counted; or nothing
    moved (no reply, no delivery) for ``drain`` s; or ``drain_max`` s passed
    (a saturated server may need minutes to work off its backlog)."""
    led = st.ledger
    end = time.monotonic() + (st.w.drain_max or st.w.duration)
    last: tuple[int, int] = (-1, -1)
    still = time.monotonic()
    while led.pending or st.received(workers) < st.expected():
        now = time.monotonic()
        mark = (len(led.pending), st.received(workers))
        if mark != last:
            last, still = mark, now
        elif now - still > st.w.drain or now > end:
            return
        workers.changed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await workers.changed.wait()


async def _every_second(fn: Callable[[], None]) -> None:
    while True:
        await asyncio.sleep(1.0)
        fn()


def _merge(st: RoundState, results: list[dict[str, Any]], senders: list[list[Sender]]) -> None:
    r, led, tally = st.result, st.ledger, st.tally
    r.sent, r.delivered = sum(led.sent), sum(led.delivered)
    r.delivered_by_room, r.members_by_room = list(led.delivered), list(st.members_by_room)
    r.drops, r.other_drops, r.errors = dict(led.drops), dict(led.other_drops), dict(led.errors)
    r.unanswered = len(led.pending)
    r.expected = st.expected()
    lat = list(tally.latencies)
    closes: Counter[str] = Counter({str(k): v for k, v in tally.closes.items()})
    r.received, r.frames, r.disorder, r.kicked = (tally.deliveries, tally.frames,
                                                  tally.disorder, tally.kicked)
    r.gaps = tally.gaps + sum(s.tail_gap(led.max_seq[s.room]) for g in senders for s in g)
    for res in results:
        if res.get("lost"):
            r.errors["client process lost"] = r.errors.get("client process lost", 0) + 1
            continue
        r.received += res["deliveries"]
        r.frames += res["frames"]
        r.gaps += res["gaps"]
        r.disorder += res["disorder"]
        r.kicked += res["kicked"]
        closes.update(res["closes"])
        lat.extend(res["latencies"])
    r.closes = dict(closes)
    r.latency_ms = percentiles(lat)


def auto_procs(members: int) -> int:
    """Client processes: one per 10,000 members (a process holds < 20,000 sockets)."""
    return max(1, math.ceil(members / 10_000))
