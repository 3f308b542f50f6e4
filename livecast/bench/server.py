"""The server under test: start it, read its CPU and memory, create rooms, stop it.

CPU is read from ``/proc/<pid>/stat`` (utime + stime, in clock ticks) and
memory from ``/proc/<pid>/status`` (VmRSS): the server's own costs, whatever
the bench's clients spend.  A started server runs as a subprocess of the
bench with its output in a log file, shown when it fails to come up.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from livecast.bench.dialects import DIALECTS
from livecast.core.usersig import mint
from livecast.errors import Code

CLK_TCK = os.sysconf("SC_CLK_TCK")
GROUP_TAKEN = (Code.GROUP_ID_TAKEN, Code.GROUP_ID_TAKEN_BY_YOU)   # the room exists already


@dataclass(slots=True)
class ServerProc:
    """A server the bench talks to: where it listens and which process it is."""

    kind: str                      # "livecast", "baseline", "external", or a peer's name
    host: str
    port: int
    pid: int
    path: str = "/v1/ws"
    dialect: str = "livecast"      # livecast.bench.dialects
    proc: asyncio.subprocess.Process | None = None
    log: Path | None = None
    also: tuple[int, ...] = ()     # more processes whose CPU is the server's (--pid A,B,...)

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the server's processes so far."""
        return sum(cpu_seconds(p) for p in (self.pid, *self.also))

    @property
    def output(self) -> str:
        """What a started server printed (its log file)."""
        return self.log.read_text(errors="replace") if self.log is not None else ""

    @property
    def http(self) -> str:
        return f"http://{self.host}:{self.port}"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used so far."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_seconds() -> tuple[float, float]:
    """(busy, softirq): CPU seconds all cores spent not idle, and of those in
    softirq (``/proc/stat``), where loopback TCP is mostly processed and which
    no process's utime/stime includes."""
    with open("/proc/stat", "rb") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / CLK_TCK, ticks[6] / CLK_TCK


def open_files_limit(pid: int) -> int:
    """The process's soft RLIMIT_NOFILE (``/proc/<pid>/limits``); 0 when unknown."""
    with open(f"/proc/{pid}/limits", "rb") as f:
        for line in f:
            if line.startswith(b"Max open files"):
                soft = line.split()[3]
                return int(soft) if soft.isascii() and soft.isdigit() else 1 << 30
    return 0


def rss_kb(pid: int) -> int:
    """Resident set size in KiB."""
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1])
    return 0


def livecast_command(port: int, key: str, sdkappid: int, tick_ms: int,
                     extra: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ, LIVECAST_HOST="127.0.0.1", LIVECAST_PORT=str(port),
               LIVECAST_SECRET_KEY=key, LIVECAST_SDKAPPID=str(sdkappid),
               LIVECAST_TICK_MS=str(tick_ms), LIVECAST_LOG_LEVEL="warning",
               LIVECAST_SHUTDOWN_GRACE="1")
    env.update(extra)
    return [sys.executable, "-m", "livecast", "serve"], env


def baseline_command(port: int, tick_ms: int,
                     steps: bool = False) -> tuple[list[str], dict[str, str]]:
    return ([sys.executable, "-m", "livecast.bench.baseline", "--port", str(port),
             "--tick-ms", str(tick_ms), *(["--steps"] if steps else [])], dict(os.environ))


# The peers: small servers of other stacks, run from a checkout (loadtests/peers/).
PEERS_DIR = Path(__file__).resolve().parents[2] / "loadtests" / "peers"
PEERS: dict[str, tuple[str, ...]] = {
    "socketio-node": ("node", str(PEERS_DIR / "socketio_node" / "server.js")),
    "socketio-py": (sys.executable, str(PEERS_DIR / "socketio_py.py")),
}


def peer_command(kind: str, port: int) -> tuple[list[str], dict[str, str]]:
    """A peer server's command line; ValueError when the checkout lacks it."""
    argv = [*PEERS[kind], str(port)]
    if not Path(argv[1]).exists():
        raise ValueError(f"{kind}: {argv[1]} not found (run the bench from a checkout)")
    return argv, dict(os.environ)


def _log_file(kind: str) -> tuple[Path, int]:
    fd, name = tempfile.mkstemp(prefix=f"livecast-bench-{kind}-", suffix=".log")
    return Path(name), fd


async def start(kind: str, argv: list[str], env: dict[str, str], port: int,
                dialect: str = "livecast", limit: float = 30.0) -> ServerProc:
    """Start a server subprocess and wait until it accepts connections."""
    log, fd = _log_file(kind)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=fd, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    finally:
        os.close(fd)
    server = ServerProc(kind, "127.0.0.1", port, proc.pid, DIALECTS[dialect].path, dialect,
                        proc, log)
    deadline = time.monotonic() + limit
    while not await _accepts(server.host, port):
        if proc.returncode is not None or time.monotonic() > deadline:
            await stop(server)
            raise RuntimeError(f"{kind} server did not come up; its output:\n{server.output}")
        await asyncio.sleep(0.1)
    return server


async def _accepts(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


async def stop(server: ServerProc, limit: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it lingers; the log file is removed."""
    proc = server.proc
    if proc is None:
        return
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(limit):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()
    if server.log is not None:
        server.log.unlink(missing_ok=True)


async def create_rooms(server: ServerProc, rooms: tuple[str, ...], sdkappid: int, key: str,
                       admin: str) -> None:
    """create_group (AVChatRoom) for every room through the REST API; existing rooms are kept."""
    url = f"{server.http}/v4/group_open_http_svc/create_group"
    params = {"sdkappid": str(sdkappid), "identifier": admin, "random": "1",
              "contenttype": "json", "usersig": mint(sdkappid, key, admin, time.time())}
    async with aiohttp.ClientSession() as http:
        for gid in rooms:
            body = {"Type": "AVChatRoom", "Name": gid, "GroupId": gid}
            async with http.post(url, params=params, json=body) as resp:
                answer = await resp.json(content_type=None)
            code = int(answer.get("ErrorCode", -1))
            if code and code not in GROUP_TAKEN:
                raise RuntimeError(f"create_group {gid}: {answer}")
