"""What the cluster costs: server CPU per delivery with 1, 2 and 3 worker
processes on one Redis (Redis's own CPU included) against the single-process
default, and Redis commands per room per tick, side by side in one run.

    python -m loadtests.cluster_cost --configs single,1,2,3 --members 2000 \\
        --rate 40 --duration 15 --rounds 2
    python -m loadtests.cluster_cost --configs 2 --members 1000,5000,20000 \\
        --rate 10 --duration 15

Configurations, run in turn (A B C D A B C D ...), each on a fresh server:
``single``: ``livecast serve`` as shipped (no Redis; SQLite in a fresh data
directory).  ``N``: ``livecast serve --workers N`` (``N=1``: one
``livecast serve``) with ``LIVECAST_REDIS_URL`` on a ``redis-server``
started here on a free loopback port (no persistence), emptied
(``FLUSHALL``) and its counters reset (``CONFIG RESETSTAT``) before each run.

Each run is one ``livecast bench --url ... --pid PID,PID,...`` against the
running server: the bench sums the CPU of every listed process over its
publishing window (``/proc/<pid>/stat``), here the serving processes (the
supervisor and its workers) and the redis-server.  While the bench publishes,
``INFO commandstats`` is read at each of its progress lines (these reads left out); the difference
between the first and the last reading while publishing (not draining) over
the time between them, divided by the dispatch tick, is the Redis commands
per room per tick (one room).

Printed: one JSON line per run on stdout (``config``, ``members``, the
bench's figures, ``redis_cpu_s`` in the window between the first and last
progress lines, ``redis_calls_per_tick`` and its split per command), and a
summary of medians per configuration on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import redis

from livecast.bench.run import room_ids
from livecast.bench.server import ServerProc, cpu_seconds, create_rooms

CLK_TCK = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT = 30.0
SDKAPPID = 1400000000
PROGRESS = re.compile(r" t=\s*([0-9.]+)s ")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(cpus: str) -> list[str]:
    """``taskset -c CPUS`` before a command ([] for no pinning)."""
    return [shutil.which("taskset") or "taskset", "-c", cpus] if cpus else []


def start_redis(directory: Path, cpus: str = "") -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [*pinned(cpus), shutil.which("redis-server") or "redis-server", "--port", str(port),
         "--save", "", "--appendonly", "no", "--bind", "127.0.0.1", "--dir", str(directory)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        try:
            if redis.Redis(port=port).ping():
                return proc, port
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.05)


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (/proc/<pid>/task/*/children)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def start_livecast(config: str, key: str, redis_port: int, data: Path, tick_ms: int,
                   log_path: str = "", cpus: str = "",
                   extra_env: dict[str, str] | None = None,
                   ) -> tuple[subprocess.Popen[bytes], int, list[int]]:
    """The server of one configuration: (process, port, every serving pid)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECAST_")}
    env.update(LIVECAST_HOST="127.0.0.1", LIVECAST_PORT=str(port), LIVECAST_SECRET_KEY=key,
               LIVECAST_TICK_MS=str(tick_ms), LIVECAST_LOG_LEVEL="warning",
               LIVECAST_SHUTDOWN_GRACE="1", LIVECAST_DATA_DIR=str(data))
    env.update(extra_env or {})
    argv = [*pinned(cpus), sys.executable, "-m", "livecast", "serve"]
    workers = 0 if config == "single" else int(config)
    if workers:
        env["LIVECAST_REDIS_URL"] = f"redis://127.0.0.1:{redis_port}"
    if workers > 1:
        argv += ["--workers", str(workers)]
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
    finally:
        if not isinstance(log, int):
            log.close()
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200 and len(children(proc.pid)) >= (workers if workers > 1 else 0):
                    break
        except OSError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"livecast ({config}) did not become ready")
        time.sleep(0.1)
    if workers:  # the bench's room, known to every worker before the bench joins it
        room = room_ids(1)[0]
        server = ServerProc("external", "127.0.0.1", port, proc.pid)
        asyncio.run(create_rooms(server, (room,), SDKAPPID, key, "administrator"))
        known = 0
        while known < workers * 20:  # new connections land on any worker (SO_REUSEPORT)
            try:
                with urllib.request.urlopen(
                        f"http://127.0.0.1:{port}/pages/room?groupId={room}", timeout=2):
                    known += 1
            except OSError:
                known = 0
                if time.monotonic() > deadline:
                    raise RuntimeError("a worker never loaded the bench's room") from None
                time.sleep(0.05)
    return proc, port, [proc.pid, *children(proc.pid)]


def stop(proc: subprocess.Popen[bytes], workers: list[int]) -> None:
    """SIGTERM to the server; past 20 s, SIGKILL to it and to any worker left."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        print(f"   the server did not stop in 20 s: killed (workers {workers})",
              file=sys.stderr, flush=True)
        proc.kill()
        proc.wait()
    for pid in workers:
        if Path(f"/proc/{pid}").exists():  # a worker its supervisor left behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def profile(directory: str, config: str, members: int, pids: list[int],
            rate: int = 200) -> list[subprocess.Popen[bytes]]:
    """``py-spy record`` (10 s at ``rate`` Hz, collapsed stacks) of every
    serving process, started at the bench's first progress line (publishing)."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    return [subprocess.Popen(
        [shutil.which("py-spy") or "py-spy", "record", "--nonblocking", "-r", str(rate), "-d",
         "10", "-f", "raw", "-o", f"{directory}/{config}-{members}-{pid}.txt", "--pid",
         str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for pid in pids]


def user_system(pids: list[int]) -> list[tuple[float, float]]:
    """(user, system) CPU seconds of each process so far (/proc/<pid>/stat)."""
    out = []
    for pid in pids:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        out.append((int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK))
    return out


def commandstats(client: redis.Redis) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): int(v["calls"])
            for name, v in client.info("commandstats").items()}


def one_run(config: str, members: int, args: argparse.Namespace, key: str,
            redis_proc: subprocess.Popen[bytes], redis_port: int) -> dict[str, Any]:
    client = redis.Redis(port=redis_port)
    client.flushall()
    client.config_resetstat()
    with tempfile.TemporaryDirectory() as data:
        proc, port, pids = start_livecast(config, key, redis_port, Path(data), args.tick_ms,
                                          args.server_log, args.server_cpus,
                                          dict(kv.split("=", 1) for kv in args.server_env))
        if config != "single":
            pids.append(redis_proc.pid)
        try:
            argv = [*pinned(args.bench_cpus), sys.executable, "-m", "livecast", "bench", "--url",
                    f"ws://127.0.0.1:{port}/v1/ws", "--pid", ",".join(map(str, pids)),
                    "--secret-key", key, "--members", str(members), "--rate", str(args.rate),
                    "--duration", str(args.duration), "--tick-ms", str(args.tick_ms),
                    *args.bench]
            shown = " ".join(argv[argv.index("-m") + 2:])
            print(f"== {config} members={members}: {shown}", file=sys.stderr, flush=True)
            bench = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
            assert bench.stderr is not None and bench.stdout is not None
            readings: list[tuple[float, dict[str, int], float]] = []
            split: list[list[tuple[float, float]]] = []  # per progress line, per process
            spies: list[subprocess.Popen[bytes]] = []
            publishing = args.duration + 0.5  # progress lines after it are the drain's
            for line in bench.stderr:
                m = PROGRESS.search(line)
                if m is not None and args.profile and not spies:
                    spies = profile(args.profile, config, members,
                                    [p for p in pids if p != redis_proc.pid], args.profile_rate)
                if m is not None and float(m.group(1)) <= publishing:
                    split.append(user_system(pids))
                if m is not None and config != "single" and float(m.group(1)) <= publishing:
                    readings.append((float(m.group(1)), commandstats(client),
                                     cpu_seconds(redis_proc.pid)))
                if m is None or float(m.group(1)) % 5 < 1:
                    print("   " + line.rstrip(), file=sys.stderr, flush=True)
            out = bench.stdout.read()
            for spy in spies:
                spy.wait()
            if bench.wait() != 0:
                raise RuntimeError(f"bench failed ({config}, {members})")
        finally:
            stop(proc, [p for p in pids if p not in (proc.pid, redis_proc.pid)])
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    row: dict[str, Any] = {"config": config, "members": members, "pids": len(pids),
                           "bench": result["rounds"][0]}
    if len(split) >= 2:  # user and system CPU of each process, first to last progress line
        per_pid = [(round(u1 - u0, 2), round(s1 - s0, 2))
                   for (u0, s0), (u1, s1) in zip(split[0], split[-1], strict=True)]
        row.update(user_s=round(sum(u for u, _ in per_pid), 2),
                   system_s=round(sum(s for _, s in per_pid), 2), user_system_by_pid=per_pid)
    if len(readings) >= 2:
        (t0, c0, r0), (t1, c1, r1) = readings[0], readings[-1]
        ticks = (t1 - t0) / (args.tick_ms / 1000)
        per = {k: round((c1.get(k, 0) - c0.get(k, 0)) / ticks, 3) for k in c1 if k != "info"}
        row.update(window_s=round(t1 - t0, 2), redis_cpu_s=round(r1 - r0, 3),
                   redis_calls_per_tick=round(sum(per.values()), 3),
                   redis_calls_per_tick_by_command={k: v for k, v in per.items() if v})
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="single,1,2,3",
                    help="comma-separated: single, or a number of workers")
    ap.add_argument("--members", default="2000", help="comma-separated member counts")
    ap.add_argument("--rate", type=float, default=40)
    ap.add_argument("--duration", type=float, default=15)
    ap.add_argument("--tick-ms", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--server-log", default="", help="append the servers' output to this file")
    ap.add_argument("--server-cpus", default="",
                    help="pin the servers and redis-server to these CPUs (taskset -c)")
    ap.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                    help="one more environment variable for the servers (repeatable)")
    ap.add_argument("--bench-cpus", default="", help="pin the bench to these CPUs")
    ap.add_argument("--profile", default="",
                    help="py-spy every serving process into this directory while publishing")
    ap.add_argument("--profile-rate", type=int, default=200, help="py-spy's samples a second")
    ap.add_argument("bench", nargs="*", help="more `livecast bench` flags (after --)")
    args = ap.parse_args()
    configs = args.configs.split(",")
    key = secrets.token_hex(16)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as rdir:
        redis_proc, redis_port = start_redis(Path(rdir), args.server_cpus)
        try:
            for members in (int(m) for m in args.members.split(",")):
                for _ in range(args.rounds):
                    for config in configs:
                        row = one_run(config, members, args, key, redis_proc, redis_port)
                        print(json.dumps(row), flush=True)
                        rows.append(row)
        finally:
            redis_proc.kill()
            redis_proc.wait()
    summary(rows)
    return 0


def summary(rows: list[dict[str, Any]]) -> None:
    for members in sorted({r["members"] for r in rows}):
        mine = [r for r in rows if r["members"] == members]
        single = [r["bench"]["cpu_per_delivery_us"] for r in mine if r["config"] == "single"]
        base = statistics.median(single) if single else None
        for config in dict.fromkeys(r["config"] for r in mine):
            rs = [r for r in mine if r["config"] == config]
            us = statistics.median(r["bench"]["cpu_per_delivery_us"] for r in rs)
            ratio = f" ({us / base:.2f}x single)" if base else ""
            calls = [r["redis_calls_per_tick"] for r in rs if "redis_calls_per_tick" in r]
            per_tick = f", redis calls/tick {statistics.median(calls):.2f}" if calls else ""
            print(f"members={members} {config}: {us:.2f} us CPU per delivery{ratio}{per_tick}",
                  file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
