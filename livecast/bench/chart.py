"""The chart of a ``livecast bench`` series: cost and latency against members.

    python -m livecast.bench.chart RESULTS.jsonl OUT.png

RESULTS.jsonl holds the JSON lines ``livecast bench`` prints last (one per
invocation; other lines are ignored).  OUT.png gets two panels for the runs
of one room, one line per server (livecast, raw baseline, Node Socket.IO,
python-socketio): deliveries per server CPU-second against members, and p99
latency against members; and, when the file also holds runs of many rooms
(``--preset small-rooms``, ``tiny-rooms``), a second row with the same two
figures as bars, one group per shape (rooms x members per room).  The
series' Markdown table goes to stdout (docs/benchmarks.md).

Invariants of the series (the pure part, ``series``; no matplotlib needed):
- a point is one (server, rooms, requested members) triple; it pools every
  round of that triple found in the file, and its figures are medians over those
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
- the baseline multiple of a shape (rooms, members) is livecast's (or the
  floor's) median CPU per delivery over the baseline's (report.py's
  ``multiple`` and ``floor_multiple``);
- points are sorted by rooms, then members; servers keep the order of ``ORDER``, then
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

ORDER = ("livecast", "baseline", "floor", "socketio-node", "socketio-py")
LABELS = {"livecast": "livecast", "baseline": "raw baseline", "floor": "contract floor",
          "socketio-node": "Node Socket.IO 4", "socketio-py": "python-socketio"}
STYLE = {"livecast": ("#d62728", "o"), "baseline": ("#7f7f7f", "s"), "floor": ("#9467bd", "D"),
         "socketio-node": ("#1f77b4", "^"), "socketio-py": ("#2ca02c", "v")}


@dataclass(frozen=True, slots=True)
class Point:
    server: str
    requested: int                  # --members of the invocation
    members: float                  # median of the members that joined
    rooms: int                      # --rooms of the invocation
    per_room: float                 # median connections per room, senders included
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


def _point(server: str, rooms: int, requested: int, rounds: list[dict[str, Any]]) -> Point:
    lat = [r.get("latency_ms") or {} for r in rounds]
    return Point(
        server, requested, _median(_num(r.get("members")) for r in rounds), rooms,
        _median(_per_room(r) for r in rounds), len(rounds),
        _median(_num(r.get("deliveries_per_cpu_s")) for r in rounds),
        _median(_num(r.get("cpu_per_delivery_us")) for r in rounds),
        _median(_num(x.get("p50")) for x in lat), _median(_num(x.get("p99")) for x in lat),
        _median(_num(r.get("kb_per_conn")) for r in rounds),
        sum(int(r.get("received", 0)) for r in rounds), sum(_due(r) for r in rounds),
        all(r.get("received") == r.get("expected") and not r.get("gaps")
            and not r.get("unanswered") for r in rounds))


def _per_room(r: dict[str, Any]) -> float:
    per_room = r.get("members_by_room") or []
    return sum(per_room) / len(per_room) if per_room else math.nan


def _due(r: dict[str, Any]) -> int:
    per_room = r.get("members_by_room") or [0]
    pending: float = int(r.get("unanswered", 0)) * sum(per_room) / len(per_room)
    return int(r.get("expected", 0)) + round(pending)


def series(results: Iterable[dict[str, Any]]) -> dict[str, list[Point]]:
    """Per server, its points sorted by members (see the module's invariants)."""
    groups: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    for res in results:
        config = res.get("config", {})
        requested, rooms = int(config.get("members", 0)), int(config.get("rooms", 1))
        for r in res["rounds"]:
            groups.setdefault((str(r["target"]), rooms, requested), []).append(r)
    found = list(dict.fromkeys(server for server, _, _ in groups))
    servers = [s for s in ORDER if s in found] + [s for s in found if s not in ORDER]
    return {s: sorted((_point(s, k, n, rs) for (t, k, n), rs in groups.items() if t == s),
                      key=lambda p: (p.rooms, p.members, p.requested)) for s in servers}


Shape = tuple[int, int]  # (rooms, requested members)


def _shape(p: Point) -> Shape:
    return p.rooms, p.requested


def multiples(by_server: dict[str, list[Point]],
              server: str = "livecast") -> dict[Shape, float]:
    """(rooms, requested members) -> ``server``'s CPU per delivery / the baseline's."""
    base = {_shape(p): p.cpu_per_delivery_us for p in by_server.get("baseline", [])}
    return {_shape(p): p.cpu_per_delivery_us / base[_shape(p)]
            for p in by_server.get(server, [])
            if base.get(_shape(p), 0) > 0 and not math.isnan(p.cpu_per_delivery_us)}


def _fmt_ms(x: float) -> str:
    if math.isnan(x):
        return "-"
    return f"{x / 1000:.1f} s" if x >= 10_000 else f"{x:,.0f} ms"


def table(by_server: dict[str, list[Point]]) -> str:
    """The series as a Markdown table, grouped by member count."""
    head = ("members", "rooms", "server", "rounds", "deliveries per server CPU-second",
            "x baseline CPU per delivery", "p50", "p99", "delivered of due", "KB per connection")
    mult = {(server, shape): x for server in ("livecast", "floor")
            for shape, x in multiples(by_server, server).items()}
    rows = sorted((p for ps in by_server.values() for p in ps),
                  key=lambda p: (p.rooms, p.requested, list(by_server).index(p.server)))
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in rows:
        base = "1.00" if p.server == "baseline" else (
            f"{mult[p.server, _shape(p)]:.2f}" if (p.server, _shape(p)) in mult else "")
        share = p.received / p.due * 100 if p.due else math.nan
        lines.append("| " + " | ".join((
            f"{p.members:,.0f}", f"{p.rooms:,}", LABELS.get(p.server, p.server), str(p.rounds),
            f"{p.deliveries_per_cpu_s:,.0f}", base, _fmt_ms(p.p50_ms), _fmt_ms(p.p99_ms),
            "all" if p.complete else f"{share:.1f} %", f"{p.kb_per_conn:.1f}")) + " |")
    return "\n".join(lines)


def draw(by_server: dict[str, list[Point]], out: str, title: str = "",
         tick_ms: float = 0.0) -> None:
    """One room: two panels side by side, log-log; incomplete points hollow,
    with the share delivered beside them; a dotted line at one tick on the
    latency panel.  Many rooms (if any): a second row of bars, one group per
    shape, incomplete bars hollow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    one = {s: [p for p in ps if p.rooms == 1] for s, ps in by_server.items()}
    many = {s: [p for p in ps if p.rooms > 1] for s, ps in by_server.items()}
    one, many = ({s: ps for s, ps in d.items() if ps} for d in (one, many))
    rows = [r for r in (one, many) if r] or [one]
    fig, axes = plt.subplots(len(rows), 2, figsize=(11, 5 * len(rows)), layout="constrained",
                             squeeze=False)
    if one:
        _lines(axes[0][0], axes[0][1], one, tick_ms)
    if many:
        _bars(axes[-1][0], axes[-1][1], many)
    labels: dict[str, Any] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            labels.setdefault(label, handle)
    fig.legend(list(labels.values()), list(labels), loc="outside lower center", ncols=4,
               fontsize=9, frameon=False,
               title="hollow: not every message delivered when the bench stopped "
                     "(% = share delivered)", title_fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _lines(left: Any, right: Any, by_server: dict[str, list[Point]], tick_ms: float) -> None:
    for server, points in by_server.items():
        _plot(left, server, points, "deliveries_per_cpu_s", legend=True)
        _plot(right, server, points, "p99_ms", legend=False)
    if tick_ms > 0:
        right.axhline(tick_ms, color="black", lw=0.8, ls=":")
        right.annotate(f"one tick ({tick_ms:g} ms)", (0.98, tick_ms), xytext=(0, -11),
                       xycoords=("axes fraction", "data"), textcoords="offset points",
                       fontsize=8, ha="right")
    _axes(left, right, sorted({p.members for ps in by_server.values() for p in ps}))


def _bars(left: Any, right: Any, by_server: dict[str, list[Point]]) -> None:
    """Many rooms: per shape (rooms x members per room), a bar per server."""
    shapes = sorted({_shape(p) for ps in by_server.values() for p in ps})
    width = 0.8 / len(by_server)
    for i, (server, points) in enumerate(by_server.items()):
        color, _ = STYLE.get(server, ("black", "D"))
        at = {_shape(p): p for p in points}
        xs = [k + (i - (len(by_server) - 1) / 2) * width
              for k, shape in enumerate(shapes) if shape in at]
        pts = [at[shape] for shape in shapes if shape in at]
        for ax, key, fmt in ((left, "deliveries_per_cpu_s", _count), (right, "p99_ms", _ms)):
            bars = ax.bar(xs, [getattr(p, key) for p in pts], width, edgecolor=color,
                          linewidth=1.5, color=[color if p.complete else "white" for p in pts],
                          label=LABELS.get(server, server))
            ax.bar_label(bars, [fmt(round(getattr(p, key), 0 if key == "p99_ms" else -3))
                                for p in pts], fontsize=8)
    names = []
    for shape in shapes:
        per_room = _median(p.per_room for ps in by_server.values() for p in ps
                           if _shape(p) == shape)
        names.append(f"{shape[0]:,} rooms of {per_room:.0f}\n({shape[1]:,} members)")
    from matplotlib.ticker import FuncFormatter

    left.set(title="Many rooms: deliveries per server CPU-second (higher is better)",
             ylabel="deliveries per server CPU-second")
    right.set(title="Many rooms: p99 latency (lower is better)",
              ylabel="p99, sender's clock to member")
    for ax in (left, right):
        ax.set_xticks(range(len(shapes)), names)
        ax.grid(True, axis="y", alpha=0.35)
    left.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _count(v)))
    right.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _ms(v)))


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
    # the title speaks of the one-room runs (the many-room panels name their shapes)
    configs = [r.get("config", {}) for r in results]
    config = next((c for c in configs if c.get("rooms", 1) == 1), configs[0])
    tick = config.get("tick_ms")
    draw(by_server, args[1], caption(config), float(tick) if isinstance(tick, int) else 0.0)
    print(table(by_server))
    return 0


if __name__ == "__main__":
    sys.exit(main())
