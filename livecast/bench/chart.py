"""The chart of a ``livecast bench`` series: cost and latency against members.

    python -m livecast.bench.chart RESULTS.jsonl OUT.png

RESULTS.jsonl holds the JSON lines ``livecast bench`` prints last (one per
invocation; other lines are ignored).  OUT.png gets two panels, one line per
server (livecast, raw baseline, Node Socket.IO, python-socketio):
deliveries per server CPU-second against members, and p99 latency against
members.  The series' Markdown table goes to stdout (docs/benchmarks.md).

Invariants of the series (the pure part, ``series``; no matplotlib needed):
- a point is one (server, requested members) pair; it pools every round of
  that pair found in the file, and its figures are medians over those
  rounds, as ``report.summary`` takes them;
- its x is the median of the members that joined (the requested count may
  not all fit, docs/benchmarks.md "Many connections");
- ``due`` is what the rounds owed: the bench's ``expected`` (answered sends
  x members of the room, senders included) plus the sends still unanswered
  when the bench stopped, times the members of a room (sends are spread
  evenly over the rooms; exact with one room); a saturated server that
  has not answered a send yet owes its deliveries all the same;
- ``complete`` is true only when every pooled round answered every send and
  received exactly the expected deliveries with no seq gap; the chart draws
  incomplete points hollow: their cost per delivery and their latency count
  only what arrived before the bench stopped;
- the baseline multiple of a member count is livecast's median CPU per
  delivery over the baseline's (report.py's ``multiple``);
- points are sorted by members; servers keep the order of ``ORDER``, then
  of first appearance.
matplotlib (the ``plot`` extra) is imported inside ``draw`` only.
"""

from __future__ import annotations

import math
import statistics
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

ORDER = ("livecast", "baseline", "socketio-node", "socketio-py")
LABELS = {"livecast": "livecast", "baseline": "raw baseline",
          "socketio-node": "Node Socket.IO 4", "socketio-py": "python-socketio"}
STYLE = {"livecast": ("#d62728", "o"), "baseline": ("#7f7f7f", "s"),
         "socketio-node": ("#1f77b4", "^"), "socketio-py": ("#2ca02c", "v")}


@dataclass(frozen=True, slots=True)
class Point:
    server: str
    requested: int                  # --members of the invocation
    members: float                  # median of the members that joined
    rounds: int
    deliveries_per_cpu_s: float     # medians over the rounds from here on
    cpu_per_delivery_us: float
    p50_ms: float
    p99_ms: float
    kb_per_conn: float
    received: int                   # sums over the rounds
    due: int
    complete: bool


def parse_lines(lines: Iterable[str | bytes]) -> list[dict[str, Any]]:
    """The bench's result objects among ``lines``; anything else is skipped."""
    out = []
    for line in lines:
        text = line.strip()
        if not text or text[:1] not in ("{", b"{"):
            continue
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict) and obj.get("bench") == "livecast" and "rounds" in obj:
            out.append(obj)
    return out


def _num(x: Any) -> float:
    return float(x) if isinstance(x, int | float) else math.nan


def _median(xs: Iterable[float]) -> float:
    good = [x for x in xs if not math.isnan(x)]
    return statistics.median(good) if good else math.nan


def _point(server: str, requested: int, rounds: list[dict[str, Any]]) -> Point:
    lat = [r.get("latency_ms") or {} for r in rounds]
    return Point(
        server, requested, _median(_num(r.get("members")) for r in rounds), len(rounds),
        _median(_num(r.get("deliveries_per_cpu_s")) for r in rounds),
        _median(_num(r.get("cpu_per_delivery_us")) for r in rounds),
        _median(_num(x.get("p50")) for x in lat), _median(_num(x.get("p99")) for x in lat),
        _median(_num(r.get("kb_per_conn")) for r in rounds),
        sum(int(r.get("received", 0)) for r in rounds), sum(_due(r) for r in rounds),
        all(r.get("received") == r.get("expected") and not r.get("gaps")
            and not r.get("unanswered") for r in rounds))


def _due(r: dict[str, Any]) -> int:
    per_room = r.get("members_by_room") or [0]
    pending: float = int(r.get("unanswered", 0)) * sum(per_room) / len(per_room)
    return int(r.get("expected", 0)) + round(pending)


def series(results: Iterable[dict[str, Any]]) -> dict[str, list[Point]]:
    """Per server, its points sorted by members (see the module's invariants)."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for res in results:
        requested = int(res.get("config", {}).get("members", 0))
        for r in res["rounds"]:
            groups.setdefault((str(r["target"]), requested), []).append(r)
    found = list(dict.fromkeys(server for server, _ in groups))
    servers = [s for s in ORDER if s in found] + [s for s in found if s not in ORDER]
    return {s: sorted((_point(s, n, rs) for (t, n), rs in groups.items() if t == s),
                      key=lambda p: (p.members, p.requested)) for s in servers}


def multiples(by_server: dict[str, list[Point]]) -> dict[int, float]:
    """Requested members -> livecast's CPU per delivery / the baseline's."""
    base = {p.requested: p.cpu_per_delivery_us for p in by_server.get("baseline", [])}
    return {p.requested: p.cpu_per_delivery_us / base[p.requested]
            for p in by_server.get("livecast", [])
            if base.get(p.requested, 0) > 0 and not math.isnan(p.cpu_per_delivery_us)}


def _fmt_ms(x: float) -> str:
    if math.isnan(x):
        return "-"
    return f"{x / 1000:.1f} s" if x >= 10_000 else f"{x:,.0f} ms"


def table(by_server: dict[str, list[Point]]) -> str:
    """The series as a Markdown table, grouped by member count."""
    head = ("members", "server", "rounds", "deliveries per server CPU-second",
            "x baseline CPU per delivery", "p50", "p99", "delivered of due", "KB per connection")
    mult = multiples(by_server)
    rows = sorted((p for ps in by_server.values() for p in ps),
                  key=lambda p: (p.requested, list(by_server).index(p.server)))
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in rows:
        base = "1.00" if p.server == "baseline" else (
            f"{mult[p.requested]:.2f}" if p.server == "livecast" and p.requested in mult else "")
        share = p.received / p.due * 100 if p.due else math.nan
        lines.append("| " + " | ".join((
            f"{p.members:,.0f}", LABELS.get(p.server, p.server), str(p.rounds),
            f"{p.deliveries_per_cpu_s:,.0f}", base, _fmt_ms(p.p50_ms), _fmt_ms(p.p99_ms),
            "all" if p.complete else f"{share:.1f} %", f"{p.kb_per_conn:.1f}")) + " |")
    return "\n".join(lines)


def draw(by_server: dict[str, list[Point]], out: str, title: str = "",
         tick_ms: float = 0.0) -> None:
    """Two panels side by side, log-log; incomplete points hollow, with the
    share delivered beside them; a dotted line at one tick on the latency panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 5), layout="constrained")
    for server, points in by_server.items():
        _plot(left, server, points, "deliveries_per_cpu_s", legend=True)
        _plot(right, server, points, "p99_ms", legend=False)
    if tick_ms > 0:
        right.axhline(tick_ms, color="black", lw=0.8, ls=":")
        right.annotate(f"one tick ({tick_ms:g} ms)", (0.98, tick_ms), xytext=(0, -11),
                       xycoords=("axes fraction", "data"), textcoords="offset points",
                       fontsize=8, ha="right")
    _axes(left, right, sorted({p.members for ps in by_server.values() for p in ps}))
    fig.legend(loc="outside lower center", ncols=4, fontsize=9, frameon=False,
               title="hollow marker: not every message delivered when the bench stopped "
                     "(% = share delivered)", title_fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _plot(ax: Any, server: str, points: list[Point], key: str, legend: bool) -> None:
    """One server's line on one panel; points without a value are left out."""
    color, marker = STYLE.get(server, ("black", "D"))
    pts = [p for p in points if not math.isnan(getattr(p, key))]
    xs, ys = [p.members for p in pts], [getattr(p, key) for p in pts]
    ax.plot(xs, ys, color=color, lw=2.2 if server == "livecast" else 1.4, marker=marker,
            ms=7, label=LABELS.get(server, server) if legend else None)
    for p, x, y in zip(pts, xs, ys, strict=True):
        ax.plot([x], [y], marker=marker, ms=7, color=color,
                mfc=color if p.complete else "white", mew=1.5)
        if not p.complete and p.due:
            ax.annotate(f"{p.received / p.due:.0%}", (x, y), xytext=(7, -3),
                        textcoords="offset points", fontsize=8, color=color)


def _count(v: float) -> str:
    return f"{v / 1e6:g}M" if v >= 1e6 else f"{v / 1000:g}k" if v >= 1000 else f"{v:g}"


def _ms(v: float) -> str:
    return f"{v / 1000:g} s" if v >= 1000 else f"{v:g} ms"


def _axes(left: Any, right: Any, members: list[float]) -> None:
    from matplotlib.ticker import FuncFormatter, NullFormatter

    left.set(title="Deliveries per server CPU-second (higher is better)",
             ylabel="deliveries per server CPU-second")
    right.set(title="p99 latency (lower is better)", ylabel="p99, sender's clock to member")
    for ax in (left, right):
        ax.set(xscale="log", yscale="log", xlabel="members in the room")
        ax.set_xticks(members, [_count(m) for m in members])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="major", alpha=0.35)
        ax.grid(True, which="minor", axis="y", alpha=0.12)
    left.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _count(v)))
    right.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _ms(v)))


def caption(config: dict[str, Any]) -> str:
    """The workload in a line: rooms, rate per room, tick."""
    rooms = config.get("rooms", "?")
    rate = config.get("rate", "?")
    rate = f"{rate:g}" if isinstance(rate, int | float) else rate
    return (f"{rooms} room{'' if rooms == 1 else 's'}, {rate} msg/s per room, "
            f"tick {config.get('tick_ms', '?')} ms")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m livecast.bench.chart RESULTS.jsonl OUT.png", file=sys.stderr)
        return 2
    with open(args[0], "rb") as f:
        results = parse_lines(f)
    if not results:
        print(f"{args[0]}: no livecast bench result lines", file=sys.stderr)
        return 1
    by_server = series(results)
    config = results[0].get("config", {})
    tick = config.get("tick_ms")
    draw(by_server, args[1], caption(config), float(tick) if isinstance(tick, int) else 0.0)
    print(table(by_server))
    return 0


if __name__ == "__main__":
    sys.exit(main())
