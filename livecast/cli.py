"""Command line: ``livecast serve | usersig | counter | bench`` (README, "Configuration").

Flags + env -> Settings, built once here; uvloop installed; the app run.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from livecast.core import usersig
from livecast.core.ops import is_loopback_host as is_loopback
from livecast.runner import raise_fd_limit
from livecast.settings import ENV, FIELD_OF, ConfigError, Settings, build, with_flags

if TYPE_CHECKING:
    from livecast.counter.settings import CounterSettings
    from livecast.node.node import Node
    from livecast.store.base import Store

log = logging.getLogger("livecast")
MIN_KEY_CHARS = 16  # a secret key's least length off loopback


def _serve_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the server (WebSocket gateway, REST API, metrics)")
    for name, _, _ in ENV:
        p.add_argument(flag_of(name), dest=name, metavar=name, default=None,
                       help=f"overrides ${name}")


def flag_of(name: str) -> str:
    """A variable's ``serve`` flag: its name without ``LIVECAST_``, lower case,
    dashes for underscores (``LIVECAST_OUTBOX_SOFT_KB`` is ``--outbox-soft-kb``,
    in the variable's unit)."""
    return "--" + name.removeprefix("LIVECAST_").lower().replace("_", "-")


def _usersig_parser(sub: Any) -> None:
    p = sub.add_parser("usersig", help="print a UserSig for USERID minted with the app key")
    p.add_argument("userid")
    p.add_argument("--expire", type=int, default=usersig.DEFAULT_EXPIRE,
                   help="validity in seconds (default 180 days)")


def _counter_parser(sub: Any) -> None:
    from livecast.counter.settings import add_flags

    add_flags(sub.add_parser("counter", help="run the like counter (webhooks in, totals out)"))


def _bench_parser(sub: Any) -> None:
    from livecast.bench.cli import add_arguments

    add_arguments(sub.add_parser("bench", help="the fan-out benchmark (clients on loopback)"))


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="livecast", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _usersig_parser(sub)
    _bench_parser(sub)
    _counter_parser(sub)
    return ap


def counter(args: argparse.Namespace) -> int:
    """``livecast counter``: its own settings (livecast.counter.settings), then run."""
    from livecast.counter import app, settings

    try:
        s = settings.from_args(args, dict(os.environ))
    except ConfigError as exc:
        print(f"livecast: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=s.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app.run(s)
    return 0


def settings_from(args: argparse.Namespace, env: dict[str, str]) -> Settings:
    return build(with_flags(env, args, FIELD_OF))


def banner(s: Settings) -> str:
    url = f"http://{s.host}:{s.port}"
    lines = [f"livecast listening on {url}  (WebSocket {url.replace('http', 'ws')}/v1/ws)",
             f"  sdkappid  {s.sdkappid}", store_line(s)]
    if s.dev_key:
        now = time.time()
        admin = s.admins[0]
        lines += [
            f"  dev key   {s.secret_key.value}   (development only: set LIVECAST_SECRET_KEY)",
            f"  UserSig for {admin}: {usersig.mint(s.sdkappid, s.secret_key.value, admin, now)}",
            f"  UserSig for demo-user: "
            f"{usersig.mint(s.sdkappid, s.secret_key.value, 'demo-user', now)}",
            "  demo room  'demo' is open",
        ]
    return "\n".join(lines)


def durable_store(s: Settings) -> Callable[[Node], Awaitable[Store]]:
    """The store ``livecast serve`` keeps its rooms in: Redis when
    LIVECAST_REDIS_URL is set, else SQLite in LIVECAST_DATA_DIR; its latency
    and errors go to the node's metrics.  With Redis the process is also a
    member of the cluster on it (node/cluster.py)."""
    async def open_(node: Node) -> Store:
        from livecast.store import open_store, prometheus_observer

        m = node.metrics
        store = await open_store(s.redis_url, s.data_dir,
                                 prometheus_observer(m.store_seconds, m.store_errors))
        if s.redis_url:
            from livecast.backplane.redis_broker import RedisBroker
            from livecast.node.cluster import new_node_id

            node.join_cluster(RedisBroker(s.redis_url, new_node_id()))
            if s.history_size:
                from livecast.node.history import RedisHistoryStore

                node.history.store = RedisHistoryStore(s.redis_url, s)
        return store
    return open_


def store_line(s: Settings) -> str:
    if s.redis_url:
        where = urlsplit(s.redis_url.split(",")[0])
        return f"  store     Redis at {where.hostname}:{where.port or 6379}"
    return f"  store     SQLite in {s.data_dir}"


def workers(s: Settings) -> int:
    """``serve --workers N``: N processes on one port (SO_REUSEPORT), members
    of one cluster on Redis; restarted when one dies, stopped on SIGINT/SIGTERM."""
    if not s.redis_url:
        print("livecast: --workers needs LIVECAST_REDIS_URL: worker processes share rooms "
              "through Redis (a cluster); without it, run one process", file=sys.stderr)
        return 2
    import contextlib
    import select
    import signal
    import subprocess

    env = dict(os.environ)
    children: dict[int, subprocess.Popen[bytes]] = {}

    def spawn(i: int) -> None:
        children[i] = subprocess.Popen(
            [sys.executable, "-m", "livecast", "serve"],
            env=dict(env, LIVECAST_WORKER=str(i), LIVECAST_WORKERS="1",
                     LIVECAST_HOST=s.host, LIVECAST_PORT=str(s.port)))

    # The supervisor sleeps until a signal comes: SIGCHLD (a worker exited),
    # SIGINT or SIGTERM each write a byte to the wakeup pipe; no polling.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    stopping: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: stopping.append(signum))
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
    for i in range(1, s.workers + 1):
        spawn(i)
    log.info("%d workers on %s:%d", s.workers, s.host, s.port)
    while not stopping:
        select.select([wake_r], [], [])
        with contextlib.suppress(BlockingIOError):
            os.read(wake_r, 4096)
        for i, child in list(children.items()):
            if child.poll() is not None and not stopping:
                log.warning("worker %d exited (%s): restarting it", i, child.returncode)
                spawn(i)
    signal.set_wakeup_fd(-1)
    os.close(wake_r)
    os.close(wake_w)
    for child in children.values():
        child.send_signal(signal.SIGTERM)
    for child in children.values():
        child.wait()
    return 0


def serve(s: Settings, likes: CounterSettings | None = None) -> int:
    from livecast.gateway.app import make_app
    from livecast.gateway.front import Front
    from livecast.runner import install_uvloop, serve_app
    from livecast.store.base import StoreError

    install_uvloop()
    log.info("open-files limit %d", raise_fd_limit())
    app = make_app(s, likes=likes, open_store=durable_store(s))
    try:
        asyncio.run(serve_app(app, s.host, s.port, banner(s),
                              s.shutdown_grace + 1,
                              front=Front, reuse_port=s.worker > 0))
    except StoreError as exc:
        where = "LIVECAST_REDIS_URL" if s.redis_url else f"LIVECAST_DATA_DIR ({s.data_dir})"
        print(f"livecast: the store could not be opened ({where}): {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "bench":
        from livecast.bench.cli import run

        return run(args)
    if args.command == "counter":
        return counter(args)
    try:
        s = settings_from(args, dict(os.environ))
    except ConfigError as exc:
        print(f"livecast: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=s.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "usersig":
        if args.expire < 1:
            print("livecast: --expire must be positive", file=sys.stderr)
            return 2
        print(usersig.mint(s.sdkappid, s.secret_key.value, args.userid, time.time(), args.expire))
        return 0
    if not s.dev_key and not is_loopback(s.host) and len(s.secret_key.value) < MIN_KEY_CHARS:
        print(f"livecast: LIVECAST_SECRET_KEY is too short for a server reachable off "
              f"loopback: at least {MIN_KEY_CHARS} characters (`openssl rand -hex 32` makes "
              "a good one)", file=sys.stderr)
        return 2
    if s.dev_key and not is_loopback(s.host):
        print(f"livecast: refusing to listen on {s.host} with the development key: anyone who "
              "can reach the server could mint UserSigs; set LIVECAST_SECRET_KEY",
              file=sys.stderr)
        return 2
    from livecast.counter.settings import in_process

    try:  # the in-process like counter reads the counter's like variables
        likes = in_process(dict(os.environ))
    except ConfigError as exc:
        print(f"livecast: configuration error: {exc}", file=sys.stderr)
        return 2
    if s.workers > 1 and not s.worker:
        return workers(s)
    return serve(s, likes)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
