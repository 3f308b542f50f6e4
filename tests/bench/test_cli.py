"""``livecast bench --url ... --pid PID,PID,...``: the server's CPU is the sum
over every listed process (workers, their redis-server), read from /proc."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from livecast.bench.cli import add_arguments, apply_preset, parse_pids
from livecast.bench.server import ServerProc, cpu_seconds

BURN = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n" \
       "import sys; sys.stdout.write('done\\n'); sys.stdout.flush(); sys.stdin.read()"


def test_pid_lists_parse_and_bad_ones_are_named() -> None:
    assert parse_pids("42") == (42,)
    assert parse_pids("1,2,3") == (1, 2, 3)
    for bad in ("", "1,,2", "x", "1,-2", "0"):
        with pytest.raises(ValueError, match="--pid"):
            parse_pids(bad)


def test_a_servers_cpu_sums_its_processes() -> None:
    procs = [subprocess.Popen([sys.executable, "-c", BURN], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        for p in procs:  # each has burnt its 0.3 s of CPU and now waits on stdin
            assert p.stdout is not None and p.stdout.readline() == "done\n"
        one, two = (cpu_seconds(p.pid) for p in procs)
        assert one >= 0.3 and two >= 0.3
        server = ServerProc("external", "127.0.0.1", 1, procs[0].pid, also=(procs[1].pid,))
        assert server.cpu_seconds() == pytest.approx(one + two, abs=0.02)
        assert ServerProc("external", "127.0.0.1", 1, procs[0].pid).cpu_seconds() == one
    finally:
        for p in procs:
            p.kill()
            p.communicate()  # reaped, its pipes closed


def test_the_command_refuses_a_bad_pid_list() -> None:
    out = subprocess.run([sys.executable, "-m", "livecast", "bench", "--url",
                          "ws://127.0.0.1:9/v1/ws", "--pid", "12,abc", "--secret-key", "k"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "--pid takes PID or PID,PID,...: '12,abc'" in out.stderr


def _parsed(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(argv)
    apply_preset(args)
    return args


def test_presets_name_the_two_shapes_and_flags_given_override_them() -> None:
    small = _parsed("--preset", "small-rooms")
    assert (small.members, small.rooms, small.rate, small.duration, small.baseline) == (
        5000, 500, 5.0, 15.0, True)
    big = _parsed("--preset", "big-room")
    assert (big.members, big.rooms, big.rate, big.duration, big.baseline) == (
        5000, 1, 40.0, 20.0, True)
    tiny = _parsed("--preset", "tiny-rooms")
    assert (tiny.members, tiny.rooms, tiny.rate) == (10000, 2000, 5.0)
    mine = _parsed("--preset", "small-rooms", "--members", "1000", "--duration", "5")
    assert (mine.members, mine.rooms, mine.rate, mine.duration) == (1000, 500, 5.0, 5.0)
    plain = _parsed()
    assert (plain.members, plain.rooms, plain.rate, plain.duration, plain.baseline) == (
        1000, 1, 40.0, 20.0, False)


def test_an_unknown_preset_is_refused_with_the_known_ones() -> None:
    out = subprocess.run([sys.executable, "-m", "livecast", "bench", "--preset", "huge"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "invalid choice: 'huge'" in out.stderr
    assert "big-room" in out.stderr and "small-rooms" in out.stderr
