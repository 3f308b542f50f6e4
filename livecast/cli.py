"""Command line: ``livecast serve | usersig | counter | bench`` (README, "Configuration").

Flags + env -> Settings, built once here; uvloop installed; the app run.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from livecast.core import usersig
from livecast.core.ops import is_loopback_host as is_loopback
from livecast.runner import raise_fd_limit
from livecast.settings import ENV, FIELD_OF, ConfigError, Settings, build, with_flags

if TYPE_CHECKING:
    import subprocess

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
    """The banner's store line (a URL settings.py has checked; never its credentials)."""
    if s.redis_url.startswith("unix://"):
        return f"  store     Redis at {urlsplit(s.redis_url).path}"
    if s.redis_url:
        where = urlsplit(s.redis_url.split(",")[0])
        return f"  store     Redis at {where.hostname}:{where.port or 6379}"
    return f"  store     SQLite in {s.data_dir}"


# ``serve --workers``: what the supervisor does when a worker exits (README,
# "Running a cluster").  Exit 2 at a worker's first start is a worker that
# could not start (configuration, store, listen address: ``serve``'s start-up
# errors); the next one would fail the same way, so the supervisor stops
# every worker and exits 2, leaving the restarting to the service manager
# (systemd, Docker), which backs off and logs.  A worker that had started
# once and fails to start again (Redis away for a while) is restarted like a
# crash, the other workers serving meanwhile.  Any other exit is a crash or
# a kill: the worker is started again at once, and if it exits again within
# STABLE_AFTER of its start, after RESTART_BASE seconds, doubling up to
# RESTART_CAP, so that a crash loop never spins.  A worker that ran
# STABLE_AFTER seconds starts its count over.
START_FAILED = 2
STABLE_AFTER = 30.0
RESTART_BASE = 1.0
RESTART_CAP = 60.0


def after_exit(code: int, uptime: float, quick: int,
               first: bool = True) -> tuple[int, float] | None:
    """A worker exited with ``code`` after ``uptime`` seconds, having exited
    within STABLE_AFTER of its start ``quick`` times in a row before
    (``first``: at its first start): None to stop the supervisor, else (that
    count now, seconds to wait before starting the worker again)."""
    if code == START_FAILED and first:
        return None
    quick = quick + 1 if uptime < STABLE_AFTER else 0
    return quick, 0.0 if quick <= 1 else min(RESTART_CAP, RESTART_BASE * 2 ** (quick - 2))


@dataclass
class Slot:
    """One worker's place: its process (None while it waits for its restart)."""

    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    quick: int = 0
    starts: int = 0       # how many times it was started
    due: float = 0.0      # when a waiting worker is started again (monotonic)


def workers(s: Settings, env: Mapping[str, str]) -> int:
    """``serve --workers N``: N processes on one port (SO_REUSEPORT), members
    of one cluster on Redis; restarted when one dies (``after_exit``), stopped on SIGINT/SIGTERM."""
    if not s.redis_url:
        print("livecast: --workers needs LIVECAST_REDIS_URL: worker processes share rooms "
              "through Redis (a cluster); without it, run one process", file=sys.stderr)
        return 2
    import signal
    import subprocess

    slots = {i: Slot() for i in range(1, s.workers + 1)}

    def spawn(i: int) -> None:  # ``env`` holds the flags: no secret on a command line
        slots[i].proc = subprocess.Popen(
            [sys.executable, "-m", "livecast", "serve"],
            env=dict(env, LIVECAST_WORKER=str(i), LIVECAST_WORKERS="1",
                     LIVECAST_HOST=s.host, LIVECAST_PORT=str(s.port)))
        slots[i].started = time.monotonic()
        slots[i].starts += 1

    # The supervisor sleeps until a signal comes: SIGCHLD (a worker exited),
    # SIGINT or SIGTERM each write a byte to the wakeup pipe; no polling.  It
    # wakes by itself only when a worker's restart is due.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    stopping: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: stopping.append(signum))
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
    for i in slots:
        spawn(i)
    log.info("%d workers on %s:%d", s.workers, s.host, s.port)
    code = 0
    while not stopping and not code:
        _sleep_until_woken(wake_r, slots)
        code = _tend(slots, spawn, stopping)
    signal.set_wakeup_fd(-1)
    os.close(wake_r)
    os.close(wake_w)
    _stop_all(slots)
    return code


def _sleep_until_woken(wake_r: int, slots: dict[int, Slot]) -> None:
    import contextlib
    import select

    due = [slot.due for slot in slots.values() if slot.proc is None]
    timeout = max(0.0, min(due) - time.monotonic()) if due else None
    select.select([wake_r], [], [], timeout)
    with contextlib.suppress(BlockingIOError):
        os.read(wake_r, 4096)


def _tend(slots: dict[int, Slot], spawn: Callable[[int], None], stopping: list[int]) -> int:
    """Restart what exited or is due; the supervisor's exit code if it must stop, else 0."""
    now = time.monotonic()
    for i, slot in slots.items():
        if slot.proc is not None and slot.proc.poll() is not None:
            code = slot.proc.returncode
            slot.proc = None
            verdict = after_exit(code, now - slot.started, slot.quick, slot.starts == 1)
            if verdict is None:
                print(f"livecast: worker {i} could not start (exit {code}; its message is "
                      "above): stopping the other workers", file=sys.stderr, flush=True)
                return code
            slot.quick, delay = verdict
            slot.due = now + delay
            log.warning("worker %d exited (%s): restarting it%s", i, code,
                        f" in {delay:.0f} s" if delay else "")
        if slot.proc is None and slot.due <= now and not stopping:
            spawn(i)
    return 0


def _stop_all(slots: dict[int, Slot]) -> None:
    import signal

    for slot in slots.values():
        if slot.proc is not None and slot.proc.poll() is None:
            slot.proc.send_signal(signal.SIGTERM)
    for slot in slots.values():
        if slot.proc is not None:
            slot.proc.wait()


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
        print(f"livecast: the store could not be opened or read ({where}): {exc}", file=sys.stderr)
        return 2
    except (OSError, UnicodeError) as exc:
        if not is_listen_error(exc):
            raise
        print(f"livecast: {listen_failure(s, exc)}", file=sys.stderr)
        return 2
    return 0


# what binding or resolving a listen address fails with (a port taken, an
# address not this host's, a port below 1024 without the right, a bad host)
LISTEN_ERRNOS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES, errno.EINVAL})


def is_listen_error(exc: OSError | UnicodeError) -> bool:
    """A host name that cannot be encoded (IDNA: a UnicodeError, but never a
    decode error, which is data read from somewhere) or resolved, or a bind
    refused."""
    if isinstance(exc, UnicodeDecodeError):
        return False
    return isinstance(exc, socket.gaierror | UnicodeError) or (
        isinstance(exc, OSError) and exc.errno in LISTEN_ERRNOS)


def listen_failure(s: Settings, exc: OSError | UnicodeError) -> str:
    """One line naming the address that could not be listened on and why."""
    name, host, port = _failed_address(s, exc)
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if isinstance(exc, socket.gaierror):
        why = f"unknown host {host!r} ({exc.strerror})"
    elif isinstance(exc, UnicodeError):
        why = f"{host!r} is not a valid host name"
    else:
        why = os.strerror(exc.errno) if exc.errno else str(exc)
    return f"cannot listen on {where} ({name}): {why}"


def _failed_address(s: Settings, exc: OSError | UnicodeError) -> tuple[str, str, int]:
    """Which of the listen addresses ``exc`` is about: the ops listener's
    (LIVECAST_OPS_LISTEN, started first, with the app) or the main one."""
    primary = ("LIVECAST_HOST, LIVECAST_PORT", s.host, s.port)
    where = s.ops_address
    if where is None:
        return primary
    ops = ("LIVECAST_OPS_LISTEN", *where)
    if isinstance(exc, socket.gaierror | UnicodeError):
        return ops if not _resolves(where[0]) else primary
    return ops if f"{where[0]!r}, {where[1]}" in str(exc) else primary


def _resolves(host: str) -> bool:
    try:
        socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "bench":
        from livecast.bench.cli import run

        return run(args)
    if args.command == "counter":
        return counter(args)
    # the variables with every flag given on top: the settings are built from
    # them, and ``--workers`` hands them to its workers as their environment
    env = with_flags(os.environ, args, FIELD_OF)
    try:
        s = build(env)
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
        return workers(s, env)
    return serve(s, likes)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
