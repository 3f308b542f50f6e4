"""The end-of-run summary: one table per priority, then the counters.

Everything is read from locust's own statistics (on a master they already
hold every worker's requests) and from ``state.TALLY`` (merged from the
workers' reports): nothing here is measured twice.

Columns, per priority:
- sent: WS send replies (delivered + dropped; failures excluded)
- failed: WS send failures (non-zero codes, no reply)
- dropped: WS drop (the room's rate limit answered MsgFreqCtrl), and its share of sent
- deliveries: WS recv, messages of that priority received by all members together
- recv p50/p99: delivery latency from the server's dispatch ``time``
- e2e p50/p99: delivery latency from the sender's own timestamp
- reply p50/p99: time from a send to its reply
"""

from __future__ import annotations

from typing import Any

from livecast_locust.state import COUNTERS, Tally

PRIORITIES = ("High", "Normal", "Low", "Lowest")
HEADER = ("priority", "sent", "failed", "dropped", "drop%", "deliveries",
          "recv p50", "recv p99", "e2e p50", "e2e p99", "reply p50", "reply p99")


def _entry(stats: Any, kind: str, name: str) -> Any:
    return stats.entries.get((name, kind))


def _count(stats: Any, kind: str, name: str, failures: bool = False) -> int:
    e = _entry(stats, kind, name)
    if e is None:
        return 0
    return int(e.num_failures if failures else e.num_requests - e.num_failures)


def _pct(stats: Any, kind: str, name: str, q: float) -> str:
    e = _entry(stats, kind, name)
    if e is None or not e.num_requests:
        return "-"
    return f"{e.get_response_time_percentile(q):g} ms"


def row(stats: Any, prio: str) -> tuple[str, ...] | None:
    """The row of one priority, or None when it saw no traffic at all."""
    sent = _count(stats, "WS send", prio)
    failed = _count(stats, "WS send", prio, failures=True)
    dropped = _count(stats, "WS drop", prio)
    recv = _count(stats, "WS recv", prio)
    if not (sent or failed or recv):
        return None
    share = f"{100.0 * dropped / sent:.1f}%" if sent else "-"
    return (prio, str(sent), str(failed), str(dropped), share, str(recv),
            _pct(stats, "WS recv", prio, 0.5), _pct(stats, "WS recv", prio, 0.99),
            _pct(stats, "WS e2e", prio, 0.5), _pct(stats, "WS e2e", prio, 0.99),
            _pct(stats, "WS send", prio, 0.5), _pct(stats, "WS send", prio, 0.99))


def table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                      for i, (c, w) in enumerate(zip(r, widths, strict=True)))
            for r in rows]


def render(stats: Any, tally: Tally) -> str:
    """The summary text for locust ``stats`` and the merged ``tally``."""
    rows = [HEADER] + [r for p in PRIORITIES if (r := row(stats, p)) is not None]
    lines = ["", "livecast summary", "================", *table(rows)]
    system = _count(stats, "WS e2e", "system")
    if system:
        lines.append(f"system notifications: {system} deliveries, e2e p50 "
                     f"{_pct(stats, 'WS e2e', 'system', 0.5)}, p99 "
                     f"{_pct(stats, 'WS e2e', 'system', 0.99)}")
    lines.append("")
    lines += [f"{tally.counts.get(name, 0):>10}  {text}" for name, text in COUNTERS.items()]
    failures = sum(e.num_failures for e in stats.entries.values())
    lines.append(f"{failures:>10}  failed requests (all types; see locust's failure table)")
    return "\n".join(lines) + "\n"
