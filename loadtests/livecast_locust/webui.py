"""The kit's page in locust's web UI: a "livecast" tab, a per-priority latency
chart and a CSV download (docs/loadtesting.md, "In the web UI").

- The tab (locust's ``extendedTabs`` / ``extendedTables``) is a table per
  priority: sends per second, drop %, and the current (last 10 s, locust's
  window) recv and e2e p50/p99; below them the counters (seq gaps, missed
  messages, reconnects, server closes...). Its rows ride on locust's own
  ``/stats/requests`` poll as ``extended_stats``.
- ``/livecast/chart``: per-priority e2e p50 and p99 over the run, as SVG,
  from samples taken every ``SAMPLE_S`` seconds (the page reloads itself).
- ``/livecast/csv``: ``PREFIX_livecast.csv`` of the run so far.

Invariants: this runs only where the statistics are complete (a local runner
or the master); ``History`` keeps at most ``KEEP`` samples; the SVG is text
built from numbers only (no request or user string reaches it).
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

import gevent

from livecast_locust import state, summary

TAB = "livecast"
SAMPLE_S = 2.0
KEEP = 1800  # one hour at one sample every 2 s
COLORS = {"High": "#e11d48", "Normal": "#2563eb", "Low": "#16a34a", "Lowest": "#7c3aed"}
COLUMNS = (("priority", "Priority"), ("sent_per_s", "Sent/s"), ("drop_pct", "Drop %"),
           ("e2e_p50", "e2e p50 (ms, 10 s)"), ("e2e_p99", "e2e p99 (ms, 10 s)"),
           ("recv_p50", "recv p50 (ms, 10 s)"), ("recv_p99", "recv p99 (ms, 10 s)"),
           ("total", "Total"))

Sample = tuple[float, dict[str, tuple[float | None, float | None]]]  # (t, {prio: (p50, p99)})


def _current(stats: Any, kind: str, prio: str, q: float) -> float | None:
    e = stats.entries.get((prio, kind))
    if e is None or not e.num_requests or not e.use_response_times_cache:
        return None
    value = e.get_current_response_time_percentile(q)
    return None if value is None else float(value)


def table_rows(stats: Any, tally: state.Tally) -> list[dict[str, Any]]:
    """The tab's rows: one per priority (always four), then one per counter."""
    rows: list[dict[str, Any]] = []
    for p in summary.PRIORITIES:
        send = stats.entries.get((p, "WS send"))
        rows.append({
            "priority": p, "sent_per_s": round(send.current_rps, 1) if send else 0.0,
            "drop_pct": round(summary.drop_share(stats, p), 1),
            "e2e_p50": _current(stats, "WS e2e", p, 0.5),
            "e2e_p99": _current(stats, "WS e2e", p, 0.99),
            "recv_p50": _current(stats, "WS recv", p, 0.5),
            "recv_p99": _current(stats, "WS recv", p, 0.99),
            "total": send.num_requests if send else 0})
    for name, text in state.COUNTERS.items():
        rows.append({"priority": text, "total": tally.counts.get(name, 0)})
    return rows


@dataclass
class History:
    """Per-priority e2e p50/p99 over the run, one sample every SAMPLE_S."""

    samples: list[Sample] = field(default_factory=list)

    def take(self, stats: Any, now: float) -> None:
        point = {p: (_current(stats, "WS e2e", p, 0.5), _current(stats, "WS e2e", p, 0.99))
                 for p in summary.PRIORITIES}
        self.samples.append((now, point))
        del self.samples[:-KEEP]


def _nice(top: float) -> tuple[float, float]:
    """A round step (1, 2 or 5 × 10^k, about four of them) and the axis top for ``top``."""
    if top <= 0:
        return 1.0, 5.0
    raw = top / 4
    p = 10.0 ** math.floor(math.log10(raw))
    step = next(m * p for m in (1, 2, 5, 10) if m * p >= raw)
    return step, step * math.ceil(top / step)


def svg(samples: list[Sample], width: int = 900, height: int = 360) -> str:
    """The chart: e2e p50 (solid) and p99 (dashed) per priority, ms over seconds."""
    left, right, top_pad, bottom = 56, 110, 12, 32
    w, h = width - left - right, height - top_pad - bottom
    values = [v for _, point in samples for pair in point.values() for v in pair if v is not None]
    step, top = _nice(max(values, default=0.0))
    t0 = samples[0][0] if samples else 0.0
    span = max(10.0, (samples[-1][0] - t0) if samples else 10.0)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" font-family="sans-serif" font-size="11">']
    v = 0.0
    while v <= top + step / 2:
        y = top_pad + h - h * v / top
        out.append(f'<line x1="{left}" x2="{left + w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
                   f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{v:g}</text>')
        v += step
    out.append(f'<text x="12" y="{top_pad + h / 2}" transform="rotate(-90 12 {top_pad + h / 2})" '
               'text-anchor="middle">e2e latency, ms</text>')
    for i in range(6):
        x = left + w * i / 5
        out.append(f'<text x="{x:.1f}" y="{height - 12}" text-anchor="middle">'
                   f'{span * i / 5:.0f} s</text>')
    for n, (prio, color) in enumerate(COLORS.items()):
        for k, dash in ((0, ""), (1, ' stroke-dasharray="5 4"')):
            pts = [(left + w * (t - t0) / span, top_pad + h - h * pt[prio][k] / top)
                   for t, pt in samples if pt[prio][k] is not None]
            if pts:
                path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
                out.append(f'<polyline fill="none" stroke="{color}" stroke-width="2"{dash} '
                           f'points="{path}"/>')
        y = top_pad + 14 + 18 * n
        out.append(f'<line x1="{left + w + 12}" x2="{left + w + 32}" y1="{y}" y2="{y}" '
                   f'stroke="{color}" stroke-width="3"/><text x="{left + w + 38}" y="{y + 4}">'
                   f'{prio}</text>')
    out.append(f'<text x="{left + w + 12}" y="{top_pad + 96}" fill="#666">solid p50</text>'
               f'<text x="{left + w + 12}" y="{top_pad + 112}" fill="#666">dashed p99</text>')
    out.append("</svg>")
    return "".join(out)


def chart_page(samples: list[Sample]) -> str:
    return ('<!doctype html><html><head><meta charset="utf-8"><meta http-equiv="refresh" '
            f'content="{SAMPLE_S * 2:g}"><title>livecast: latency per priority</title></head>'
            '<body style="font-family:sans-serif;margin:16px">'
            '<h2>Delivery latency per priority (WS e2e, locust\'s last-10-s window)</h2>'
            f'{svg(samples)}<p>{len(samples)} samples, one every {SAMPLE_S:g} s.</p>'
            '</body></html>')


HISTORY = History()


def _sampler(environment: Any) -> None:
    while True:
        gevent.sleep(SAMPLE_S)
        if environment.runner is not None:
            HISTORY.take(environment.runner.stats, time.time())


def register(environment: Any) -> None:
    """Add the tab, the chart page and the CSV download to locust's web UI."""
    web_ui = environment.web_ui
    if web_ui is None:
        return
    from flask import Response, request

    web_ui.template_args["extendedTabs"] = [{"title": "livecast", "key": TAB}]
    web_ui.template_args["extendedTables"] = [
        {"key": TAB, "structure": [{"key": k, "title": t} for k, t in COLUMNS]}]
    web_ui.template_args["extendedCsvFiles"] = [
        {"href": "./livecast/csv", "title": "Download livecast per-priority CSV"},
        {"href": "./livecast/chart", "title": "livecast: latency per priority over time (chart)"}]
    gevent.spawn(_sampler, environment)

    @web_ui.app.after_request
    def _extend(response: Any) -> Any:
        if request.path != "/stats/requests" or environment.runner is None:
            return response
        body = response.get_json(silent=True) or {}
        rows = table_rows(environment.runner.stats, state.TALLY)
        body["extended_stats"] = [{"key": TAB, "data": rows}]
        response.set_data(json.dumps(body))
        return response

    @web_ui.app.route("/livecast/chart")
    def _chart() -> Any:
        return Response(chart_page(HISTORY.samples), mimetype="text/html")

    @web_ui.app.route("/livecast/csv")
    def _csv() -> Any:
        buf = io.StringIO()
        stats = environment.runner.stats if environment.runner is not None else None
        csv.writer(buf).writerows(summary.csv_rows(stats) if stats is not None
                                  else [summary.CSV_HEADER])
        return Response(buf.getvalue(), mimetype="text/csv", headers={
            "Content-Disposition": "attachment; filename=livecast.csv"})
