"""A reconnect storm against ``livecast serve`` (docs/reliability.md).

    python -m loadtests.reconnect_storm --members 1000 [--rate 100 --burst 50 --grace 5]

Starts ``livecast serve`` with a node-wide connect limit (``--rate`` per
second, ``--burst``), logs ``--members`` members into a room one after the
other, kills the server (SIGKILL), starts it again on the same port and data
directory, and has every member reconnect at once with
``Client.connect_and_login`` (which waits out a 4013's retry hint plus
jitter).  Prints how many came back (logged in and joined), how long it
took, how many connects were refused 4013, and the errors; exits 1 unless
every member came back.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from livecast.client import Client
from loadtests.fuzz_cases import SDKAPPID
from loadtests.fuzz_frames import ROOM, WAIT, free_port, sig, start_server


async def member(port: int, user: str) -> tuple[Client, bool]:
    c = Client(f"ws://127.0.0.1:{port}/v1/ws", timeout=WAIT)
    login = await c.connect_and_login(SDKAPPID, user, sig(user), attempts=10)
    return c, login["code"] == 0 and (await c.join(ROOM))["code"] == 0


async def refused(port: int) -> float:
    async with aiohttp.ClientSession() as http, \
            http.get(f"http://127.0.0.1:{port}/metrics") as resp:
        text = await resp.text()
    for line in text.splitlines():
        if (line.startswith("livecast_admission_refused_total{") and 'what="connect"' in line
                and 'scope="global"' in line):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)


async def storm(members: int, rate: int, burst: int, grace: float) -> dict[str, Any]:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "serve.log"
        extra = {"LIVECAST_CONNECT_GLOBAL_RATE": str(rate),
                 "LIVECAST_CONNECT_GLOBAL_BURST": str(burst),
                 "LIVECAST_SHUTDOWN_GRACE": str(grace)}
        proc = await start_server(port, tmp, log, extra)
        first = [await member(port, f"u{i}") for i in range(members)]
        kill(proc)
        await asyncio.gather(*(c.wait_closed(WAIT) for c, _ in first))
        await asyncio.gather(*(c.close() for c, _ in first))
        proc = await start_server(port, tmp, log, extra, create=False)
        started = time.monotonic()
        results = await asyncio.gather(*(member(port, f"u{i}") for i in range(members)),
                                       return_exceptions=True)
        seconds = time.monotonic() - started
        back = [r for r in results if not isinstance(r, BaseException)]
        errors = sorted({repr(r) for r in results if isinstance(r, BaseException)})
        figures = {"members": members, "back": sum(ok for _, ok in back),
                   "seconds": round(seconds, 2), "refused_4013": await refused(port),
                   "errors": len(results) - len(back), "error_kinds": errors[:5]}
        await asyncio.gather(*(c.close() for c, _ in back))
        kill(proc)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=100)
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--grace", type=float, default=5.0,
                        help="LIVECAST_SHUTDOWN_GRACE: how long a refused client may take "
                             "to answer its 4013 close")
    args = parser.parse_args()
    figures = asyncio.run(storm(args.members, args.rate, args.burst, args.grace))
    print(figures)
    sys.exit(0 if figures["back"] == args.members else 1)


if __name__ == "__main__":
    main()
