"""Results of the bench: one ``Round`` per server run, a table and a JSON line.

Definitions (issue 5, item 1):
- expected deliveries = sum over rooms of (messages the server answered with
  a msgSeq) x (members of that room, senders included);
- received deliveries = messages counted in the ``msgs`` frames of every
  member; equal to expected when nothing was lost;
- server CPU per delivery = server CPU seconds (utime + stime) during the
  publishing window (sending and draining) / received deliveries;
- KB per connection = (server RSS after the members joined - RSS before) /
  members, in KiB;
- the multiple (with ``--baseline``) = the median CPU per delivery of the
  livecast rounds / that of the baseline rounds;
- the floor multiple (with ``--baseline --floor``) = the same for the raw
  writer with the contract's steps (``baseline.py --steps``);
- ``livecast_vs`` (with ``--peers``) = livecast's median deliveries per
  server CPU-second / each peer's.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson


@dataclass(slots=True)
class Round:
    target: str
    index: int
    members: int                    # receivers that joined
    senders: int
    rooms: int
    rate: float
    duration: float
    failed: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    delivered: int = 0              # sends answered with a msgSeq
    delivered_by_room: list[int] = field(default_factory=list)
    members_by_room: list[int] = field(default_factory=list)   # senders included
    drops: dict[str, int] = field(default_factory=dict)
    other_drops: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    unanswered: int = 0
    expected: int = 0
    received: int = 0
    frames: int = 0
    gaps: int = 0
    disorder: int = 0
    kicked: int = 0
    closes: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    cpu_s: float = 0.0              # the server's
    bench_cpu_s: float = 0.0        # the bench's own processes (clients, senders)
    machine_busy_s: float = 0.0     # all cores, not idle, in the window (anyone's work)
    softirq_s: float = 0.0          # of which softirq (mostly loopback TCP)
    window_s: float = 0.0
    rss_before_kb: int = 0
    rss_after_kb: int = 0

    @property
    def cpu_per_delivery_us(self) -> float:
        return self.cpu_s / self.received * 1e6 if self.received else float("nan")

    @property
    def deliveries_per_cpu_s(self) -> float:
        return self.received / self.cpu_s if self.cpu_s > 0 else float("nan")

    @property
    def kb_per_conn(self) -> float:
        return (self.rss_after_kb - self.rss_before_kb) / self.members if self.members else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(cpu_per_delivery_us=_r(self.cpu_per_delivery_us),
                   deliveries_per_cpu_s=_r(self.deliveries_per_cpu_s),
                   kb_per_conn=_r(self.kb_per_conn))
        return out


def _r(x: float) -> float | None:
    return None if x != x else round(x, 3)


def percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {}
    s = sorted(samples)
    p50, p99 = (s[min(len(s) - 1, int(q * len(s)))] for q in (0.50, 0.99))
    return {"p50": round(p50, 2), "p99": round(p99, 2), "max": round(s[-1], 2),
            "samples": len(s)}


def summary(rounds: list[Round]) -> dict[str, Any]:
    """Medians per target and, with both present, livecast's multiple of the baseline."""
    out: dict[str, Any] = {}
    for target in dict.fromkeys(r.target for r in rounds):
        mine = [r for r in rounds if r.target == target]
        out[target] = {
            "cpu_per_delivery_us": _r(statistics.median(r.cpu_per_delivery_us for r in mine)),
            "deliveries_per_cpu_s": _r(statistics.median(r.deliveries_per_cpu_s for r in mine)),
            "p99_ms": _r(statistics.median(r.latency_ms.get("p99", float("nan")) for r in mine)),
            "kb_per_conn": _r(statistics.median(r.kb_per_conn for r in mine)),
            "all_delivered": all(r.received == r.expected and not r.gaps for r in mine),
        }
    if "livecast" in out and "baseline" in out:
        lc, base = out["livecast"]["cpu_per_delivery_us"], out["baseline"]["cpu_per_delivery_us"]
        out["multiple"] = round(lc / base, 3) if lc and base else None
    if "floor" in out and "baseline" in out:
        fl, base = out["floor"]["cpu_per_delivery_us"], out["baseline"]["cpu_per_delivery_us"]
        out["floor_multiple"] = round(fl / base, 3) if fl and base else None
    others = [t for t in out
              if t not in ("livecast", "baseline", "floor", "multiple", "floor_multiple")]
    if "livecast" in out and others:
        mine = out["livecast"]["deliveries_per_cpu_s"]
        out["livecast_vs"] = {t: round(mine / out[t]["deliveries_per_cpu_s"], 2)
                              for t in others if mine and out[t]["deliveries_per_cpu_s"]}
    return out


HEAD = ("server", "members", "sent", "deliv", "drops H/N/L/Lw", "received/expected", "gaps",
        "msgs/frame", "p50 ms", "p99 ms", "max ms", "cpu s", "us/deliv", "deliv/cpu-s", "KB/conn",
        "bench cpu s", "machine busy s")


def row(r: Round) -> tuple[str, ...]:
    d = r.drops
    lat = r.latency_ms
    return (f"{r.target}#{r.index}", f"{r.members:,}", f"{r.sent:,}", f"{r.delivered:,}",
            "/".join(str(d.get(p, 0)) for p in ("High", "Normal", "Low", "Lowest")),
            f"{r.received:,}/{r.expected:,}", f"{r.gaps:,}",
            f"{r.received / r.frames:.2f}" if r.frames else "-",
            f"{lat.get('p50', float('nan')):.1f}", f"{lat.get('p99', float('nan')):.1f}",
            f"{lat.get('max', float('nan')):.1f}", f"{r.cpu_s:.2f}",
            f"{r.cpu_per_delivery_us:.2f}", f"{r.deliveries_per_cpu_s:,.0f}",
            f"{r.kb_per_conn:.1f}", f"{r.bench_cpu_s:.2f}",
            f"{r.machine_busy_s:.2f}")


def table(rounds: list[Round]) -> str:
    """A Markdown table, one row per round, then the multiple when there is one."""
    rows = [HEAD, *(row(r) for r in rounds)]
    widths = [max(len(x[i]) for x in rows) for i in range(len(HEAD))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(x, widths, strict=True)) + " |"
             for x in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    s = summary(rounds)
    if s.get("multiple") is not None:
        lines.append(f"\nlivecast server CPU per delivery = {s['multiple']:.2f} x the raw "
                     f"baseline ({s['livecast']['cpu_per_delivery_us']:.2f} us vs "
                     f"{s['baseline']['cpu_per_delivery_us']:.2f} us, medians)")
    if s.get("floor_multiple") is not None:
        lines.append(f"the contract's floor (the raw writer with livecast's steps) = "
                     f"{s['floor_multiple']:.2f} x the raw baseline "
                     f"({s['floor']['cpu_per_delivery_us']:.2f} us, median)")
    for peer, times in s.get("livecast_vs", {}).items():
        lines.append(f"livecast deliveries per server CPU-second = {times:.2f} x {peer}'s")
    return "\n".join(lines)


def json_line(config: dict[str, Any], rounds: list[Round]) -> str:
    return orjson.dumps({"bench": "livecast", "config": config,
                         "rounds": [r.as_dict() for r in rounds],
                         "summary": summary(rounds)}).decode()
