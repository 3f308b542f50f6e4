"""The chart's pure part: bench result lines to series, medians, table.

Lines are made by the bench's own ``report.json_line`` so the parser reads
what ``livecast bench`` prints.  Nothing here needs matplotlib: ``draw`` is
the only function that imports it, and no test calls it.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from livecast.bench.chart import main, multiples, parse_lines, series, table
from livecast.bench.report import Round, json_line


def rnd(target: str, index: int, members: int, cpu_s: float, received: int,
        expected: int | None = None, p99: float = 120.0, gaps: int = 0,
        unanswered: int = 0) -> Round:
    r = Round(target, index, members, 2, 1, 40.0, 20.0)
    r.cpu_s, r.received, r.gaps, r.unanswered = cpu_s, received, gaps, unanswered
    r.expected = received if expected is None else expected
    r.members_by_room = [members + 2]
    r.latency_ms = {"p50": p99 / 2, "p99": p99, "max": p99 * 1.5, "samples": 100}
    r.rss_before_kb, r.rss_after_kb = 50_000, 50_000 + members * 16
    return r


def line(members: int, rounds: list[Round], rooms: int = 1) -> str:
    return json_line({"members": members, "rooms": rooms, "rate": 40.0, "tick_ms": 100}, rounds)


def test_only_the_result_lines_are_read() -> None:
    text = [
        "[livecast#1] t=  1.0s sent 40 delivered 40",
        "| server | members |",
        '{"something": "else", "rounds": []}',
        "{not json",
        "",
        line(1000, [rnd("livecast", 1, 1000, 2.0, 800_000)]),
    ]
    got = parse_lines(text)
    assert len(got) == 1 and got[0]["config"]["members"] == 1000
    assert parse_lines([t.encode() for t in text]) == got


def test_points_are_medians_per_server_and_member_count() -> None:
    results = parse_lines([
        line(5000, [rnd("livecast", 1, 5000, 8.0, 4_000_000, p99=900),
                    rnd("baseline", 1, 5000, 6.0, 4_000_000),
                    rnd("livecast", 2, 4998, 10.0, 4_000_000, p99=100),
                    rnd("baseline", 2, 5000, 7.0, 4_000_000)]),
        line(1000, [rnd("socketio-py", 1, 1000, 40.0, 700_000, expected=800_000),
                    rnd("baseline", 1, 1000, 2.0, 800_000),
                    rnd("livecast", 1, 1000, 2.5, 800_000)]),
    ])
    by = series(results)
    assert list(by) == ["livecast", "baseline", "socketio-py"]
    assert [p.requested for p in by["livecast"]] == [1000, 5000]
    lc5 = by["livecast"][1]
    assert lc5.rounds == 2 and lc5.members == 4999
    assert lc5.deliveries_per_cpu_s == (500_000 + 400_000) / 2
    assert lc5.p99_ms == 500 and lc5.complete
    assert not by["socketio-py"][0].complete
    assert math.isclose(multiples(by)[(1, 5000)], 2.25 / 1.625, rel_tol=1e-3)
    assert math.isclose(multiples(by)[(1, 1000)], 1.25)


def test_a_gap_makes_a_point_incomplete_and_latency_may_be_missing() -> None:
    r = rnd("livecast", 1, 100, 1.0, 80_000, gaps=3)
    r.latency_ms = {}
    (p,) = series(parse_lines([line(100, [r])]))["livecast"]
    assert not p.complete and math.isnan(p.p99_ms)
    assert "| - | - |" in table({"livecast": [p]})


def test_runs_with_the_same_member_count_are_pooled() -> None:
    a = line(1000, [rnd("socketio-node", 1, 1000, 10.0, 800_000)])
    b = line(1000, [rnd("socketio-node", 1, 1000, 8.0, 800_000),
                    rnd("socketio-node", 2, 1000, 4.0, 800_000)])
    (p,) = series(parse_lines([a, b]))["socketio-node"]
    assert p.rounds == 3 and p.deliveries_per_cpu_s == 100_000
    assert p.received == p.due == 2_400_000 and p.complete


def test_unanswered_sends_are_due_and_make_a_point_incomplete() -> None:
    # a saturated peer answered 90 of 800 sends; 710 are still owed to 5,002 members
    r = rnd("socketio-py", 1, 5000, 40.0, 465_000, expected=450_180, unanswered=710)
    (p,) = series(parse_lines([line(5000, [r])]))["socketio-py"]
    assert p.due == 450_180 + 710 * 5002 and not p.complete
    assert "| 11.6 % |" in table({"socketio-py": [p]})
    r.received, r.unanswered = r.expected, 1
    assert not series(parse_lines([line(5000, [r])]))["socketio-py"][0].complete


def test_the_table_has_a_row_per_point_and_the_multiple() -> None:
    by = series(parse_lines([line(1000, [
        rnd("livecast", 1, 1000, 2.4, 800_000, p99=150),
        rnd("baseline", 1, 1000, 2.0, 800_000, p99=20_500),
        rnd("socketio-py", 1, 1000, 30.0, 400_000, expected=800_000)])]))
    rows = table(by).splitlines()
    assert len(rows) == 2 + 3
    assert rows[2].startswith(
        "| 1,000 | 1 | livecast | 1 | 333,333 | 1.20 | 75 ms | 150 ms | all |")
    assert "| raw baseline | 1 | 400,000 | 1.00 |" in rows[3] and "| 20.5 s |" in rows[3]
    assert "| 50.0 % |" in rows[4]


@given(st.lists(st.tuples(st.sampled_from(["livecast", "baseline", "floor", "socketio-node"]),
                          st.sampled_from([1000, 5000, 19000]),
                          st.floats(0.5, 50.0), st.integers(10**4, 10**7)), min_size=1))
def test_every_round_lands_in_exactly_one_point(rows: list[tuple[str, int, float, int]]) -> None:
    lines = [line(n, [rnd(t, 1, n, cpu, got)]) for t, n, cpu, got in rows]
    by = series(parse_lines(lines))
    points = [p for ps in by.values() for p in ps]
    assert sum(p.rounds for p in points) == len(rows)
    assert len(points) == len({(t, n) for t, n, _, _ in rows})
    for ps in by.values():
        assert [p.members for p in ps] == sorted(p.members for p in ps)
    for p in points:
        mine = [got / cpu for t, n, cpu, got in rows if (t, n) == (p.server, p.requested)]
        assert min(mine) * 0.999 <= p.deliveries_per_cpu_s <= max(mine) * 1.001


def test_one_room_and_many_rooms_of_the_same_members_are_two_shapes() -> None:
    small = [rnd("livecast", 1, 5000, 5.0, 450_000), rnd("baseline", 1, 5000, 4.0, 450_000),
             rnd("floor", 1, 5000, 4.4, 450_000)]
    for r in small:
        r.members_by_room = [12] * 500
    by = series(parse_lines([
        line(5000, [rnd("livecast", 1, 5000, 8.0, 4_000_000),
                    rnd("baseline", 1, 5000, 8.0, 4_000_000)]),
        line(5000, small, rooms=500)]))
    assert [(p.rooms, p.requested) for p in by["livecast"]] == [(1, 5000), (500, 5000)]
    assert by["livecast"][1].per_room == 12 and by["livecast"][1].rounds == 1
    assert multiples(by) == pytest.approx({(1, 5000): 1.0, (500, 5000): 1.25}, rel=1e-3)
    rows = table(by).splitlines()
    assert rows[4].startswith("| 5,000 | 500 | livecast | 1 | 90,000 | 1.25 |")
    assert rows[5].startswith("| 5,000 | 500 | raw baseline | 1 | 112,500 | 1.00 |")
    assert rows[6].startswith("| 5,000 | 500 | contract floor | 1 | 102,273 | 1.10 |")
    assert multiples(by, "floor") == pytest.approx({(500, 5000): 1.1}, rel=1e-3)


def test_the_module_loads_without_matplotlib() -> None:
    code = ("import sys, livecast.bench.chart; "
            "sys.exit(1 if 'matplotlib' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_main_refuses_bad_arguments_and_files_without_results(tmp_path: Path) -> None:
    assert main([]) == 2
    empty = tmp_path / "empty.jsonl"
    empty.write_text("progress only\n")
    assert main([str(empty), str(tmp_path / "out.png")]) == 1
    assert not (tmp_path / "out.png").exists()
