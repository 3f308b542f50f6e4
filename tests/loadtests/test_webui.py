"""The kit's page in locust's web UI (loadtests/livecast_locust/webui.py).

Locust runs for real with its web UI (``--autostart``) against a real
livecast server whose rooms drop Low messages; real Chromium opens the
"livecast" tab and the latency chart, screenshots of both go to
``artifacts/pages/``.  The SVG builder is pure and is tested in-process.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.loadtests.test_locust import KEY, LOCUSTFILE, clean_env, free_port
from tests.loadtests.test_locust import server as server
from tests.pages.conftest import VIEWPORTS, screenshots

sys.path.insert(0, str(LOCUSTFILE.parent))
from livecast_locust import webui


class Lines:
    """A subprocess's output, read by a thread; ``wait_for`` blocks on a condition."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc, self.lines, self.eof = proc, [], False
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        with self.cond:
            ok = self.cond.wait_for(lambda: self.eof or any(text in x for x in self.lines),
                                    timeout)
            if not ok or not any(text in x for x in self.lines):
                raise AssertionError(f"no {text!r}:\n{''.join(self.lines)}")


@pytest.fixture
def web_locust(server: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    args = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--autostart",
            "--autoquit", "5", "-u", "30", "-r", "15", "-t", "40s", "--host", server,
            "--web-host", "127.0.0.1", "--web-port", str(port),
            "--room-rate", "4", "--room-burst", "4",
            "--mix", "viewer=20,chatter=4,liker=4,gifter=2", "--chat-rate", "0.25",
            "--like-burst", "8", "--like-every", "2", "--gift-rate", "1"]
    proc = subprocess.Popen(args, env=clean_env(LIVECAST_SECRET_KEY=KEY), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = Lines(proc)
    try:
        lines.wait_for("Starting web interface")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        lines.thread.join(timeout=30)
        assert proc.stdout is not None
        proc.stdout.close()


def test_livecast_tab_chart_and_csv_in_the_web_ui(web_locust: str, browser: Browser) -> None:
    page = browser.new_page(viewport=VIEWPORTS["desktop"])
    try:
        page.goto(f"{web_locust}/?tab={webui.TAB}")
        low = page.locator("tr", has=page.locator("td", has_text=re.compile(r"^Low$")))
        drop = low.locator("td").nth(2)  # Priority, Sent/s, Drop %
        expect(drop).to_have_text(re.compile(r"^(?!0$)[0-9.]+$"), timeout=30_000)
        high = page.locator("tr", has=page.locator("td", has_text=re.compile(r"^High$")))
        expect(high.locator("td").nth(2)).to_have_text("0")
        expect(page.get_by_text("seq gaps seen by members (one per jump)")).to_be_visible()
        expect(low.locator("td").nth(3)).to_have_text(re.compile(r"^[0-9.]+$"))  # e2e p50
        screenshots(page, "locust-livecast-tab")

        page.set_viewport_size(VIEWPORTS["desktop"])
        page.goto(f"{web_locust}/livecast/chart")
        for prio in ("High", "Normal", "Low"):
            line = page.locator(f"polyline[stroke='{webui.COLORS[prio]}']")
            expect(line.first).to_be_attached(timeout=20_000)
        screenshots(page, "locust-latency-chart")

        with urllib.request.urlopen(f"{web_locust}/livecast/csv", timeout=10) as resp:
            rows = resp.read().decode().splitlines()
        assert rows[0].split(",")[:5] == ["Priority", "Sent", "Failed", "Dropped", "Drop %"]
        assert [r.split(",")[0] for r in rows[1:]] == ["High", "Normal", "Low", "Lowest"]
    finally:
        page.close()


def test_svg_axis_is_round_and_every_priority_is_drawn() -> None:
    samples: list[webui.Sample] = [
        (100.0 + 2 * i, {"High": (20.0, 40.0), "Normal": (30.0, 90.0 + i),
                         "Low": (900.0, 1100.0), "Lowest": (None, None)})
        for i in range(5)]
    out = webui.svg(samples)
    assert out.startswith("<svg") and out.endswith("</svg>")
    for prio in ("High", "Normal", "Low"):
        assert out.count(f'stroke="{webui.COLORS[prio]}" stroke-width="2"') == 2  # p50, p99
    assert f'stroke="{webui.COLORS["Lowest"]}" stroke-width="2"' not in out
    ticks = [float(t) for t in re.findall(r'text-anchor="end">([0-9.e+]+)<', out)]
    assert ticks[0] == 0 and ticks[-1] >= 1100
    steps = {round(b - a, 6) for a, b in itertools.pairwise(ticks)}
    assert len(steps) == 1 and re.fullmatch(r"(1|2|5)0*(\.0)?", f"{steps.pop():g}")
    assert webui.svg([]).endswith("</svg>")  # no samples yet: an empty chart
