"""Frame fuzz against a running ``livecast serve``: random and mutated client
frames over raw sockets, every answer checked (docs/reliability.md).

    python -m loadtests.fuzz_frames --frames 100000
    python -m loadtests.fuzz_frames --frames 2000 --connections 4 --seed 7

The server is a ``livecast serve`` child process on a loopback port (its log
kept in a temporary file).  ``--connections`` raw TCP clients do their own
RFC 6455 framing, so that they can break it: each draws cases from
``cases.py`` (valid ops with mutated fields, wrong types, huge and negative
numbers, lone surrogates, invalid UTF-8, binary, fragmented and control
frames, bad masks, opcodes, reserved bits and lengths, several frames in one
write, frames cut across writes) and after each one checks what came back:

- a case that breaks the framing must be closed with its code (1002, 1007,
  1008, 1009; a peer's Close is echoed), nothing else;
- after any other case the client sends a ``ping`` request and reads up to
  its reply: every reply must carry a documented code, a request of the case
  that carries an id must be answered exactly once (with one of the codes
  the case allows), a WebSocket ping must come back as a pong with the same
  payload, and a close may only carry a code a misbehaving client can earn
  (4001, 4002, 4003, 4009, 4029).

A closed client reconnects.  At the end: no request still unanswered, the
server process still running, a fresh client logs in, joins, sends and
receives its own message, and the server's log holds no traceback and no
ERROR line.  Prints the figures (frames, replies by code, closes by code,
problems, crashes, duration) and exits 1 on any problem.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from livecast.client import Client, text
from livecast.core.usersig import mint
from loadtests.fuzz_cases import (
    DOCUMENTED_CLOSES,
    DOCUMENTED_CODES,
    MISBEHAVING_CLOSES,
    SDKAPPID,
    Case,
    Draw,
    masked,
)

KEY = "fuzz-frames-key-0123456789abcdef0123456789abcdef"
ROOM = "fuzz"
WAIT = 15.0          # bound on every wait for the server
ADMIN = "administrator"


@functools.lru_cache(maxsize=64)
def sig(user: str) -> str:
    return mint(SDKAPPID, KEY, user, time.time(), 86400)


@dataclass
class Tally:
    """What the run saw, over every connection."""

    frames: int = 0                  # cases, each checked on its own
    written: int = 0                 # WebSocket frames written, the sync pings included
    cases: Counter[str] = field(default_factory=Counter)
    replies: Counter[int] = field(default_factory=Counter)
    closes: Counter[int] = field(default_factory=Counter)
    pushes: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        if len(self.problems) < 200:
            self.problems.append(text)


class Closed(Exception):
    """The server closed the connection (``code`` None: without a close frame)."""

    def __init__(self, code: int | None) -> None:
        super().__init__(code)
        self.code = code


class RawConn:
    """One client over a raw socket: a handshake, masked frames out, the
    server's frames in (unmasked, unfragmented)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.pending: dict[str, frozenset[int]] = {}   # id -> the codes it may get
        self.pongs: list[bytes] = []                   # ping payloads awaiting a pong
        self.close_code: int | None = None

    @classmethod
    async def open(cls, port: int) -> RawConn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = "dGhlIHNhbXBsZSBub25jZQ=="
        writer.write((f"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                      "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"upgrade refused: {head[:80]!r}")
        return cls(reader, writer)

    async def send(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self.writer.write(chunk)
            await self.writer.drain()

    async def frame(self) -> tuple[int, bytes]:
        """The next server frame (opcode, payload); ``Closed`` at EOF."""
        try:
            first, second = await self.reader.readexactly(2)
            n = second & 0x7F
            if n == 126:
                n = int.from_bytes(await self.reader.readexactly(2), "big")
            elif n == 127:
                n = int.from_bytes(await self.reader.readexactly(8), "big")
            return first & 0x0F, await self.reader.readexactly(n)
        except (asyncio.IncompleteReadError, ConnectionError):
            raise Closed(None) from None

    async def finish_close(self) -> None:
        """Answer the server's Close and wait for the TCP close."""
        try:
            self.writer.write(masked(0x8, (self.close_code or 1000).to_bytes(2, "big")))
            await asyncio.wait_for(self.reader.read(), WAIT)
        except (ConnectionError, TimeoutError):
            pass
        self.writer.close()


async def read_until(conn: RawConn, tally: Tally, sync: str | None) -> None:
    """Read and check frames until the reply to ``sync`` (None: until a close;
    "": until no request is pending)."""
    while sync != "" or conn.pending:
        opcode, payload = await asyncio.wait_for(conn.frame(), WAIT)
        if opcode == 0x8:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            conn.close_code = code
            raise Closed(code)
        if opcode == 0xA:
            if payload in conn.pongs:
                conn.pongs.remove(payload)
            else:
                tally.problem(f"a pong nobody asked for: {payload[:40]!r}")
            continue
        if opcode == 0x9:
            continue
        if opcode != 0x1:
            tally.problem(f"server sent opcode {opcode}")
            continue
        if check_text(conn, tally, payload) == sync and sync is not None:
            return


def check_text(conn: RawConn, tally: Tally, payload: bytes) -> Any:
    """Check one server text frame; the id of a reply."""
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        tally.problem(f"server sent non-JSON {payload[:80]!r}")
        return None
    if not isinstance(obj, dict) or obj.get("op") not in ("reply", "msgs", "tips", "kicked"):
        tally.problem(f"unexpected server frame {payload[:120]!r}")
        return None
    if obj["op"] != "reply":
        tally.pushes[obj["op"]] += 1
        return None
    code, rid = obj.get("code"), obj.get("id")
    if not isinstance(code, int) or code not in DOCUMENTED_CODES:
        tally.problem(f"undocumented reply code: {payload[:160]!r}")
        return rid
    tally.replies[code] += 1
    if not isinstance(rid, str) or not rid.startswith("t:"):
        return rid   # a sync ping, or an id the fuzz mutated
    allowed = conn.pending.pop(rid, None)
    if allowed is None:
        tally.problem(f"a reply to no pending request (or a second one): {payload[:160]!r}")
    elif code not in allowed:
        tally.problem(f"reply {code} where {sorted(allowed)} were allowed: {payload[:160]!r}")
    return rid


class Worker:
    """One client slot: draws cases, sends them, checks the outcome, reconnects."""

    def __init__(self, index: int, port: int, tally: Tally, rng: random.Random) -> None:
        self.index = index
        self.port = port
        self.tally = tally
        self.rng = rng
        self.conn: RawConn | None = None
        self.syncs = 0
        self.draw = Draw(rng, index, sig, ROOM)
        self.closing: set[asyncio.Future[None]] = set()

    async def run(self, budget: list[int]) -> None:
        while budget[0] > 0:
            budget[0] -= 1
            fresh = self.conn is None
            case = self.draw.session() if fresh and self.rng.random() < 0.7 else self.draw.case()
            self.tally.frames += 1
            self.tally.written += case.frames + (0 if case.closes else 1)
            self.tally.cases[case.kind] += 1
            if self.conn is None:
                self.conn = await RawConn.open(self.port)
            try:
                await self._one(self.conn, case)
            except Closed as closed:
                self._closed(case, closed.code)
            except TimeoutError:
                self.tally.problem(f"no answer within {WAIT} s after {case.kind}")
                self.conn.writer.close()
                self.conn = None
        await self.drain()

    async def _one(self, conn: RawConn, case: Case) -> None:
        conn.pending.update(case.replies)
        conn.pongs.extend(case.pongs)
        # the server may close while we write: its close frame is still readable
        with contextlib.suppress(ConnectionError):
            await conn.send(case.chunks)
        if case.closes:
            await read_until(conn, self.tally, None)
            self.tally.problem(f"{case.kind}: no close")  # not reached: read_until raises
        await self._sync(conn)

    async def _sync(self, conn: RawConn) -> None:
        self.syncs += 1
        sid = f"s:{self.index}.{self.syncs}"
        with contextlib.suppress(ConnectionError):
            await conn.send([masked(0x1, orjson.dumps({"op": "ping", "id": sid}))])
        await read_until(conn, self.tally, sid)
        if conn.pongs:
            self.tally.problem(f"no pong for {conn.pongs[:3]!r}")
            conn.pongs.clear()

    def _closed(self, case: Case, code: int | None) -> None:
        conn = self.conn
        assert conn is not None
        self.conn = None
        allowed = case.closes or MISBEHAVING_CLOSES
        if code is None:
            self.tally.problem(f"{case.kind}: connection dropped without a close frame")
        else:
            self.tally.closes[code] += 1
            if code not in allowed or code not in DOCUMENTED_CLOSES | set(case.closes):
                self.tally.problem(f"{case.kind}: closed {code}, allowed {sorted(allowed)}")
        self.closing.add(asyncio.ensure_future(conn.finish_close()))

    async def drain(self) -> None:
        """At the end: every request still pending gets its reply."""
        conn = self.conn
        if conn is None:
            return
        try:
            await self._sync(conn)
            await read_until(conn, self.tally, "")  # sends are answered once their tick is done
        except Closed as closed:
            self.tally.closes[closed.code or 1006] += 1
            conn.pending.clear()   # a close may cut requests short
        except TimeoutError:
            pass
        if conn.pending:
            self.tally.problem(f"never answered: {sorted(conn.pending)[:5]}")
        await conn.finish_close()
        await asyncio.gather(*self.closing)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(port: int, data_dir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECAST_")}
    env.update(LIVECAST_SECRET_KEY=KEY, LIVECAST_SDKAPPID=str(SDKAPPID), LIVECAST_PORT=str(port),
               LIVECAST_HOST="127.0.0.1", LIVECAST_DATA_DIR=data_dir,
               LIVECAST_SHUTDOWN_GRACE="1", LIVECAST_ROOM_RATE="100000",
               LIVECAST_ROOM_BURST="100000", LIVECAST_MAX_WAIT_MS="5000,5000,5000,5000",
               LIVECAST_CONNECT_GLOBAL_RATE="0", LIVECAST_LOGIN_GLOBAL_RATE="0",
               LIVECAST_MEMBER_ATTRS="1")
    return env


def spawn_server(port: int, data_dir: str, log: Path,
                 extra: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``livecast serve`` as a child process, its output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "livecast", "serve"],
                                env={**server_env(port, data_dir), **(extra or {})}, stdout=out,
                                stderr=subprocess.STDOUT)


async def start_server(port: int, data_dir: str, log: Path, extra: dict[str, str] | None = None,
                       create: bool = True) -> subprocess.Popen[bytes]:
    """``spawn_server`` once it is ready, with the fuzz room created (``create``)."""
    proc = spawn_server(port, data_dir, log, extra)
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as http:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"livecast serve exited with {proc.returncode}: see {log}")
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                    if resp.status == 200:
                        break
            except aiohttp.ClientConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("livecast serve never became ready")
            await asyncio.sleep(0.05)  # polling a process for readiness
        if not create:
            return proc
        params = {"sdkappid": str(SDKAPPID), "identifier": ADMIN, "usersig": sig(ADMIN),
                  "random": "1", "contenttype": "json"}
        body = {"Type": "AVChatRoom", "Name": ROOM, "GroupId": ROOM}
        async with http.post(f"http://127.0.0.1:{port}/v4/group_open_http_svc/create_group",
                             params=params, data=orjson.dumps(body)) as resp:
            answer = await resp.json(content_type=None)
            if answer["ErrorCode"] != 0:
                raise RuntimeError(f"create_group: {answer}")
    return proc


async def fresh_client_works(port: int) -> str | None:
    """None when a new client logs in, joins, sends and receives; else what failed."""
    async with Client(f"ws://127.0.0.1:{port}/v1/ws") as c:
        r = await c.login(SDKAPPID, "checker", sig("checker"))
        if r["code"] != 0:
            return f"login: {r}"
        if (r := await c.join(ROOM))["code"] != 0:
            return f"join: {r}"
        r = await c.send(ROOM, text("still alive"), priority="High")
        if r["code"] != 0 or r["msgSeq"] <= 0:
            return f"send: {r}"
        while True:
            push = await c.next_push("msgs", within=WAIT)
            if any(m["seq"] == r["msgSeq"] for m in push["msgs"]):
                return None


@dataclass
class Report:
    tally: Tally
    seconds: float
    crashed: bool
    log_errors: list[str]
    alive: str | None

    @property
    def ok(self) -> bool:
        return not (self.tally.problems or self.crashed or self.log_errors or self.alive)

    def lines(self) -> list[str]:
        t = self.tally
        return [
            f"frames: {t.frames} cases in {self.seconds:.1f} s ({t.frames / self.seconds:.0f}/s), "
            f"{t.written} WebSocket frames written (sync pings included)",
            f"cases: {dict(sorted(t.cases.items()))}",
            f"replies by code: {dict(sorted(t.replies.items()))}",
            f"closes by code: {dict(sorted(t.closes.items()))}",
            f"pushes: {dict(sorted(t.pushes.items()))}",
            f"problems: {len(t.problems)}" + "".join(f"\n  {p}" for p in t.problems[:20]),
            f"crashes: {int(self.crashed)}; log errors/tracebacks: {len(self.log_errors)}"
            + "".join(f"\n  {e}" for e in self.log_errors[:10]),
            f"fresh client afterwards: {self.alive or 'logged in, joined, sent, received'}",
        ]


async def fuzz(frames: int, connections: int, seed: int) -> Report:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "serve.log"
        proc = await start_server(port, tmp, log)
        tally = Tally()
        budget = [frames]
        started = time.monotonic()
        try:
            workers = [Worker(i, port, tally, random.Random(seed * 1000 + i))
                       for i in range(connections)]
            await asyncio.gather(*(w.run(budget) for w in workers))
            seconds = time.monotonic() - started
            crashed = proc.poll() is not None
            alive = "server exited" if crashed else await fresh_client_works(port)
        finally:
            proc.terminate()
            proc.wait(30)
        lines = log.read_text(errors="replace").splitlines()
        errors = [x for x in lines if "Traceback" in x or " ERROR " in x or " CRITICAL " in x]
    return Report(tally, seconds, crashed, errors, alive)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()
    print(f"seed {args.seed}, {args.connections} connections", flush=True)
    report = asyncio.run(fuzz(args.frames, args.connections, args.seed))
    print("\n".join(report.lines()))
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
