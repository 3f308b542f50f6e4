"""``livecast serve`` and ``livecast usersig`` as an operator runs them."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from livecast.cli import main
from livecast.client import Client, text
from livecast.core.usersig import verify

SDKAPPID = 1400000000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_usersig_command_prints_a_valid_sig(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVECAST_SECRET_KEY", "cli-key")
    assert main(["usersig", "alice", "--expire", "60"]) == 0
    sig = capsys.readouterr().out.strip()
    import time

    assert verify(sig, SDKAPPID, "cli-key", "alice", time.time()) == 0
    assert verify(sig, SDKAPPID, "cli-key", "alice", time.time() + 61) == 70001


def test_bad_config_exits_2_naming_the_variable(capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVECAST_PORT", "not-a-port")
    assert main(["usersig", "alice"]) == 2
    assert "LIVECAST_PORT" in capsys.readouterr().err


def test_every_variable_is_a_serve_flag_of_its_own_name_and_unit(tmp_path: Path) -> None:
    from livecast.cli import parser, settings_from
    from livecast.settings import ENV

    args = parser().parse_args([
        "serve", "--max-wait-ms", "4000,3000,2000,1000", "--outbox-soft-kb", "64",
        "--history-kb", "32", "--sndbuf-kb", "16", "--room-rate", "7",
        "--data-dir", str(tmp_path)])
    s = settings_from(args, {"LIVECAST_SECRET_KEY": "cli-key", "LIVECAST_ROOM_RATE": "9"})
    assert s.max_wait == (4.0, 3.0, 2.0, 1.0) and s.outbox_soft_bytes == 64 * 1024
    assert s.history_bytes == 32 * 1024 and s.sndbuf_bytes == 16 * 1024
    assert s.room_rate == 7  # the flag wins over the variable
    helps = parser().format_help() + next(
        a for a in parser()._subparsers._group_actions  # type: ignore[union-attr]
    ).choices["serve"].format_help()
    for name, _, _ in ENV:
        assert "--" + name.removeprefix("LIVECAST_").lower().replace("_", "-") in helps, name


@dataclass
class Served:
    proc: asyncio.subprocess.Process
    port: int
    banner: list[str]
    key: str

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    port = free_port()
    env = dict(os.environ, LIVECAST_PORT=str(port), LIVECAST_DEV_KEY_FILE=str(tmp_path / "k"),
               LIVECAST_SHUTDOWN_GRACE="3", LIVECAST_DATA_DIR=str(tmp_path / "data"))
    env.pop("LIVECAST_SECRET_KEY", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "livecast", "serve", env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    lines: list[str] = []
    while not any("demo room" in line for line in lines):
        raw = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert raw, "server exited before its banner:\n" + "".join(lines)
        lines.append(raw.decode())
    key = (tmp_path / "k").read_text().strip()
    yield Served(proc, port, lines, key)
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def test_serve_prints_banner_and_answers_health(served: Served) -> None:
    banner = "".join(served.banner)
    assert f"127.0.0.1:{served.port}" in banner and "1400000000" in banner
    assert served.key in banner
    data = next(line for line in served.banner if line.strip().startswith("store"))
    assert "SQLite in" in data and data.split("SQLite in", 1)[1].strip().endswith("data")
    assert (Path(data.split("SQLite in", 1)[1].strip()) / "livecast.db").exists()
    admin_sig = next(line.split()[-1] for line in served.banner if "for administrator" in line)
    import time

    assert verify(admin_sig, SDKAPPID, served.key, "administrator", time.time()) == 0
    async with aiohttp.ClientSession() as http:
        for path in ("/healthz", "/readyz"):
            async with http.get(served.base + path) as resp:
                assert resp.status == 200
        async with http.get(served.base + "/metrics") as resp:
            body = await resp.text()
            assert "livecast_rooms 1.0" in body and "livecast_tick_duration_seconds" in body


async def test_demo_room_works_and_sigterm_closes_members_with_1001(served: Served) -> None:
    demo_sig = next(line.split()[-1] for line in served.banner if "for demo-user" in line)
    async with Client(f"ws://127.0.0.1:{served.port}/v1/ws") as c:
        assert (await c.login(SDKAPPID, "demo-user", demo_sig))["code"] == 0
        assert (await c.join("demo"))["code"] == 0
        assert (await c.send("demo", text("hi")))["msgSeq"] == 1
        served.proc.send_signal(signal.SIGTERM)
        assert await c.wait_closed(10) == 1001
    assert await asyncio.wait_for(served.proc.wait(), 15) == 0


def test_an_unreachable_redis_store_stops_serve_clearly(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVECAST_SECRET_KEY", "k")
    monkeypatch.setenv("LIVECAST_PORT", str(closed_port()))
    monkeypatch.setenv("LIVECAST_REDIS_URL", f"redis://127.0.0.1:{closed_port()}")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "store could not be opened or read" in err and "LIVECAST_REDIS_URL" in err


def test_an_unreadable_stored_room_stops_serve_clearly(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """A room written by a newer livecast, or damaged: one line naming the
    room, exit 2, no traceback."""
    import sqlite3

    from livecast.core.group import Group
    from livecast.core.records import group_record
    from livecast.store.sqlite import SqliteStore

    async def one_room() -> None:
        store = await SqliteStore.open(tmp_path)
        await store.put_group(group_record(Group.create("r1", "admin", 1.0, {"Name": "r"})),
                              create=True)
        await store.close()
    asyncio.run(one_room())
    with sqlite3.connect(tmp_path / "livecast.db") as db:
        db.execute("UPDATE groups SET counters = '{\"likes\": [' WHERE group_id = 'r1'")
    monkeypatch.setenv("LIVECAST_SECRET_KEY", "k")
    monkeypatch.setenv("LIVECAST_PORT", str(closed_port()))
    monkeypatch.setenv("LIVECAST_DATA_DIR", str(tmp_path))
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "'r1'" in err and "unreadable" in err and "Traceback" not in err
    # what the failed start opened was closed, the data directory's lock too
    assert main(["serve"]) == 2
    again = capsys.readouterr().err
    assert "unreadable" in again and "in use by another livecast process" not in again


def test_an_unwritable_data_dir_stops_serve_clearly(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("LIVECAST_SECRET_KEY", "k")
    monkeypatch.setenv("LIVECAST_PORT", str(closed_port()))
    monkeypatch.setenv("LIVECAST_DATA_DIR", str(blocker / "data"))
    assert main(["serve"]) == 2
    assert "LIVECAST_DATA_DIR" in capsys.readouterr().err


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_the_dev_key_is_refused_off_loopback(capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    monkeypatch.delenv("LIVECAST_SECRET_KEY", raising=False)
    monkeypatch.setenv("LIVECAST_DEV_KEY_FILE", str(tmp_path / "k"))
    monkeypatch.setenv("LIVECAST_HOST", "0.0.0.0")
    assert main(["serve"]) == 2
    assert "LIVECAST_SECRET_KEY" in capsys.readouterr().err


def test_a_bad_like_variable_stops_serve_naming_it(capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``livecast serve`` counts likes in-process with the counter's like variables."""
    monkeypatch.setenv("LIVECAST_SECRET_KEY", "cli-key")
    monkeypatch.setenv("LIVECAST_COUNTER_TARGET", "spreadsheet")
    assert main(["serve"]) == 2
    assert "LIVECAST_COUNTER_TARGET" in capsys.readouterr().err


def test_a_short_secret_key_is_refused_off_loopback(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVECAST_SECRET_KEY", "a")
    monkeypatch.setenv("LIVECAST_HOST", "0.0.0.0")
    assert main(["serve"]) == 2
    assert "too short" in capsys.readouterr().err


def test_a_port_in_use_stops_serve_with_one_line_naming_it(tmp_path: Path) -> None:
    """A real socket holds the port: ``livecast serve`` says which address and
    why in one line, and exits 2 as its other start-up errors do."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECAST_")}
        env.update(LIVECAST_SECRET_KEY="k" * 32, LIVECAST_PORT=str(port),
                   LIVECAST_DATA_DIR=str(tmp_path / "data"), LIVECAST_LOG_LEVEL="warning")
        done = subprocess.run([sys.executable, "-m", "livecast", "serve"], env=env,
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        f"livecast: cannot listen on 127.0.0.1:{port} (LIVECAST_HOST, LIVECAST_PORT): "
        "Address already in use"]


def test_an_ops_address_in_use_stops_serve_naming_it(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        monkeypatch.setenv("LIVECAST_SECRET_KEY", "k" * 32)
        monkeypatch.setenv("LIVECAST_PORT", str(closed_port()))
        monkeypatch.setenv("LIVECAST_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.setenv("LIVECAST_OPS_LISTEN", f"127.0.0.1:{port}")
        assert main(["serve"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"livecast: cannot listen on 127.0.0.1:{port} (LIVECAST_OPS_LISTEN): "
                   "Address already in use")


@pytest.mark.parametrize("host", ["no-such-host.invalid", "a..b"])
def test_an_unknown_host_stops_serve_naming_it(
        host: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """``.invalid`` never resolves (RFC 6761); ``a..b`` is not a host name."""
    port = closed_port()
    monkeypatch.setenv("LIVECAST_SECRET_KEY", "k" * 32)
    monkeypatch.setenv("LIVECAST_HOST", host)
    monkeypatch.setenv("LIVECAST_PORT", str(port))
    monkeypatch.setenv("LIVECAST_DATA_DIR", str(tmp_path / "data"))
    assert main(["serve"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"livecast: cannot listen on {host}:{port} (LIVECAST_HOST, "
                          f"LIVECAST_PORT): ") and "\n" not in err and repr(host) in err


def test_the_banner_names_a_unix_socket_store() -> None:
    from livecast.cli import store_line
    from livecast.settings import Settings

    line = store_line(Settings(redis_url="unix:///run/redis/redis.sock"))
    assert line.split() == ["store", "Redis", "at", "/run/redis/redis.sock"]
