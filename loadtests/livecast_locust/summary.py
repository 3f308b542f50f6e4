"""The end-of-run summary: one table per priority, then the counters.

Everything is read from locust's own statistics (on a master they already
hold every worker's requests) and from ``state.TALLY`` (merged from the
workers' reports): nothing here is measured twice.

``prepare`` creates the rows that must be in locust's tables and CSV from the
start, zero or not: ``WS drop`` and ``WS drop %`` per priority, and the
``WS count`` counters. ``write_csv`` writes ``PREFIX_livecast.csv``: one row
per priority, always all four, with the drop percentage as a column.

Columns, per priority:
- sent: WS send replies (delivered + dropped; failures excluded)
- failed: WS send failures (non-zero codes, no reply)
- dropped: WS drop (the room's rate limit answered MsgFreqCtrl); drop%: the share
  of sent that any drop took (rate limit or the before-send webhook: WS drop %)
- deliveries: WS recv, messages of that priority received by all members together
- recv p50/p99: delivery latency from the server's dispatch ``time``
- e2e p50/p99: delivery latency from the sender's own timestamp
- reply p50/p99: time from a send to its reply
"""

from __future__ import annotations

import csv
from typing import Any

from livecast_locust.state import COUNT_TYPE, COUNTED, COUNTERS, Tally

PRIORITIES = ("High", "Normal", "Low", "Lowest")
DROP_PCT = "WS drop %"  # per send reply: 100 if dropped, else 0; the average is the drop %
CSV_HEADER = ("Priority", "Sent", "Failed", "Dropped", "Drop %", "Deliveries",
              "Recv p50 (ms)", "Recv p99 (ms)", "E2E p50 (ms)", "E2E p99 (ms)",
              "Reply p50 (ms)", "Reply p99 (ms)")


def prepare(stats: Any) -> None:
    """Create the rows that are always shown (zero until something happens)."""
    for prio in PRIORITIES:
        stats.get(prio, "WS drop")
        stats.get(prio, DROP_PCT)
    for name in COUNTED.values():
        stats.get(name, COUNT_TYPE)


def drop_share(stats: Any, prio: str) -> float:
    """The share of a priority's sends that were dropped, in percent (0 with no send)."""
    e = _entry(stats, DROP_PCT, prio)
    return float(e.avg_response_time) if e is not None and e.num_requests else 0.0


def _ms(stats: Any, kind: str, name: str, q: float) -> str:
    e = _entry(stats, kind, name)
    return f"{e.get_response_time_percentile(q):g}" if e is not None and e.num_requests else ""


def csv_rows(stats: Any) -> list[tuple[str, ...]]:
    """``PREFIX_livecast.csv``: the header and one row per priority, always all four."""
    rows = [CSV_HEADER]
    for p in PRIORITIES:
        rows.append((p, str(_count(stats, "WS send", p)),
                     str(_count(stats, "WS send", p, failures=True)),
                     str(_count(stats, "WS drop", p)), f"{drop_share(stats, p):.1f}",
                     str(_count(stats, "WS recv", p)),
                     _ms(stats, "WS recv", p, 0.5), _ms(stats, "WS recv", p, 0.99),
                     _ms(stats, "WS e2e", p, 0.5), _ms(stats, "WS e2e", p, 0.99),
                     _ms(stats, "WS send", p, 0.5), _ms(stats, "WS send", p, 0.99)))
    return rows


def write_csv(path: str, stats: Any) -> None:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(csv_rows(stats))
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
    share = f"{drop_share(stats, prio):.1f}%" if sent else "-"
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
