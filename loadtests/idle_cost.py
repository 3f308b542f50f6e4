"""What a server costs doing nothing: CPU and wake-ups of an idle ``livecast
serve`` (no member, no room), alone and as ``--workers N`` on a
redis-server started here, over a window after start-up.

    python -m loadtests.idle_cost --configs single,1,3 --window 15

For each configuration, each process (the supervisor, every worker, the
redis-server) is measured from ``/proc/<pid>/task/*/schedstat``: its exact
CPU time (the scheduler's runtime) and how many times it was put on a CPU
(each a wake-up: a timer, a reply, a poll).  Every such wake-up costs a
process on this machine far more than the Python it runs
(docs/benchmarks.md, "Fewer wake-ups"), so a server that polls when idle
pays for it on every process of a cluster, under load too.  Prints one line
per process and a total per configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import tempfile
import time
from pathlib import Path

import psutil

from tests.redis_fixtures import free_port, start_server
from tests.test_restart import KEY, start_ready

SETTLE = 3.0  # seconds after ready before the window: start-up work is over


def schedstat(pid: int) -> tuple[float, int]:
    """(CPU seconds, times put on a CPU) of every thread of ``pid``."""
    ns = runs = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            fields = f.read().split()
        ns, runs = ns + int(fields[0]), runs + int(fields[2])
    return ns / 1e9, runs


async def measure(config: str, window: float, directory: Path) -> list[tuple[str, float, int]]:
    """``[(process, CPU s, wake-ups)]`` of one configuration over ``window`` s."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECAST_")}
    port = free_port()
    env.update(LIVECAST_SECRET_KEY=KEY, LIVECAST_PORT=str(port),
               LIVECAST_DATA_DIR=str(directory / f"data-{config}"))
    redis = None
    if config != "single":
        redis = start_server(directory)
        env["LIVECAST_REDIS_URL"] = redis.url
        if int(config) > 1:
            env["LIVECAST_WORKERS"] = config
    proc = await start_ready("serve", env, f"http://127.0.0.1:{port}/readyz")
    try:
        await asyncio.sleep(SETTLE)  # the window starts once start-up is over
        named = [("supervisor" if config not in ("single", "1") else "server", proc.pid)]
        named += [(f"worker {i + 1}", p.pid) for i, p in
                  enumerate(psutil.Process(proc.pid).children())]
        if redis is not None and redis.process is not None:
            named.append(("redis-server", redis.process.pid))
        before = [schedstat(pid) for _name, pid in named]
        await asyncio.sleep(window)  # the measured window itself: nothing runs meanwhile
        after = [schedstat(pid) for _name, pid in named]
        return [(name, a[0] - b[0], a[1] - b[1])
                for (name, _pid), b, a in zip(named, before, after, strict=True)]
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
        if redis is not None:
            redis.stop()


async def run(configs: list[str], window: float) -> None:
    with tempfile.TemporaryDirectory() as d:
        for config in configs:
            rows = await measure(config, window, Path(d))
            for name, cpu, runs in rows:
                print(f"{config}: {name}: {cpu * 1000:.1f} ms CPU, {runs} wake-ups "
                      f"in {window:g} s", flush=True)
            print(f"{config}: total {sum(r[1] for r in rows) * 1000:.1f} ms CPU, "
                  f"{sum(r[2] for r in rows)} wake-ups in {window:g} s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="single,1,3",
                    help="comma-separated: single (no Redis) or a number of workers on Redis")
    ap.add_argument("--window", type=float, default=15.0, help="seconds measured")
    args = ap.parse_args()
    configs = args.configs.split(",")
    for config in configs:
        if config != "single" and not (config.isdigit() and int(config) >= 1):
            ap.error(f"a configuration is 'single' or a number of workers: {config!r}")
    start = time.monotonic()
    asyncio.run(run(configs, args.window))
    print(f"done in {time.monotonic() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
