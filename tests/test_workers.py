"""``livecast serve --workers N``: N processes on one port (SO_REUSEPORT), one
cluster on Redis; members on any worker share one room."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import psutil
import pytest

from livecast.cli import RESTART_CAP, STABLE_AFTER, after_exit, main
from livecast.client import Client, text
from tests.redis_fixtures import RedisServer, free_port
from tests.test_restart import KEY, Server, until


def test_workers_need_a_redis_url(capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVECAST_SECRET_KEY", "k")
    monkeypatch.delenv("LIVECAST_REDIS_URL", raising=False)
    assert main(["serve", "--workers", "2"]) == 2
    assert "LIVECAST_REDIS_URL" in capsys.readouterr().err


def _two_workers(redis: RedisServer) -> Server:
    """``livecast serve --workers 2`` on ``redis``, on a free port (not started)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECAST_")}
    port = free_port()
    env.update(LIVECAST_SECRET_KEY=KEY, LIVECAST_REDIS_URL=redis.url, LIVECAST_PORT=str(port),
               LIVECAST_SHUTDOWN_GRACE="1", LIVECAST_WORKERS="2")
    return Server(env, port)


async def test_two_workers_share_a_port_and_a_room(redis: RedisServer) -> None:
    s = _two_workers(redis)
    await s.start()
    clients: list[Client] = []
    try:
        assert s.proc is not None
        await until(lambda: _children(s.proc.pid, 2), "two worker processes")
        await s.ok("group_open_http_svc", "create_group",
                   {"Type": "AVChatRoom", "GroupId": "w", "Name": "workers"})
        for i in range(8):  # the kernel spreads the connections over the workers
            c, code = await s.client(f"u{i}")
            assert code == 0
            await until(lambda c=c: _joined(c), f"u{i} joined")
            clients.append(c)
        r = await clients[0].send("w", text("to all"))
        assert r["code"] == 0, r
        for c in clients:
            push = await asyncio.wait_for(c.next_push("msgs"), 10)
            assert push["msgs"][0]["seq"] == r["msgSeq"]
        await until(lambda: _online(s, 8), "online summed over the workers")
    finally:
        for c in clients:
            await c.close()
        if s.proc is not None:
            await s.stop(signal.SIGTERM)


async def test_a_worker_killed_is_replaced_and_serves(redis: RedisServer) -> None:
    """``kill -9`` of a worker: the supervisor (which sleeps until a signal
    comes, never polls) starts another in its place, and the port serves."""
    s = _two_workers(redis)
    await s.start()
    assert s.proc is not None
    supervisor = psutil.Process(s.proc.pid)
    try:
        # both listening first: a worker killed while the other still starts
        # would leave the port with no listener until one is up
        await until(lambda: _listening(supervisor, s.port, 2), "two workers listening")
        first = {p.pid for p in supervisor.children()}
        victim = psutil.Process(min(first))
        victim.kill()
        victim.wait(10)

        async def replaced() -> bool:
            now = {p.pid for p in supervisor.children() if p.status() != psutil.STATUS_ZOMBIE}
            return len(now) == 2 and now != first and await _listening(supervisor, s.port, 2)

        await until(replaced, "a new worker listening in the killed one's place")
        for i in range(4):  # whichever worker the kernel picks answers
            c, code = await s.client(f"r{i}")
            assert code == 0
            await c.close()
    finally:
        if s.proc is not None:
            await s.stop(signal.SIGTERM)


async def _children(pid: int, n: int) -> bool:
    return len(psutil.Process(pid).children()) == n


async def _listening(supervisor: psutil.Process, port: int, n: int) -> bool:
    """``n`` live workers, each with its own socket listening on ``port``."""
    count = 0
    for child in supervisor.children():
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
            count += any(c.status == psutil.CONN_LISTEN and c.laddr.port == port
                         for c in child.net_connections(kind="tcp"))
        except psutil.NoSuchProcess:
            continue
    return count == n


async def _joined(c: Client) -> bool:
    return bool((await c.join("w"))["code"] == 0)


async def _online(s: Server, n: int) -> bool:
    r = await s.ok("group_open_http_svc", "get_online_member_num", {"GroupId": "w"})
    return bool(r["OnlineMemberNum"] == n)


@pytest.mark.parametrize("gone", ["killed", "frozen"])
async def test_sigterm_with_redis_gone_stops_every_worker(redis: RedisServer, gone: str) -> None:
    """Redis killed (refusing connections) or frozen (SIGSTOP: a partition, every
    call waits for its timeout) under a running cluster owning many rooms, then
    SIGTERM to the supervisor: every worker exits by itself within the drain
    bound (not one command timeout per room), none is left behind."""
    s = _two_workers(redis)
    await s.start()
    assert s.proc is not None
    supervisor = psutil.Process(s.proc.pid)
    clients: list[Client] = []
    try:
        await until(lambda: _children(s.proc.pid, 2), "two worker processes")
        workers = supervisor.children()
        for i in range(24):  # rooms with leases, members on both workers
            await s.ok("group_open_http_svc", "create_group",
                       {"Type": "AVChatRoom", "GroupId": f"w{i}", "Name": "workers"})
        for i in range(6):
            c, code = await s.client(f"u{i}")
            assert code == 0
            assert (await c.join(f"w{i}"))["code"] == 0
            clients.append(c)
        assert redis.process is not None
        if gone == "killed":
            redis.stop()  # kill -9
        else:
            redis.process.send_signal(signal.SIGSTOP)
        s.proc.send_signal(signal.SIGTERM)
        # the drain bound: shutdown grace (1 s) + giving leases up (2 s at most)
        # + closing; one 2 s command timeout per room would be 48 s
        await asyncio.wait_for(s.proc.wait(), 30)
        _gone, alive = psutil.wait_procs(workers, timeout=5)
        assert alive == [], f"workers left running: {alive}"
    finally:
        if redis.process is not None:
            redis.process.send_signal(signal.SIGCONT)
        for c in clients:
            await c.close()
        if s.proc is not None and s.proc.returncode is None:
            for child in supervisor.children():
                child.kill()
            s.proc.kill()


def _bare_env(tmp_path: Path) -> dict[str, str]:
    """No LIVECAST_* but where a worker left to itself would keep its key and
    rooms (in ``tmp_path``, not the home directory)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECAST_")}
    env.update(LIVECAST_DEV_KEY_FILE=str(tmp_path / "dev-key"),
               LIVECAST_DATA_DIR=str(tmp_path / "sqlite"))
    return env


async def test_flags_given_to_the_supervisor_reach_every_worker(
        redis: RedisServer, tmp_path: Path) -> None:
    """``--redis-url``, ``--secret-key`` and the rest given as flags only: every
    worker runs on that Redis with that key (the key in its environment, not on
    its command line)."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "livecast", "serve", "--workers", "2", "--port", str(port),
        "--redis-url", redis.url, "--secret-key", KEY, "--shutdown-grace", "1",
        env=_bare_env(tmp_path))
    s = Server({}, port, proc)
    supervisor = psutil.Process(proc.pid)
    clients: list[Client] = []
    try:
        await until(lambda: _listening(supervisor, port, 2), "two workers listening")
        for child in supervisor.children():
            assert KEY not in " ".join(child.cmdline())
        await s.ok("group_open_http_svc", "create_group",  # an admin sig made with KEY
                   {"Type": "AVChatRoom", "GroupId": "w", "Name": "workers"})
        with redis.client() as r:
            assert r.keys("lc:*"), "the room was not kept in the flag's Redis"
        for i in range(8):  # on either worker: logged in with KEY, in the room kept in Redis
            c, code = await s.client(f"f{i}")
            clients.append(c)
            assert code == 0
            assert (await c.join("w"))["code"] == 0
        assert not (tmp_path / "dev-key").exists()
    finally:
        for c in clients:
            await c.close()
        await s.stop(signal.SIGTERM)


async def test_a_worker_that_cannot_start_stops_the_supervisor(
        redis: RedisServer, tmp_path: Path) -> None:
    """The port held by a socket without SO_REUSEPORT: each worker exits 2
    with one line naming the address; the supervisor does not restart them
    forever, it stops the others and exits 2 itself, saying why."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        env = dict(_bare_env(tmp_path), LIVECAST_SECRET_KEY=KEY, LIVECAST_REDIS_URL=redis.url,
                   LIVECAST_PORT=str(port), LIVECAST_WORKERS="2", LIVECAST_LOG_LEVEL="warning")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "livecast", "serve", env=env, stderr=subprocess.PIPE)
        try:
            _, err = await asyncio.wait_for(proc.communicate(), 60)
        finally:
            if proc.returncode is None:  # frozen first: it starts no worker meanwhile
                supervisor = psutil.Process(proc.pid)
                supervisor.suspend()
                for child in supervisor.children():
                    child.kill()
                proc.kill()
                await proc.wait()
    text_ = err.decode()
    assert proc.returncode == 2, text_
    assert "Traceback" not in text_
    assert f"cannot listen on 127.0.0.1:{port}" in text_
    assert "could not start (exit 2" in text_ and "stopping the other workers" in text_


def test_a_worker_is_restarted_at_once_then_with_a_bounded_backoff() -> None:
    """``after_exit``, the supervisor's decision: exit 2 at a first start
    (could not start) stops it, at a restart (Redis away meanwhile) it is a
    crash; a crash restarts at once, a crash loop waits 1, 2, 4 ... s up to
    RESTART_CAP; a worker that ran STABLE_AFTER s starts its count over."""
    assert after_exit(2, 0.1, 0) is None and after_exit(2, 3600, 5) is None
    assert after_exit(2, 0.1, 0, first=False) == (1, 0.0)
    assert after_exit(2, 0.1, 1, first=False) == (2, 1.0)
    quick, delays = 0, []
    for _ in range(12):
        verdict = after_exit(1, 0.5, quick)
        assert verdict is not None
        quick, delay = verdict
        delays.append(delay)
    assert delays[:6] == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0]
    assert max(delays) == RESTART_CAP == delays[-1]
    assert after_exit(-9, STABLE_AFTER, quick) == (0, 0.0)  # killed after a good run
    assert after_exit(-9, STABLE_AFTER + 1, 0) == (0, 0.0)


def _two_free_ports(avoid: int) -> int:
    """A free port P whose next, P + 1, is free too (neither ``avoid``)."""
    for _ in range(100):
        port = free_port()
        if avoid in (port, port + 1):
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two free ports side by side")


async def _one_listener_each(supervisor: psutil.Process, ports: list[int]) -> bool:
    """Each of ``ports`` is listened on by exactly one worker, a worker of its own."""
    owners: dict[int, list[int]] = {p: [] for p in ports}
    for child in supervisor.children():
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
            for c in child.net_connections(kind="tcp"):
                if c.status == psutil.CONN_LISTEN and c.laddr.port in owners:
                    owners[c.laddr.port].append(child.pid)
        except psutil.NoSuchProcess:
            continue
    pids = [found[0] for found in owners.values() if len(found) == 1]
    return len(pids) == len(ports) and len(set(pids)) == len(ports)


async def test_each_worker_serves_the_ops_endpoints_on_a_port_of_its_own(
        redis: RedisServer) -> None:
    """LIVECAST_OPS_LISTEN=host:P with --workers 2: worker 1 on P, worker 2 on
    P + 1, so that a scrape of /metrics always reads the same worker."""
    s = _two_workers(redis)
    ops = _two_free_ports(s.port)
    s.env["LIVECAST_OPS_LISTEN"] = f"127.0.0.1:{ops}"
    await s.start()
    assert s.proc is not None
    supervisor = psutil.Process(s.proc.pid)
    try:
        await until(lambda: _one_listener_each(supervisor, [ops, ops + 1]),
                    "one worker on each ops port")
        async with aiohttp.ClientSession() as http:
            for port in (ops, ops + 1):
                async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                    assert resp.status == 200
                    assert "livecast_connections" in await resp.text()
    finally:
        await s.stop(signal.SIGTERM)
