"""Memory after connection churn: N connect-login-join-quit-close cycles
against a real ``livecast serve``, the server's RSS sampled before, between
and after rounds (docs/benchmarks.md, "Memory after connection churn").

    python -m loadtests.cycles --cycles 400000 --rounds 2 --procs 3 --conc 64
    python -m loadtests.cycles --cycles 100000 --inprocess --trace   # where it goes

Each cycle is one new connection: the upgrade, ``login`` as a user never
seen before (``u<proc>-<n>``, so every per-user table sees a new key),
``join`` and ``quit`` of one room, then a close frame.  ``--procs`` client
processes run ``--conc`` cycles at once each, on loopback.  The server runs
with the connect and login limits off (every client is 127.0.0.1).

Printed per sample: the server's RSS (VmRSS of its process), its open
connections and memberships (``livecast_connections``/``livecast_members``
from /metrics, both 0 when idle) and the cycles per second of the round.

``--inprocess`` runs the server in this process instead (the same app,
``make_app`` + ``Listener``), so that it can also be measured from inside:
RSS after ``gc.collect()``, after glibc's ``malloc_trim(0)`` (``--trim``),
and with ``--trace`` the Python heap left after the rounds, by file and by
line (tracemalloc costs RSS and time of its own: read the RSS of runs
without it).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson

from livecast.core.usersig import mint

KEY = "cycles-key-0123456789abcdef0123456789abcdef"
SDKAPPID = 1400000000
ROOM = "churn"
ROOT = Path(__file__).resolve().parents[1]
UPGRADE = (b"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")
CLOSE = bytes((0x88, 0x82)) + b"\0\0\0\0" + (1000).to_bytes(2, "big")
SERVER_ENV = {  # every client is 127.0.0.1: no admission limits in the way
    "LIVECAST_SECRET_KEY": KEY, "LIVECAST_SDKAPPID": str(SDKAPPID),
    "LIVECAST_CONNECT_GLOBAL_RATE": "0", "LIVECAST_LOGIN_GLOBAL_RATE": "0",
    "LIVECAST_SHUTDOWN_GRACE": "1", "LIVECAST_LOG_LEVEL": "warning"}


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# ------------------------------------------------------------------ one cycle (client side)
def masked(payload: bytes) -> bytes:
    """A text frame masked with the zero key (the payload unchanged)."""
    n = len(payload)
    head = bytes((0x81, 0x80 | n)) if n < 126 else bytes((0x81, 0xFE)) + n.to_bytes(2, "big")
    return head + b"\0\0\0\0" + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2), "big")
    elif n == 127:
        n = int.from_bytes(await reader.readexactly(8), "big")
    return b0 & 0x0F, await reader.readexactly(n)


async def cycle(port: int, user: str) -> bool:
    """One connection's life; True when login, join and quit all answered 0."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        login = {"op": "login", "id": 1, "sdkAppId": SDKAPPID, "userId": user,
                 "userSig": mint(SDKAPPID, KEY, user, time.time())}
        writer.write(UPGRADE + masked(orjson.dumps(login))
                     + masked(orjson.dumps({"op": "join", "id": 2, "groupId": ROOM}))
                     + masked(orjson.dumps({"op": "quit", "id": 3, "groupId": ROOM})))
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            return False
        ok = 0
        while ok < 3:
            opcode, payload = await read_frame(reader)
            if opcode == 0x8:
                return False
            if b'"op":"reply"' in payload:
                if b'"code":0' not in payload:
                    return False
                ok += 1
        writer.write(CLOSE)
        await reader.read()  # the server's close frame, then its FIN
        return True
    finally:
        writer.close()


async def run_round(port: int, proc: int, first: int, cycles: int,
                    conc: int) -> Counter[bool]:
    """Cycles ``first`` .. ``first + cycles - 1`` of client process ``proc``,
    ``conc`` at once; how many succeeded (True) and failed (False)."""
    todo = iter(range(first, first + cycles))
    done = Counter[bool]()

    async def worker() -> None:
        for i in todo:
            try:
                done[await cycle(port, f"u{proc}-{i}")] += 1
            except (OSError, asyncio.IncompleteReadError):
                done[False] += 1

    await asyncio.gather(*(worker() for _ in range(conc)))
    return done


async def clients(port: int, proc: int, cycles: int, conc: int) -> None:
    """Wait for a line on stdin, run ``cycles`` cycles (``conc`` at once), print
    ``ok failed``; again per line until stdin closes."""
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    print("up", flush=True)
    first = 0
    while await stdin.readline():
        done = await run_round(port, proc, first, cycles, conc)
        first += cycles
        print(done[True], done[False], flush=True)


# ------------------------------------------------------------------ the driver
class Crowd:
    """``procs`` client processes, each told to run a round by a line on stdin."""

    def __init__(self, port: int, procs: int, conc: int, cycles: int) -> None:
        self.children = [subprocess.Popen(
            [sys.executable, "-m", "loadtests.cycles", "--client", str(port), "--proc", str(p),
             "--cycles", str(cycles // procs), "--conc", str(conc)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            for p in range(procs)]
        for c in self.children:
            assert c.stdout is not None and c.stdout.readline().strip() == "up"

    def round(self) -> tuple[int, int]:
        for c in self.children:
            assert c.stdin is not None
            c.stdin.write("go\n")
            c.stdin.flush()
        ok = failed = 0
        for c in self.children:
            assert c.stdout is not None
            a, b = c.stdout.readline().split()
            ok, failed = ok + int(a), failed + int(b)
        return ok, failed

    def close(self) -> None:
        for c in self.children:
            assert c.stdin is not None
            c.stdin.close()
            c.wait(30)


def gauges(port: int) -> tuple[float, float]:
    """(livecast_connections, livecast_members) from the server's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    found = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
             if line.startswith(("livecast_connections ", "livecast_members "))}
    return found["livecast_connections"], found["livecast_members"]


def create_room(port: int) -> None:
    query = urllib.parse.urlencode({
        "sdkappid": SDKAPPID, "identifier": "administrator", "random": 1,
        "usersig": mint(SDKAPPID, KEY, "administrator", time.time()), "contenttype": "json"})
    body = json.dumps({"Type": "AVChatRoom", "GroupId": ROOM, "Name": ROOM}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v4/group_open_http_svc/create_group?{query}", data=body)
    with urllib.request.urlopen(req, timeout=10) as resp:
        reply = json.load(resp)
    assert reply["ErrorCode"] in (0, 10021), reply  # 10021: made by an earlier run


def wait_idle(port: int, timeout: float = 60.0) -> tuple[float, float]:
    """The gauges once both are 0 (the server's side of the last closes is done)."""
    deadline = time.monotonic() + timeout
    while True:
        found = gauges(port)
        if found == (0.0, 0.0) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)  # polling a remote process's gauges: nothing to wait on


def sample(label: str, pid: int, port: int, extra: str = "", settle: float = 0.0) -> int:
    """Print the server's RSS once it is idle, and again ``settle`` seconds
    later (the timers of the last connections' login deadline and close
    have fired by then)."""
    conns, members = wait_idle(port)
    rss = rss_kb(pid)
    print(f"{label:<14} rss_mb={rss / 1024:7.1f} connections={conns:.0f} "
          f"members={members:.0f}{extra}", flush=True)
    if settle > 0:
        time.sleep(settle)  # a timer in the server, not an event this process can see
        rss = rss_kb(pid)
        print(f"{label:<14} rss_mb={rss / 1024:7.1f} {settle:g} s later", flush=True)
    return rss


def run_rounds(args: argparse.Namespace, pid: int, port: int,
               inside: Callable[[str], Awaitable[None]] | None = None) -> None:
    """The rounds against the server on ``port`` (process ``pid``)."""
    create_room(port)
    crowd = Crowd(port, args.procs, args.conc, args.cycles)
    try:
        sample("start", pid, port)
        for r in range(1, args.rounds + 1):
            t0 = time.monotonic()
            ok, failed = crowd.round()
            rate = (ok + failed) / (time.monotonic() - t0)
            sample(f"after round {r}", pid, port,
                   f" cycles={ok + failed} failed={failed} cycles_per_s={rate:.0f}", args.settle)
            if inside is not None:
                asyncio.run_coroutine_threadsafe(inside(f"round {r}"), args.loop).result()
    finally:
        crowd.close()


def serve_subprocess(args: argparse.Namespace) -> None:
    port = args.port
    with tempfile.TemporaryDirectory() as data:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECAST_")}
        env.update(SERVER_ENV, LIVECAST_PORT=str(port), LIVECAST_DATA_DIR=data)
        server = subprocess.Popen([sys.executable, "-m", "livecast", "serve"], env=env,
                                  cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            assert "livecast listening on" in server.stdout.readline()
            run_rounds(args, server.pid, port)
        finally:
            server.terminate()
            server.wait(30)


# ------------------------------------------------------------------ in-process, measured inside
def malloc_trim() -> bool:
    """glibc's ``malloc_trim(0)``: free pages at the top and inside its arenas."""
    return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))


async def serve_inprocess(args: argparse.Namespace) -> None:
    from livecast.gateway.app import make_app
    from livecast.gateway.front import Front
    from livecast.runner import Listener
    from livecast.settings import Secret, Settings

    with tempfile.TemporaryDirectory() as data:
        settings = Settings(sdkappid=SDKAPPID, secret_key=Secret(KEY), data_dir=data,
                            connect_global_rate=0, login_global_rate=0)
        server = Listener(make_app(settings), Front)
        await server.start("127.0.0.1", 0)
        args.loop = asyncio.get_running_loop()
        before = tracemalloc.take_snapshot() if args.trace else None

        async def inside(label: str) -> None:
            gc.collect()
            print(f"  {label}: rss_mb after gc.collect {rss_kb(os.getpid()) / 1024:.1f}")
            if args.trim:
                malloc_trim()
                print(f"  {label}: rss_mb after malloc_trim(0) {rss_kb(os.getpid()) / 1024:.1f}")
            if before is not None:
                heap_report(before, tracemalloc.take_snapshot(), args.cycles)

        await asyncio.to_thread(run_rounds, args, os.getpid(), server.port, inside)
        await server.close()


def heap_report(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, cycles: int) -> None:
    diff = after.compare_to(before, "lineno")
    total = sum(s.size_diff for s in diff)
    print(f"  python heap grown {total / 1024:.0f} KiB ({total / max(cycles, 1):.1f} B per cycle)")
    for stat in diff[:12]:
        print(f"    {stat.size_diff / 1024:9.0f} KiB {stat.count_diff:8d} blocks  "
              f"{stat.traceback[0]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=10_000, help="cycles per round (all clients)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--procs", type=int, default=3, help="client processes")
    ap.add_argument("--conc", type=int, default=64, help="cycles at once per client process")
    ap.add_argument("--port", type=int, default=18790)
    ap.add_argument("--settle", type=float, default=0.0,
                    help="also sample the RSS this many seconds after each round")
    ap.add_argument("--inprocess", action="store_true", help="the server in this process")
    ap.add_argument("--trim", action="store_true", help="--inprocess: malloc_trim(0) per sample")
    ap.add_argument("--trace", action="store_true", help="--inprocess: tracemalloc by line")
    ap.add_argument("--client", type=int, help=argparse.SUPPRESS)  # a child's role: the port
    ap.add_argument("--proc", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    import uvloop

    if args.client:
        uvloop.run(clients(args.client, args.proc, args.cycles, args.conc))
        return
    if not args.inprocess:
        serve_subprocess(args)
        return
    if args.trace:
        tracemalloc.start()
    uvloop.run(serve_inprocess(args))


if __name__ == "__main__":
    main()
