"""Memory per idle member: a livecast server in this process, N members in a
child process, each logged in and joined to one room, then silent.

    python -m loadtests.idle_memory --members 5000 --mode first
    python -m loadtests.idle_memory --members 5000 --mode keepalive
    python -m loadtests.idle_memory --members 2000 --mode keepalive --trace

``--mode first``: the upgrade is each connection's first request (browsers,
most clients).  ``--mode keepalive``: each connection first asks
``GET /healthz`` and reads the answer, then upgrades on the same connection
(what aiohttp's ClientSession does with its pooled connection).

Printed: the server's RSS growth per member (from /proc/self/status, read
after a full collection, before and after the members), and how many aiohttp
request handlers and WebSocketResponses are alive (0 on the lean path).
``--trace`` also runs tracemalloc (which costs RSS of its own: read the
RSS of runs without it) and prints the Python heap per member by the file
that allocated it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from typing import cast

import orjson
import uvloop
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from livecast.core.usersig import mint
from livecast.gateway.app import make_app
from livecast.gateway.front import Front
from livecast.gateway.keys import NODE
from livecast.runner import Listener
from livecast.settings import Secret, Settings

KEY = "idle-memory-key-0123456789abcdef0123456789abcdef"
SDKAPPID = 1400000000
ROOM = "idle"


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def alive(cls: type) -> int:
    return sum(1 for o in gc.get_objects() if isinstance(o, cls))


async def serve(members: int, mode: str, trace: bool, settle: float, lines: bool) -> None:
    settings = Settings(sdkappid=SDKAPPID, secret_key=Secret(KEY), port=0, login_timeout=1.0,
                        req_rate=1e5, req_burst=100_000)
    app = make_app(settings)
    server = Listener(app, Front)
    await server.start("127.0.0.1", 0)
    await app[NODE].create_group("administrator", {"Name": ROOM}, ROOM)
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadtests.idle_memory", "--client", str(server.port),
        "--members", str(members), "--mode", mode, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE)
    assert child.stdout is not None and child.stdin is not None
    await child.stdout.readline()  # the child is up and imported
    gc.collect()
    before_rss = rss_kb()
    before = tracemalloc.take_snapshot() if trace else None
    child.stdin.write(b"go\n")
    line = await child.stdout.readline()
    joined = int(line)
    await asyncio.sleep(settle)  # the last replies and tips out, the login deadlines past
    gc.collect()
    after_rss = rss_kb()
    after = tracemalloc.take_snapshot() if trace else None
    online = app[NODE].online(ROOM)
    print(f"mode={mode} members={joined} online={online} "
          f"rss_per_member_kb={(after_rss - before_rss) / max(joined, 1):.2f} "
          f"request_handlers={alive(RequestHandler)} "
          f"ws_responses={alive(web.WebSocketResponse)}")
    if before is not None and after is not None:
        by_file: Counter[str] = Counter()
        for stat in after.compare_to(before, "filename"):
            by_file[stat.traceback[0].filename.rsplit("site-packages/", 1)[-1]] += stat.size_diff
        total = sum(by_file.values())
        print(f"python heap per member: {total / max(joined, 1):.0f} B")
        for name, size in by_file.most_common(8):
            print(f"  {size / max(joined, 1):8.0f} B  {name}")
        if lines:
            for stat in after.compare_to(before, "lineno")[:15]:
                print(f"  {stat.size_diff / max(joined, 1):8.0f} B  {stat.traceback[0]}")
    child.stdin.write(b"stop\n")
    await child.wait()
    await server.close()


# ------------------------------------------------------------------ the members (child process)
def masked(payload: bytes) -> bytes:
    """A text frame masked with the zero key (the payload unchanged)."""
    n = len(payload)
    head = bytes((0x81, 0x80 | n)) if n < 126 else bytes((0x81, 0xFE)) + n.to_bytes(2, "big")
    return head + b"\0\0\0\0" + payload


async def member(port: int, i: int, mode: str) -> asyncio.StreamWriter | None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if mode == "keepalive":
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(h.split(b":")[1]) for h in head.split(b"\r\n")
                      if h.lower().startswith(b"content-length:"))
        await reader.readexactly(length)
    user = f"idle{i}"
    login = {"op": "login", "id": 1, "sdkAppId": SDKAPPID, "userId": user,
             "userSig": mint(SDKAPPID, KEY, user, time.time())}
    writer.write(b"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Sec-WebSocket-Version: 13\r\n\r\n" + masked(orjson.dumps(login))
                 + masked(orjson.dumps({"op": "join", "id": 2, "groupId": ROOM})))
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        writer.close()
        return None
    while True:  # frames up to the join's reply
        _, b1 = await reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(await reader.readexactly(2), "big")
        payload = await reader.readexactly(n)
        if b'"id":2' in payload:
            cast(asyncio.Transport, writer.transport).pause_reading()  # idle: nothing read
            return writer if b'"code":0' in payload else None


async def clients(port: int, members: int, mode: str) -> None:
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    print("up", flush=True)
    await stdin.readline()
    sem = asyncio.Semaphore(100)

    async def one(i: int) -> asyncio.StreamWriter | None:
        async with sem:
            return await member(port, i, mode)

    writers = [w for w in await asyncio.gather(*(one(i) for i in range(members))) if w]
    print(len(writers), flush=True)
    await stdin.readline()
    for w in writers:
        w.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--members", type=int, default=2000)
    ap.add_argument("--mode", choices=("first", "keepalive"), default="first")
    ap.add_argument("--trace", action="store_true", help="tracemalloc: Python heap by file")
    ap.add_argument("--lines", action="store_true", help="with --trace: the top source lines")
    ap.add_argument("--settle", type=float, default=2.0,
                    help="seconds between the last join and the measure (default 2: past "
                         "the 1 s login deadline, whose timers are gone then)")
    ap.add_argument("--client", type=int, help=argparse.SUPPRESS)  # the child's role: port
    args = ap.parse_args()
    uvloop.install()
    if args.client:
        asyncio.run(clients(args.client, args.members, args.mode))
        return
    if args.trace:
        tracemalloc.start()
    asyncio.run(serve(args.members, args.mode, args.trace, args.settle, args.lines))


if __name__ == "__main__":
    main()
