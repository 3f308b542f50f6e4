"""Real redis-server processes for tests: one server, and a 3-master Redis Cluster.

Each server runs with ``--save '' --appendonly no`` on a free loopback port and
is killed at teardown. Start-up waits for an answer (PING, then
``cluster_state:ok`` on every master) within a bounded time. A missing
``redis-server`` fails the tests that need it, naming the fix: nothing is
skipped silently.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

START_TIMEOUT = 20.0
CLUSTER_MASTERS = 3


def require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"{binary} is not installed; these tests need a real Redis 7 "
                    "(apt-get install redis-server, as the README's test command does)",
                    pytrace=False)
    return path


def wait_until(condition: Callable[[], bool], what: str, timeout: float = START_TIMEOUT) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(cluster: bool = False) -> int:
    """A free loopback port; for a cluster node, its bus port (+10000) is free too."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if not cluster or (port + 10000 < 65536 and _bindable(port + 10000)):
            return port


@dataclass
class RedisServer:
    port: int
    directory: Path
    extra: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=1.0)

    def start(self) -> None:
        self.process = subprocess.Popen(
            [require("redis-server"), "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--bind", "127.0.0.1", "--dir", str(self.directory),
             *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._answers, f"redis-server on port {self.port}")

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            code = self.process.returncode
            raise RuntimeError(f"redis-server on port {self.port} exited ({code})")
        try:
            with self.client() as c:
                return bool(c.ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def flush(self) -> None:
        with self.client() as c:
            c.flushall()


def start_server(directory: Path, cluster: bool = False, attempts: int = 3) -> RedisServer:
    """A running server on a free port (another port if one is taken meanwhile)."""
    for attempt in range(attempts):
        port = free_port(cluster)
        extra: tuple[str, ...] = ()
        if cluster:
            extra = ("--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                     "--cluster-node-timeout", "5000")
        server = RedisServer(port, directory, extra)
        try:
            server.start()
        except RuntimeError:
            if attempt == attempts - 1:
                raise
            continue
        return server
    raise AssertionError("unreachable")


@dataclass
class RedisCluster:
    masters: list[RedisServer]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{m.port}" for m in self.masters)

    def flush(self) -> None:
        for master in self.masters:
            master.flush()

    def stop(self) -> None:
        for master in self.masters:
            master.stop()


def _cluster_ok(server: RedisServer) -> bool:
    with server.client() as c:
        return c.cluster("INFO").get("cluster_state") == "ok"


def start_cluster(directory: Path) -> RedisCluster:
    cluster = RedisCluster([])
    try:
        for _ in range(CLUSTER_MASTERS):
            cluster.masters.append(start_server(directory, cluster=True))
        subprocess.run(
            [require("redis-cli"), "--cluster", "create",
             *(f"127.0.0.1:{m.port}" for m in cluster.masters),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=START_TIMEOUT)
        for master in cluster.masters:
            wait_until(lambda m=master: _cluster_ok(m), f"cluster_state:ok on {master.port}")
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_server(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    cluster = start_cluster(tmp_path_factory.mktemp("redis-cluster"))
    yield cluster
    cluster.stop()
