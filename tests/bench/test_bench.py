"""``livecast bench`` on tiny numbers: exact counts, no gaps, a JSON line that parses.

The functional test runs the command as an operator does (a subprocess that
starts livecast and the raw baseline itself) and checks counts, never
timings.  The frame-scanning tests feed a member connection byte streams cut
at arbitrary points, as TCP may deliver them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
from collections.abc import Iterator

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from livecast.bench.dialects import DIALECTS
from livecast.bench.member import Member, Tally
from livecast.bench.report import Round, summary
from livecast.bench.wire import client_frame, read_frame, seq_span, stamps
from livecast.core.wsframe import frame, unmask


def msgs_frame(seqs: list[int], stamp: float = 1000.0, socketio: bool = False) -> bytes:
    wires = [{"seq": s, "time": 1, "from": "s", "nick": "", "avatar": "", "priority": "Normal",
              "random": 0, "msgBody": [{"MsgType": "TIMTextElem",
                                        "MsgContent": {"Text": '"seq":9 x'}}],
              "cloudCustomData": f"{stamp + s:.6f}"} for s in seqs]
    push = {"op": "msgs", "groupId": "g", "msgs": wires}
    return frame(b"42" + orjson.dumps(["msgs", push]) if socketio else orjson.dumps(push))


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


def member(loop: asyncio.AbstractEventLoop, sample: bool = False,
           dialect: str = "livecast") -> Member:
    m = Member(Tally(), DIALECTS[dialect], b"", b"", 0, sample, loop.create_future())
    m.handshaking = False
    return m


def test_seq_span_counts_messages_not_escaped_text() -> None:
    data = msgs_frame([4, 5, 6])
    op, start, end, mask = read_frame(data, 0) or (0, 0, 0, b"")
    assert (op, mask) == (1, b"")
    assert seq_span(data, start, end) == (3, 4, 6)
    assert stamps(data, start, end) == [1004.0, 1005.0, 1006.0]


def test_client_frames_are_masked_with_the_zero_key() -> None:
    payload = b'{"op":"ping","id":1}' * 10
    parsed = read_frame(client_frame(payload), 0)
    assert parsed is not None
    _op, start, end, mask = parsed
    assert mask == b"\0\0\0\0"
    assert unmask(mask, client_frame(payload)[start:end]) == payload


@given(batches=st.lists(st.integers(1, 5), min_size=1, max_size=12),
       cuts=st.lists(st.integers(0, 4000), max_size=8))
def test_member_counts_a_stream_cut_anywhere(batches: list[int], cuts: list[int]) -> None:
    stream, seqs, seq = b"", [], 0
    for n in batches:
        seqs = list(range(seq + 1, seq + n + 1))
        stream += msgs_frame(seqs)
        seq += n
    lp = asyncio.new_event_loop()
    try:
        m = member(lp, sample=True)
        points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
        for a, b in itertools.pairwise(points):
            m.data_received(stream[a:b])
    finally:
        lp.close()
    assert (m.tally.deliveries, m.tally.frames, m.tally.gaps, m.tally.disorder) == (
        seq, len(batches), 0, 0)
    assert len(m.tally.latencies) == seq
    assert m.tail_gap(seq) == 0


def test_member_counts_gaps_between_within_and_after_frames(
        loop: asyncio.AbstractEventLoop) -> None:
    m = member(loop)
    m.data_received(msgs_frame([1, 2]) + msgs_frame([5, 7]) + msgs_frame([7]))
    assert m.tally.deliveries == 5
    assert m.tally.gaps == 2 + 1     # 3 and 4 between frames, 6 within
    assert m.tally.disorder == 1     # 7 twice
    assert m.tail_gap(10) == 3


def test_socketio_member_counts_events_and_resolves_on_the_join_ack(
        loop: asyncio.AbstractEventLoop) -> None:
    m = member(loop, sample=True, dialect="socketio")
    m.data_received(frame(b'0{"sid":"x"}') + frame(b'40{"sid":"y"}') + frame(b"2")
                    + frame(b'432[{"code":0,"info":""}]'))
    assert m.ready.done() and m.ready.result() == 0
    m.data_received(msgs_frame([1], socketio=True) + msgs_frame([2], socketio=True)
                    + msgs_frame([4], socketio=True))
    assert (m.tally.deliveries, m.tally.frames, m.tally.gaps) == (3, 3, 1)
    assert m.tally.latencies and len(m.tally.latencies) == 3


def test_summary_gives_the_multiple_of_the_baseline() -> None:
    def r(target: str, cpu: float) -> Round:
        return Round(target, 1, 10, 2, 1, 40.0, 1.0, received=1000, expected=1000, cpu_s=cpu)

    s = summary([r("livecast", 0.3), r("baseline", 0.2), r("livecast", 0.5), r("baseline", 0.2)])
    assert s["multiple"] == 2.0
    assert s["livecast"]["all_delivered"] is True
    assert "floor_multiple" not in s


def test_summary_gives_the_floors_multiple_and_keeps_it_out_of_the_peers() -> None:
    def r(target: str, cpu: float) -> Round:
        return Round(target, 1, 10, 2, 1, 40.0, 1.0, received=1000, expected=1000, cpu_s=cpu)

    s = summary([r("livecast", 0.4), r("baseline", 0.2), r("floor", 0.25), r("socketio-node", 0.8)])
    assert (s["multiple"], s["floor_multiple"]) == (2.0, 1.25)
    assert s["livecast_vs"] == {"socketio-node": 2.0}


def test_bench_command_counts_every_delivery_for_both_servers() -> None:
    cmd = [sys.executable, "-m", "livecast", "bench", "--members", "50", "--rooms", "2",
           "--duration", "3", "--procs", "2", "--baseline", "--rounds", "1",
           "--mix", "1:1:1:1"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=100, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    report = json.loads(lines[-1])
    assert "livecast#1" in done.stdout and "baseline#1" in done.stdout
    assert [r["target"] for r in report["rounds"]] == ["livecast", "baseline"]
    for r in report["rounds"]:
        assert r["members"] == 50 and r["failed"] == {}
        assert r["members_by_room"] == [25 + 2, 25 + 2]
        assert r["sent"] == 3 * 40 * 2
        assert r["unanswered"] == 0 and r["errors"] == {}
        assert r["delivered"] + sum(r["drops"].values()) + sum(r["other_drops"].values()) \
            == r["sent"]
        assert r["expected"] == sum(d * m for d, m in zip(r["delivered_by_room"],
                                                          r["members_by_room"], strict=True))
        assert r["received"] == r["expected"] > 0
        assert r["gaps"] == 0 and r["disorder"] == 0
        assert r["latency_ms"]["samples"] > 0
    assert report["summary"]["multiple"] > 0


def test_a_preset_runs_its_shape_with_the_baseline_and_names_itself() -> None:
    """``--preset small-rooms`` with fewer members and rooms (flags given win):
    its rate (5 msg/s per room) and its baseline rounds come from the preset;
    ``--floor`` adds rounds of the raw writer with the contract's steps."""
    cmd = [sys.executable, "-m", "livecast", "bench", "--preset", "small-rooms",
           "--members", "40", "--rooms", "8", "--duration", "2", "--rounds", "1", "--floor"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=100, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    config = report["config"]
    assert config["preset"] == "small-rooms"
    assert (config["members"], config["rooms"], config["rate"]) == (40, 8, 5.0)
    assert [r["target"] for r in report["rounds"]] == ["livecast", "baseline", "floor"]
    assert report["summary"]["floor_multiple"] > 0
    for r in report["rounds"]:
        assert r["members_by_room"] == [5 + 2] * 8
        assert r["sent"] == 2 * 5 * 8
        assert r["received"] == r["expected"] > 0 and r["gaps"] == 0
