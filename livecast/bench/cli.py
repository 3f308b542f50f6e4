"""``livecast bench``: flags, the rounds (A B A B with ``--baseline``), the report.

Progress lines go to stderr, once a second; stdout gets the results table
and, last, one JSON line (``report.json_line``).  Exit status: 0 when every
round ran, 1 when a round could not run (server did not start, members
could not join in time), 2 for bad flags, 130 when interrupted (the servers
it started are stopped first).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from livecast.runner import raise_fd_limit

if TYPE_CHECKING:  # the heavy modules load only when the bench runs
    from livecast.bench.report import Round
    from livecast.bench.run import Access, Workload
    from livecast.bench.server import ServerProc

DEFAULT_SDKAPPID = 1400000000

# The shape flags' defaults, and the named shapes (``--preset``) that replace
# them: a flag given on the command line always wins over its preset value.
SHAPE_DEFAULTS: dict[str, float | int | bool] = {
    "members": 1000, "rooms": 1, "rate": 40.0, "duration": 20.0, "baseline": False}
PRESETS: dict[str, dict[str, float | int | bool]] = {
    # one big room: ~4 messages share each 100 ms frame (docs/benchmarks.md)
    "big-room": {"members": 5000, "rooms": 1, "rate": 40.0, "duration": 20.0,
                 "baseline": True},
    # many small rooms (10 members and 2 senders each): every message its own frame
    "small-rooms": {"members": 5000, "rooms": 500, "rate": 5.0, "duration": 15.0,
                    "baseline": True},
    # rooms of 5 members and 2 senders (7 connections): the per-message cost at its largest share
    "tiny-rooms": {"members": 10000, "rooms": 2000, "rate": 5.0, "duration": 15.0,
                   "baseline": True},
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    a("--preset", choices=sorted(PRESETS),
      help="a named workload: big-room (5,000 members in one room, 40 msg/s, 20 s), "
           "small-rooms (5,000 members in 500 rooms, 5 msg/s each, 15 s), tiny-rooms "
           "(10,000 in 2,000 rooms, 5 msg/s each, 15 s); each with --baseline; flags given "
           "as well override it")
    a("--members", type=int, help="member connections (default 1000)")
    a("--rooms", type=int, help="rooms; member i joins room i %% rooms (default 1)")
    a("--rate", type=float, help="messages per second per room (default 40)")
    a("--duration", type=float, help="seconds of publishing (default 20)")
    a("--drain-max", type=float, default=0.0,
      help="longest wait for a saturated server's backlog after publishing (default: --duration)")
    a("--mix", default="1:6:2:1", help="priority weights High:Normal:Low:Lowest (default 1:6:2:1)")
    a("--senders", type=int, default=2, help="sender connections per room (default 2)")
    a("--size", type=int, default=64, help="text bytes per message (default 64)")
    a("--tick-ms", type=int, default=100, help="dispatch tick of both servers (default 100)")
    a("--procs", type=int, default=0, help="client processes (default: one per 10,000 members)")
    a("--per-source", type=int, default=25000,
      help="above this many members, member i binds to 127.0.0.(2 + i // this)")
    a("--sample", type=float, default=0.02, help="share of members that sample latency")
    a("--concurrency", type=int, default=100, help="connects in flight (default 100)")
    a("--guests", action="store_true", help="members join without login (receive-only)")
    a("--baseline", action="store_true", default=None,
      help="interleave rounds of the raw writer server")
    a("--floor", action="store_true",
      help="with --baseline, also rounds of the raw writer with the steps livecast's contract "
           "asks of each message (the least a Python implementation of it does)")
    a("--peers", default="", metavar="NAME,...",
      help="also run peer servers from loadtests/peers/: socketio-node, socketio-py")
    a("--rounds", type=int, default=0,
      help="rounds per server (default: 2 with --baseline, else 1)")
    a("--url", help="bench a running server (ws://host:port/v1/ws) instead of starting one")
    a("--pid", help="the running server's process id (with --url); PID,PID,...: the CPU of "
                    "all of them is the server's (workers, their redis-server)")
    a("--secret-key", help="the server's LIVECAST_SECRET_KEY (default: $LIVECAST_SECRET_KEY, "
                           "or a fresh one for a server the bench starts)")
    a("--sdkappid", type=int, default=DEFAULT_SDKAPPID)
    a("--admin", default="administrator", help="app admin identifier for create_group")
    a("--server-env", action="append", default=[], metavar="NAME=VALUE",
      help="extra environment for the livecast server the bench starts (repeatable)")


def apply_preset(args: argparse.Namespace) -> None:
    """Fill the shape flags not given: from ``--preset``, else their defaults."""
    preset = PRESETS[args.preset] if args.preset else {}
    for name, default in SHAPE_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, preset.get(name, default))


def parse_mix(text: str) -> tuple[int, int, int, int]:
    parts = [int(x) for x in text.split(":")]
    if len(parts) != 4 or any(x < 0 for x in parts) or not any(parts):
        raise ValueError("--mix takes four non-negative weights High:Normal:Low:Lowest")
    return parts[0], parts[1], parts[2], parts[3]


def parse_peers(text: str) -> list[str]:
    from livecast.bench.server import PEERS, peer_command

    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        if name not in PEERS:
            raise ValueError(f"--peers: unknown peer {name!r} (known: {', '.join(PEERS)})")
        peer_command(name, 0)
    return names


def _config(args: argparse.Namespace,
            env: dict[str, str]) -> tuple[Workload, Access, ServerProc | None]:
    """(Workload, Access, external server or None); ValueError names the bad flag."""
    from livecast.bench.run import Access, Workload, auto_procs
    from livecast.bench.server import ServerProc

    if args.members < 1 or args.rooms < 1 or args.senders < 1 or args.rate <= 0:
        raise ValueError("--members, --rooms, --senders and --rate must be positive")
    if not 0 < args.sample <= 1:
        raise ValueError("--sample must be in (0, 1]")
    key = args.secret_key or env.get("LIVECAST_SECRET_KEY", "")
    external = None
    if args.url:
        u = urlsplit(args.url)
        if args.pid is None or u.hostname is None or u.port is None:
            raise ValueError("--url needs host and port (ws://host:port/v1/ws) and --pid")
        if not key:
            raise ValueError("--url needs --secret-key or $LIVECAST_SECRET_KEY")
        pids = parse_pids(args.pid)
        external = ServerProc("external", u.hostname, u.port, pids[0], u.path or "/v1/ws",
                              also=pids[1:])
    if any("=" not in kv for kv in args.server_env):
        raise ValueError("--server-env takes NAME=VALUE")
    extra = tuple((kv.split("=", 1)[0], kv.split("=", 1)[1]) for kv in args.server_env)
    w = Workload(args.members, args.rooms, args.senders, args.rate, args.duration,
                 parse_mix(args.mix), args.size, args.tick_ms,
                 args.procs or auto_procs(args.members), args.per_source,
                 max(1, round(1 / args.sample)), max(1, args.concurrency), args.guests,
                 drain_max=args.drain_max)
    return w, Access(args.sdkappid, key or secrets.token_hex(16), args.admin, extra), external


def parse_pids(text: str) -> tuple[int, ...]:
    """``--pid``: one process id, or several separated by commas."""
    try:
        pids = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise ValueError(f"--pid takes PID or PID,PID,...: {text!r}") from None
    if any(p <= 0 for p in pids):
        raise ValueError(f"--pid takes positive process ids: {text!r}")
    return pids


def run(args: argparse.Namespace) -> int:
    """The ``livecast bench`` command."""
    from livecast.bench.report import json_line, table

    apply_preset(args)
    try:
        w, acc, external = _config(args, dict(os.environ))
        peers = parse_peers(args.peers)
    except ValueError as exc:
        print(f"livecast bench: {exc}", file=sys.stderr)
        return 2
    first = "external" if external is not None else "livecast"
    rounds = args.rounds or (2 if args.baseline else 1)
    floor = ["floor"] if args.floor and args.baseline else []
    kinds = [first, *(["baseline"] if args.baseline else []), *floor, *peers] * rounds
    raise_fd_limit()
    import uvloop

    uvloop.install()
    try:
        results = asyncio.run(_rounds(w, acc, kinds, external))
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"livecast bench: {exc!r}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("livecast bench: interrupted", file=sys.stderr)
        return 130
    print(table(results), flush=True)
    config = {"members": w.members, "rooms": w.rooms, "senders": w.senders, "rate": w.rate,
              "duration": w.duration, "mix": list(w.mix), "size": w.size,
              "tick_ms": w.tick_ms, "procs": w.procs, "guests": w.guests,
              "preset": args.preset or ""}
    print(json_line(config, results), flush=True)
    return 0


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def _rounds(w: Workload, acc: Access, kinds: list[str],
                  external: ServerProc | None) -> list[Round]:
    from livecast.bench import server as srv
    from livecast.bench.run import run_round

    done: list[Round] = []
    for kind in kinds:
        index = sum(1 for r in done if r.target == ("livecast" if kind == "external" else kind))
        server = external if external is not None and kind == "external" \
            else await _start(kind, w, acc)
        say(f"[{kind}#{index + 1}] server pid {server.pid} on {server.host}:{server.port}")
        try:
            done.append(await run_round(server, w, acc, index + 1, say))
        finally:
            if server is not external:
                await srv.stop(server)
    return done


async def _start(kind: str, w: Workload, acc: Access) -> ServerProc:
    from livecast.bench import server as srv

    port = srv.free_port()
    if kind in srv.PEERS:
        argv, env = srv.peer_command(kind, port)
        return await srv.start(kind, argv, env, port, dialect="socketio")
    if kind in ("baseline", "floor"):
        argv, env = srv.baseline_command(port, w.tick_ms, steps=kind == "floor")
    else:
        argv, env = srv.livecast_command(port, acc.key, acc.sdkappid, w.tick_ms,
                                         dict(acc.server_env))
    return await srv.start(kind, argv, env, port)
