"""The locust kit (loadtests/, docs/loadtesting.md) against a real livecast server.

A real ``python -m livecast serve`` runs as a subprocess on a free loopback
port; locust runs headless as another subprocess (locust monkey-patches the
standard library with gevent, which must not happen inside pytest). The
checks read locust's own CSV output: messages of every priority were sent
and delivered, nothing failed, drops were recorded (the room's rate is set
far below the offered load) and none of them was High; the drop percentage
per priority and the counters (seq gaps, reconnects...) are rows of
``PREFIX_stats.csv`` whether zero or not, and ``PREFIX_livecast.csv`` has a
"Drop %" column for all four priorities.

The option helpers are pure and are tested in-process.
"""

from __future__ import annotations

import csv
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOADTESTS = ROOT / "loadtests"
LOCUSTFILE = LOADTESTS / "locustfile.py"
KEY = "loadtest-key-0123456789abcdef0123456789"
ARTIFACTS = ROOT / "artifacts" / "pages"

sys.path.insert(0, str(LOADTESTS))
from livecast_locust import options  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any LIVECAST_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECAST_")}
    env.update(extra)
    return env


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """A livecast server subprocess; yields its http URL once it says it is listening."""
    port = free_port()
    env = clean_env(LIVECAST_HOST="127.0.0.1", LIVECAST_PORT=str(port),
                    LIVECAST_SECRET_KEY=KEY, LIVECAST_LOG_LEVEL="warning")
    proc = subprocess.Popen([sys.executable, "-m", "livecast", "serve"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "listening" in line:
            break
    else:
        proc.wait()
        pytest.fail("the server exited before listening:\n" + "".join(seen))
    drain = threading.Thread(target=proc.stdout.read, daemon=True)  # never let the pipe fill
    drain.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        drain.join(timeout=30)
        proc.stdout.close()


Rows = dict[tuple[str, str], dict[str, str]]


def livecast_csv(prefix: Path) -> dict[str, dict[str, str]]:
    with open(f"{prefix}_livecast.csv", newline="") as f:
        return {r["Priority"]: r for r in csv.DictReader(f)}


def run_locust(url: str, tmp_path: Path, *extra: str, exact: bool = True) -> tuple[Rows, str]:
    """Run the kit for 15 s; returns locust's stats rows by (Type, Name) and its output."""
    prefix = tmp_path / "run"
    args = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
            "-u", "30", "-r", "15", "-t", "15s", "--host", url, "--csv", str(prefix),
            "--room-rate", "4", "--room-burst", "4",
            "--mix", "viewer=20,chatter=4,liker=4,gifter=2",
            "--chat-rate", "0.25", "--like-burst", "8", "--like-every", "2",
            "--gift-rate", "1", "--admin-every", "2", *extra]
    done = subprocess.run(args, env=clean_env(LIVECAST_SECRET_KEY=KEY), cwd=tmp_path,
                          capture_output=True, text=True, timeout=100)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    with open(f"{prefix}_stats.csv", newline="") as f:
        rows = {(r["Type"], r["Name"]): r for r in csv.DictReader(f)}
    with open(f"{prefix}_failures.csv", newline="") as f:
        assert list(csv.DictReader(f)) == [], output
    check_drop_share(rows, livecast_csv(prefix), output, exact)
    return rows, output


COUNTED = ("seq gap", "missed message", "seq disorder", "reconnect", "server close")


def check_drop_share(rows: Rows, kit: dict[str, dict[str, str]], output: str,
                     exact: bool) -> None:
    """Drop % per priority: always a row of locust's CSV (its average is the
    percentage) and a column of the kit's CSV; both agree with the counts.
    ``exact=False`` (workers' reports merged by a master) checks the rows and
    the kit's CSV but not that the two locust rows were merged in step."""
    assert list(kit) == ["High", "Normal", "Low", "Lowest"], kit
    for prio in kit:
        row, send = rows[("WS drop %", prio)], rows.get(("WS send", prio))
        assert ("WS drop", prio) in rows, prio
        # one WS drop % per successful send reply
        sent = int(send["Request Count"]) - int(send["Failure Count"]) if send else 0
        dropped = count(rows, "WS drop", prio)
        share = 100.0 * dropped / sent if sent else 0.0
        assert 0.0 <= float(row["Average Response Time"]) <= 100.0, (prio, row)
        if exact:
            assert int(row["Request Count"]) == sent, (prio, row, send, output)
            assert abs(float(row["Average Response Time"]) - share) < 0.1, (prio, row, share)
        # the kit's file is written a moment later (at locust's quit): its own counts
        k_sent, k_dropped = int(kit[prio]["Sent"]), int(kit[prio]["Dropped"])
        k_share = 100.0 * k_dropped / k_sent if k_sent else 0.0
        assert abs(float(kit[prio]["Drop %"]) - k_share) < 0.1, (prio, kit[prio])
    assert float(kit["Low"]["Drop %"]) > 0 and float(kit["High"]["Drop %"]) == 0, kit
    for name in COUNTED:
        assert ("WS count", name) in rows, (name, output)
        assert rows[("WS count", name)]["Failure Count"] == "0"


def count(rows: Rows, kind: str, name: str) -> int:
    row = rows.get((kind, name))
    return int(row["Request Count"]) if row else 0


def check_run(rows: Rows, output: str) -> None:
    assert rows[("", "Aggregated")]["Failure Count"] == "0", output
    for prio in ("High", "Normal", "Low"):
        assert count(rows, "WS send", prio) > 0, (prio, output)
    assert count(rows, "WS recv", "High") > 0, output
    assert count(rows, "WS recv", "Normal") + count(rows, "WS recv", "Low") > 0, output
    assert count(rows, "WS e2e", "High") > 0, output
    # the room takes 4 messages/s and is offered far more: drops, but no High one
    assert count(rows, "WS drop", "Low") > 0, output
    assert count(rows, "WS drop", "High") == 0, output
    assert count(rows, "REST", "create_group") > 0, output
    assert count(rows, "REST", "set_room_rate") > 0, output
    assert count(rows, "WS join", "member") > 0 and count(rows, "WS join", "guest") > 0, output
    assert "livecast summary" in output, output


def test_headless_run_against_a_real_server(server: str, tmp_path: Path) -> None:
    rows, output = run_locust(server, tmp_path, "--csv-full-history")
    check_run(rows, output)
    # chart.py draws the run from the full history (matplotlib comes with the kit)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    png = ARTIFACTS / "locust-chart.png"
    png.unlink(missing_ok=True)
    done = subprocess.run([sys.executable, str(LOADTESTS / "chart.py"), str(tmp_path / "run"),
                           str(png), "15 s, room rate 4/s"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_distributed_run_master_and_two_workers(server: str, tmp_path: Path) -> None:
    rows, output = run_locust(server, tmp_path, "--processes", "2", exact=False)
    check_run(rows, output)
    assert "2 workers connected" in output, output
    # the workers' own counters reached the master's summary
    tips = re.search(r"^\s*(\d+)\s+tips received", output, re.MULTILINE)
    assert tips is not None and int(tips.group(1)) > 0, output


def test_mix_gives_every_role_a_weight() -> None:
    assert options.parse_mix("viewer=9, chatter=1") == {
        "viewer": 9, "chatter": 1, "liker": 0, "gifter": 0}
    assert options.parse_mix(options.DEFAULT_MIX)["gifter"] == 3
    for bad in ("viewer", "lurker=3", "viewer=-1", "viewer=0", "viewer=x"):
        with pytest.raises(ValueError):
            options.parse_mix(bad)


def test_key_from_option_else_dev_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "dev-key"
    assert options.resolve_key("given", str(key_file)) == "given"
    with pytest.raises(ValueError, match="LIVECAST_SECRET_KEY"):
        options.resolve_key("", str(key_file))
    key_file.write_text("abc123\n")
    assert options.resolve_key("", str(key_file)) == "abc123"


def test_ws_url_follows_the_host() -> None:
    assert options.ws_url_of("http://127.0.0.1:8080", "") == "ws://127.0.0.1:8080/v1/ws"
    assert options.ws_url_of("https://chat.example.com", "") == "wss://chat.example.com/v1/ws"
    assert options.ws_url_of("http://a:1", "ws://b:2/x") == "ws://b:2/x"
    with pytest.raises(ValueError):
        options.ws_url_of("127.0.0.1:8080", "")
