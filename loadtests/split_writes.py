"""The machine's own part of the cluster's figure: the same writes from one
process, or split over several, with no livecast code in them.

    python -m loadtests.split_writes --conns 2000 --writers 1,2,3 --rate 10 \\
        --size 1000 --duration 15 --rounds 3

A cluster's workers fan one room out together: each gets the tick's batch
and writes it to its own share of the members.  ``loadtests.cluster_cost``
compares their CPU per delivery with one process's; this measures the same
split for a plain writer.  One reader process (uvloop) holds ``--conns`` TCP
connections on loopback and reads everything; ``N`` writer processes
(uvloop) each accept ``conns / N`` of them and, every ``1 / --rate`` seconds,
at the same wall-clock instants in every writer (as workers write a batch
when it arrives), write one ``--size``-byte frame to each with one
``transport.write``.  Nothing else runs in them.  ``--reader-work K`` makes
the reader parse a JSON list of ``K`` numbers per read, as a client parses
what it reads; ``--sndbuf B`` sets the writers' sockets' ``SO_SNDBUF`` as
livecast bounds its members' (``LIVECAST_SNDBUF_KB``).

Printed: one JSON line per run (``writers``, the writers' user and system CPU
over the window from ``/proc/<pid>/stat``, writes, CPU per write, the
reader's CPU, and the bytes it read against those the writers wrote: each
writer stops half a second after the window and closes its connections, and
the reader counts until the last one closes), and a summary of
medians per ``N`` with its multiple of ``N = 1`` on stderr.  Configurations
run in turn (1 2 3 1 2 3 ...).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

import orjson

CLK_TCK = os.sysconf("SC_CLK_TCK")
WARMUP = 2.0  # seconds of writing before the window opens


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def user_system(pid: int) -> tuple[float, float]:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


# ---------------------------------------------------------------- the writer
class _Accepted(asyncio.Protocol):
    def __init__(self, transports: list[asyncio.Transport], sndbuf: int) -> None:
        self.transports = transports
        self.sndbuf = sndbuf

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.sndbuf:  # as livecast bounds its members' sockets (LIVECAST_SNDBUF_KB)
            sock = transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
        self.transports.append(transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        return None


async def write(port: int, start: float, stop: float, rate: float, size: int,
                sndbuf: int = 0) -> int:
    """Accept connections on ``port``; from wall-clock ``start`` until
    ``stop``, write one frame to each of them every ``1 / rate`` seconds;
    then close them.  Returns the frames written."""
    loop = asyncio.get_running_loop()
    transports: list[asyncio.Transport] = []
    server = await loop.create_server(lambda: _Accepted(transports, sndbuf), "127.0.0.1", port,
                                      backlog=4096)
    data = b"x" * size
    done: asyncio.Future[None] = loop.create_future()
    at, written = start, 0

    def tick() -> None:
        nonlocal at, written
        if time.time() >= stop:
            done.set_result(None)
            return
        for transport in transports:
            transport.write(data)
        written += len(transports)
        at += 1 / rate
        loop.call_later(max(0.0, at - time.time()), tick)

    loop.call_later(max(0.0, start - time.time()), tick)
    await done
    server.close()
    for transport in transports:
        transport.close()  # after what is buffered is sent
    await server.wait_closed()
    return written


# ---------------------------------------------------------------- the reader
class _Counting(asyncio.Protocol):
    received = 0
    open = 0
    closed: asyncio.Event
    work = b""  # parsed once per read, as a client reads a frame's JSON (``--reader-work``)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        _Counting.open += 1

    def data_received(self, data: bytes) -> None:
        _Counting.received += len(data)
        if _Counting.work:
            orjson.loads(_Counting.work)

    def connection_lost(self, exc: Exception | None) -> None:
        _Counting.open -= 1
        if not _Counting.open:
            _Counting.closed.set()


async def read(ports: list[int], conns: int, work: int) -> int:
    """Open ``conns`` connections over ``ports`` (round robin) and read
    everything (parsing a JSON list of ``work`` numbers per read); print
    "connected" once all are open.  Returns the bytes read once every
    writer has closed its connections."""
    _Counting.work = orjson.dumps(list(range(work))) if work else b""
    _Counting.closed = asyncio.Event()
    loop = asyncio.get_running_loop()
    for i in range(conns):
        await loop.create_connection(_Counting, "127.0.0.1", ports[i % len(ports)])
    print("connected", flush=True)
    await _Counting.closed.wait()
    return _Counting.received


# ---------------------------------------------------------------- one run
def run(writers: int, args: argparse.Namespace) -> dict[str, Any]:
    me = [sys.executable, "-m", "loadtests.split_writes"]
    ports = [free_port() for _ in range(writers)]
    start = time.time() + 3.0
    stop = start + WARMUP + args.duration + 0.5
    procs = [subprocess.Popen([*me, "--serve", str(p), "--start", repr(start), "--stop",
                               repr(stop), "--rate", str(args.rate), "--size", str(args.size),
                               "--sndbuf", str(args.sndbuf)],
                              stdout=subprocess.PIPE, text=True) for p in ports]
    time.sleep(0.5)  # listening
    reader = subprocess.Popen([*me, "--read", ",".join(map(str, ports)), "--conns",
                               str(args.conns), "--reader-work", str(args.reader_work)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout is not None
        if reader.stdout.readline().strip() != "connected":
            raise RuntimeError("the reader did not connect")
        time.sleep(max(0.0, start + WARMUP - time.time()))
        before = [user_system(p.pid) for p in procs]
        reader_before = sum(user_system(reader.pid))
        t0 = time.time()
        time.sleep(args.duration)
        after = [user_system(p.pid) for p in procs]
        reader_cpu = sum(user_system(reader.pid)) - reader_before
        window = time.time() - t0
        written = sum(int(p.communicate(timeout=60)[0].split()[-1]) for p in procs)
        read_bytes = int(reader.communicate(timeout=60)[0].split()[-1])
    finally:
        for p in (*procs, reader):
            if p.poll() is None:
                p.kill()
                p.wait()
    user = sum(a[0] - b[0] for a, b in zip(after, before, strict=True))
    system = sum(a[1] - b[1] for a, b in zip(after, before, strict=True))
    writes = args.conns * args.rate * window  # in the window, at the writers' pace
    return {"writers": writers, "conns": args.conns, "rate": args.rate, "size": args.size,
            "window_s": round(window, 3), "user_s": round(user, 2), "system_s": round(system, 2),
            "writes": int(writes), "us_per_write": round((user + system) / writes * 1e6, 3),
            "reader_cpu_s": round(reader_cpu, 2), "written_bytes": written * args.size,
            "read_bytes": read_bytes}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtests.split_writes", description=__doc__)
    ap.add_argument("--writers", default="1,2,3", help="comma-separated writer counts")
    ap.add_argument("--conns", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=10, help="frames per second per connection")
    ap.add_argument("--size", type=int, default=1000, help="bytes per frame")
    ap.add_argument("--duration", type=float, default=15)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--sndbuf", type=int, default=0,
                    help="SO_SNDBUF of the writers' sockets (0: the kernel's default)")
    ap.add_argument("--reader-work", type=int, default=0,
                    help="the reader parses a JSON list of this many numbers per read")
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # a writer process
    ap.add_argument("--start", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--stop", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--read", help=argparse.SUPPRESS)  # the reader process
    args = ap.parse_args(argv)
    import uvloop

    if args.serve:
        print(uvloop.run(write(args.serve, args.start, args.stop, args.rate, args.size,
                               args.sndbuf)))
        return 0
    if args.read:
        print(uvloop.run(read([int(p) for p in args.read.split(",")], args.conns,
                              args.reader_work)))
        return 0
    counts = [int(n) for n in args.writers.split(",")]
    results: dict[int, list[float]] = {n: [] for n in counts}
    for _ in range(args.rounds):
        for n in counts:
            row = run(n, args)
            print(json.dumps(row), flush=True)
            results[n].append(row["us_per_write"])
    base = statistics.median(results[counts[0]])
    for n in counts:
        med = statistics.median(results[n])
        times = f"{med / base:.2f}x" if base else "n/a"
        print(f"writers={n}: {med:.3f} us CPU per write ({times} {counts[0]} writer)",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
