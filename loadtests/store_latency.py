"""What durable rooms cost a REST caller and a start: a ``livecast serve``
subprocess on a free loopback port, one room created over REST, then N
sequential ``modify_group_base_info`` calls and N sequential
``forbid_send_msg`` calls, each timed end to end (the HTTP round trip on one
kept-alive connection, as a business backend makes them).

    python -m loadtests.store_latency --engine sqlite --n 2000
    python -m loadtests.store_latency --engine redis --n 2000
    python -m loadtests.store_latency --engine sqlite --n 0 --startup 10000
    python -m loadtests.store_latency --engine memory --n 2000 \\
        --livecast /path/to/older/checkout/.venv/bin/livecast

``--engine sqlite``: the default store, a fresh ``LIVECAST_DATA_DIR`` in a
temporary directory.  ``--engine redis``: a ``redis-server`` started here on
a free loopback port (no persistence) and ``LIVECAST_REDIS_URL`` pointing at
it.  ``--engine memory``: only a label, for a server that keeps rooms in
memory (an older livecast, given with ``--livecast``): nothing is set for a
store.  Every change is acknowledged only once stored, so the difference
between the engines and ``memory`` is the store's share of the latency.

``--startup R`` (after the latency runs): R rooms are written into a fresh
store directly (``put_group``), then ``livecast serve`` is started (and
stopped with SIGTERM) ``--starts`` times on that store, each start timed
from exec until ``/readyz`` answers 200; the server's own log line
(``R rooms loaded from the store in X s``) is printed too.

Printed, one line per figure (``key=value`` pairs, times in milliseconds or
seconds as named).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from livecast.core.records import GroupRecord
from livecast.core.usersig import mint

KEY = "store-latency-key-0123456789abcdef0123456789abcdef"
SDKAPPID = 1400000000
ADMIN = "administrator"
ROOM = "latency"
READY_TIMEOUT = 300.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def percentile(samples: list[float], q: float) -> float:
    """The nearest-rank ``q`` percentile (0 < q <= 100) of ``samples``."""
    ordered = sorted(samples)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


# ------------------------------------------------------------------ the store engine
class Engine:
    """The environment a ``livecast serve`` needs for one engine, and a way to
    write rooms into that engine's store directly."""

    def __init__(self, name: str, work: Path) -> None:
        self.name = name
        self.work = work
        self.redis: subprocess.Popen[bytes] | None = None
        self.redis_url = ""
        self.generation = 0
        self.data_dir = work / "data0"

    def start(self) -> None:
        if self.name != "redis":
            return
        exe = shutil.which("redis-server")
        if exe is None:
            raise SystemExit("store_latency: --engine redis needs redis-server on PATH")
        port = free_port()
        self.redis = subprocess.Popen(
            [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("store_latency: redis-server did not answer PING")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.redis is not None:
            self.redis.terminate()
            self.redis.wait(10)

    async def fresh(self) -> None:
        """An empty store for the next server: a new data directory, an
        emptied Redis database."""
        self.generation += 1
        self.data_dir = self.work / f"data{self.generation}"
        if self.name == "redis":
            import redis.asyncio as aioredis

            client = aioredis.Redis.from_url(self.redis_url)
            await client.flushdb()
            await client.aclose()

    def env(self, port: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECAST_")}
        env.update(LIVECAST_HOST="127.0.0.1", LIVECAST_PORT=str(port),
                   LIVECAST_SECRET_KEY=KEY, LIVECAST_SDKAPPID=str(SDKAPPID),
                   LIVECAST_DATA_DIR=str(self.data_dir), LIVECAST_LOG_LEVEL="info",
                   LIVECAST_MAX_ROOMS="1000000")
        if self.redis_url:
            env["LIVECAST_REDIS_URL"] = self.redis_url
        return env

    async def populate(self, rooms: int) -> None:
        """``rooms`` rooms written straight into the store (``put_group``)."""
        from livecast.store import RedisStore, SqliteStore

        store: Any
        if self.name == "redis":
            store = await RedisStore.open(self.redis_url)
        elif self.name == "sqlite":
            store = await SqliteStore.open(self.data_dir)
        else:
            raise SystemExit("store_latency: --startup needs --engine sqlite or redis")
        now = time.time()
        sem = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            async with sem:
                await store.put_group(GroupRecord(
                    group_id=f"room{i}", owner=ADMIN, created=now, name=f"Room {i}",
                    notification="stored", app_defined={"k": "v"}), create=True)

        await asyncio.gather(*(one(i) for i in range(rooms)))
        await store.close()


# ------------------------------------------------------------------ the server
class Server:
    def __init__(self, livecast: str, engine: Engine) -> None:
        self.port = free_port()
        self.log_path = engine.work / f"serve{engine.generation}-{self.port}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.started = time.perf_counter()
        self.proc = subprocess.Popen([livecast, "serve"], env=engine.env(self.port),
                                     stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def ready(self, session: aiohttp.ClientSession) -> float:
        """Seconds from exec until ``/readyz`` answered 200."""
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"store_latency: the server exited ({self.proc.returncode}): "
                                 + self.log_path.read_text(errors="replace")[-2000:])
            try:
                async with session.get(self.base + "/readyz") as resp:
                    if resp.status == 200:
                        return time.perf_counter() - self.started
            except aiohttp.ClientError:
                pass
            if time.perf_counter() - self.started > READY_TIMEOUT:
                raise SystemExit("store_latency: the server was not ready in time")
            await asyncio.sleep(0.005)

    def stop(self) -> str:
        """SIGTERM, wait; the server's log."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
        return self.log_path.read_text(errors="replace")


# ------------------------------------------------------------------ REST
class Rest:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base
        self.sig = mint(SDKAPPID, KEY, ADMIN, time.time())
        self.random = 0

    async def call(self, command: str, body: dict[str, Any]) -> None:
        self.random += 1
        url = (f"{self.base}/v4/group_open_http_svc/{command}?sdkappid={SDKAPPID}"
               f"&identifier={ADMIN}&usersig={self.sig}&random={self.random}"
               "&contenttype=json")
        async with self.session.post(url, json=body) as resp:
            answer = await resp.json(content_type=None)
        if answer.get("ErrorCode") != 0:
            raise SystemExit(f"store_latency: {command} answered {answer}")


async def timed(n: int, call: Callable[[int], Awaitable[None]]) -> list[float]:
    """Milliseconds of each of ``n`` sequential calls."""
    samples = []
    for i in range(n):
        start = time.perf_counter()
        await call(i)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def report(command: str, samples: list[float]) -> None:
    print(f"{command} n={len(samples)} p50_ms={percentile(samples, 50):.3f} "
          f"p99_ms={percentile(samples, 99):.3f} mean_ms={statistics.fmean(samples):.3f} "
          f"max_ms={max(samples):.3f}", flush=True)


async def latency(livecast: str, engine: Engine, n: int, warmup: int) -> None:
    await engine.fresh()
    server = Server(livecast, engine)
    try:
        async with aiohttp.ClientSession() as session:
            await server.ready(session)
            rest = Rest(session, server.base)
            await rest.call("create_group", {"Owner_Account": ADMIN, "Type": "AVChatRoom",
                                             "GroupId": ROOM, "Name": "latency"})

            async def modify(i: int) -> None:
                await rest.call("modify_group_base_info",
                                {"GroupId": ROOM, "Notification": f"notice {i}",
                                 "AppDefinedData": [{"Key": "k", "Value": f"v{i}"}]})

            async def forbid(i: int) -> None:
                await rest.call("forbid_send_msg",
                                {"GroupId": ROOM, "Members_Account": [f"user{i % 100}"],
                                 "MuteTime": 60 + i})

            await timed(warmup, modify)
            await timed(warmup, forbid)
            report("modify_group_base_info", await timed(n, modify))
            report("forbid_send_msg", await timed(n, forbid))
    finally:
        server.stop()


LOADED = re.compile(r"(\d+) rooms loaded from the store in ([\d.]+) s")


async def startup(livecast: str, engine: Engine, rooms: int, starts: int) -> None:
    await engine.fresh()
    began = time.perf_counter()
    if rooms:
        await engine.populate(rooms)
    populated = time.perf_counter() - began
    for _ in range(starts):
        server = Server(livecast, engine)
        try:
            async with aiohttp.ClientSession() as session:
                ready = await server.ready(session)
        finally:
            log = server.stop()
        found = LOADED.search(log)
        loaded = f"{found.group(1)} rooms in {found.group(2)} s" if found else "none"
        print(f"startup rooms={rooms} populate_s={populated:.2f} ready_s={ready:.3f} "
              f"log_loaded='{loaded}'", flush=True)


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="livecast-store-latency-") as tmp:
        engine = Engine(args.engine, Path(tmp))
        engine.start()
        try:
            print(f"engine={args.engine} livecast={args.livecast}", flush=True)
            if args.n:
                await latency(args.livecast, engine, args.n, args.warmup)
            for rooms in args.startup:
                await startup(args.livecast, engine, rooms, args.starts)
        finally:
            engine.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine", choices=("sqlite", "redis", "memory"), default="sqlite")
    ap.add_argument("--n", type=int, default=2000, help="calls per command (default 2000)")
    ap.add_argument("--warmup", type=int, default=20,
                    help="untimed calls per command first (default 20)")
    ap.add_argument("--startup", type=int, action="append", default=[], metavar="ROOMS",
                    help="time a start with ROOMS stored rooms (repeatable)")
    ap.add_argument("--starts", type=int, default=1,
                    help="starts timed on each --startup store (default 1)")
    here = Path(sys.executable).with_name("livecast")
    default = str(here) if here.exists() else (shutil.which("livecast") or "livecast")
    ap.add_argument("--livecast", default=default,
                    help="the livecast executable to serve (default: this environment's)")
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
