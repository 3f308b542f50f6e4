"""Draw a run's chart from locust's CSV history (docs/loadtesting.md).

    python loadtests/chart.py PREFIX OUT.png [TITLE]

PREFIX is what was given to locust's ``--csv``; the run needs
``--csv-full-history`` so that the history has one row per request name.
Needs matplotlib, which the kit's install brings (``pip install -e '.[loadtest]'``).

Three panels over the run's time: users; messages sent per second by
priority with the drops among them; delivery latency from the sender's
timestamp (WS e2e), p50 and p99 per priority, over locust's 10-second
window.
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLORS = {"High": "tab:red", "Normal": "tab:blue", "Low": "tab:green", "Lowest": "tab:gray"}
Series = dict[tuple[str, str], list[tuple[float, dict[str, str]]]]


def load(path: str) -> tuple[Series, list[tuple[float, int]]]:
    series: Series = defaultdict(list)
    users: list[tuple[float, int]] = []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    start = float(rows[0]["Timestamp"])
    for r in rows:
        t = float(r["Timestamp"]) - start
        if r["Name"] == "Aggregated":
            users.append((t, int(r["User Count"])))
        else:
            series[(r["Type"], r["Name"])].append((t, r))
    return series, users


def _values(points: list[tuple[float, dict[str, str]]], column: str) -> tuple[list[float],
                                                                               list[float]]:
    xs, ys = [], []
    for t, r in points:
        if r[column] not in ("", "N/A"):
            xs.append(t)
            ys.append(float(r[column]))
    return xs, ys


def draw(series: Series, users: list[tuple[float, int]], out: str, title: str = "") -> None:
    fig, (a, b, c) = plt.subplots(3, 1, figsize=(8, 7.5), sharex=True,
                                  gridspec_kw={"height_ratios": [1, 2, 2]})
    a.plot([t for t, _ in users], [n for _, n in users], color="black")
    a.set_ylabel("users")
    if title:
        a.set_title(title, fontsize=10)
    for prio, color in COLORS.items():
        if ("WS send", prio) in series:
            b.plot(*_values(series[("WS send", prio)], "Requests/s"), color=color,
                   label=f"{prio} sent")
        if ("WS drop", prio) in series:
            b.plot(*_values(series[("WS drop", prio)], "Requests/s"), color=color, ls=":",
                   label=f"{prio} dropped")
        if ("WS e2e", prio) in series:
            c.plot(*_values(series[("WS e2e", prio)], "50%"), color=color, label=f"{prio} p50")
            c.plot(*_values(series[("WS e2e", prio)], "99%"), color=color, ls="--",
                   label=f"{prio} p99")
    b.set_ylabel("messages/s (replies)")
    b.set_ylim(0, b.get_ylim()[1] * 1.4)  # room for the legend
    b.legend(fontsize=7, ncol=4, loc="upper left")
    c.set_ylabel("delivery latency (e2e), ms")
    c.set_yscale("log")
    low, high = c.get_ylim()
    c.set_ylim(max(low, 1.0), high * 8)
    c.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    c.legend(fontsize=7, ncol=4, loc="upper left")
    c.set_xlabel("seconds since start")
    for ax in (a, b, c):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=80)


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    series, users = load(f"{argv[0]}_stats_history.csv")
    draw(series, users, argv[1], argv[2] if len(argv) == 3 else "")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
