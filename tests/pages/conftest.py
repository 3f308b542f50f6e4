"""Real pages in real headless Chromium against real servers.

``livecast serve`` and ``livecast counter`` run as subprocesses on loopback
ports, exactly as an operator starts them (the server on the development key,
so the demo room exists and the page gets UserSigs from ``/dev/usersig``).
Chromium is Debian's (``/usr/bin/chromium``), driven by Playwright's sync API;
Playwright never downloads a browser.  Screenshots go to ``artifacts/pages/``
in the repository root (git-ignored).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Locator,
    Page,
    expect,
    sync_playwright,
)

from livecast.core.usersig import mint

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "pages"
PHONE = {"width": 390, "height": 760}
VIEWPORTS = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 800}}
SDKAPPID = 1400000000
START_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def screenshot(page: Page, name: str, full_page: bool = False) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    print(f"screenshot: {path}")
    return path


def screenshots(page: Page, name: str) -> list[Path]:
    """``name-phone.png`` and ``name-desktop.png``: the page at both viewports
    (390×844 and 1280×800); the page is left at the desktop size."""
    paths = []
    for label, size in VIEWPORTS.items():
        page.set_viewport_size(size)
        page.evaluate("() => new Promise((ok) => requestAnimationFrame(() => "
                      "requestAnimationFrame(() => ok(null))))")
        paths.append(screenshot(page, f"{name}-{label}"))
    return paths


class Proc:
    """A livecast subprocess; its output is collected by a reader thread so
    that ``wait_for`` can wait for a line without polling."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.lines: list[str] = []
        self.eof = False
        self._cond = threading.Condition()
        self.popen = subprocess.Popen([sys.executable, "-m", "livecast", *args], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True, cwd=ROOT)
        self._reader = threading.Thread(target=self._read, name=f"{name}-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self.eof = True
            self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not any(text in line for line in self.lines):
                left = deadline - time.monotonic()
                if self.eof or left <= 0:
                    why = "exited" if self.eof else f"printed no {text!r} in {timeout:g} s"
                    raise AssertionError(f"{self.name} {why}:\n{''.join(self.lines)}")
                self._cond.wait(left)

    def kill(self) -> None:
        """SIGKILL: no graceful close, the way a crash looks to clients."""
        self.popen.kill()
        self._reap()

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        self._reap()

    def _reap(self) -> None:
        self.popen.wait()
        self._reader.join(10)
        if self.popen.stdout is not None:
            self.popen.stdout.close()


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any LIVECAST_* of the caller's, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECAST_")}
    env.update(extra)
    return env


def start_server(port: int, key_file: Path, **extra: str) -> Proc:
    extra.setdefault("LIVECAST_DATA_DIR", str(key_file.parent / f"data-{port}"))
    env = clean_env(LIVECAST_PORT=str(port), LIVECAST_DEV_KEY_FILE=str(key_file),
                    LIVECAST_SHUTDOWN_GRACE="1", **extra)
    proc = Proc(f"livecast serve :{port}", ["serve"], env)
    proc.wait_for("livecast listening on")
    return proc


def start_counter(port: int, api_port: int, key_file: Path) -> Proc:
    env = clean_env(LIVECAST_COUNTER_PORT=str(port), LIVECAST_DEV_KEY_FILE=str(key_file),
                    LIVECAST_COUNTER_API=f"http://127.0.0.1:{api_port}",
                    LIVECAST_COUNTER_MIN_S="1", LIVECAST_COUNTER_MAX_S="1.5")
    proc = Proc(f"livecast counter :{port}", ["counter"], env)
    proc.wait_for("livecast counter listening on")
    return proc


@dataclass
class Served:
    """A server on its own port and key (the development key file unless ``key`` is set)."""

    proc: Proc
    port: int
    key_file: Path
    key: str = ""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def secret(self) -> str:
        return self.key or self.key_file.read_text().strip()

    def rest(self, service: str, command: str, body: dict[str, object]) -> dict[str, object]:
        """A Tencent-style REST call as the app admin; returns the reply envelope."""
        query = urllib.parse.urlencode({
            "sdkappid": SDKAPPID, "identifier": "administrator", "random": 1,
            "usersig": mint(SDKAPPID, self.secret(), "administrator", time.time(), 600),
            "contenttype": "json"})
        req = urllib.request.Request(f"{self.base}/v4/{service}/{command}?{query}",
                                     data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=5) as resp:
            reply: dict[str, object] = json.load(resp)
        assert reply["ErrorCode"] == 0, reply
        return reply


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A server on the development key, without webhooks."""
    key_file = tmp_path_factory.mktemp("key") / "dev-key"
    port = free_port()
    proc = start_server(port, key_file)
    yield Served(proc, port, key_file)
    proc.stop()


@dataclass
class Stack:
    """A server on the development key whose callbacks go to a like counter."""

    server: Proc
    counter: Proc
    port: int
    counter_port: int
    key_file: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    key_file = tmp_path_factory.mktemp("key") / "dev-key"
    port, counter_port = free_port(), free_port()
    counter = start_counter(counter_port, port, key_file)
    server = start_server(port, key_file,
                          LIVECAST_CALLBACK_URL=f"http://127.0.0.1:{counter_port}/callback")
    yield Stack(server, counter, port, counter_port, key_file)
    server.stop()
    counter.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium per module: Playwright's sync API keeps its event loop
    marked running in this thread while it is alive, which would stop the
    asyncio tests of other modules; modules with pages hold sync tests only."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `sh scripts/system-deps` "
                    "(the README's test command does)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@dataclass
class Tab:
    """A page in its own browser context, with what its console said."""

    page: Page
    errors: list[str] = field(default_factory=list)

    def on_console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error":
            self.errors.append(msg.text)

    def csp_violations(self) -> list[str]:
        return [e for e in self.errors if "Content Security Policy" in e]


OpenTab = Callable[..., Tab]


@pytest.fixture
def open_tab(browser: Browser) -> Iterator[OpenTab]:
    """``open_tab(url, viewport=None)``: a new page in a fresh context (its own storage)."""
    contexts: list[BrowserContext] = []

    def open_(url: str, viewport: dict[str, int] | None = None) -> Tab:
        ctx = browser.new_context(viewport=viewport or {"width": 1100, "height": 800})
        contexts.append(ctx)
        tab = Tab(ctx.new_page())
        tab.page.on("console", tab.on_console)
        tab.page.on("pageerror", lambda exc: tab.errors.append(f"pageerror: {exc}"))
        tab.page.goto(url)
        return tab

    yield open_
    for ctx in contexts:
        ctx.close()


def join_room(tab: Tab, name: str) -> None:
    """Pick a name and join the room the page shows; waits until live."""
    page = tab.page
    expect(page.locator("body[data-ready=true]")).to_be_attached()
    page.get_by_test_id("name-input").fill(name)
    page.get_by_test_id("join-button").click()
    expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "open")
    expect(page.get_by_test_id("message-input")).to_be_visible()


def send_text(page: Page, text: str) -> None:
    page.get_by_test_id("message-input").fill(text)
    page.get_by_test_id("send-button").click()


def message(page: Page, text: str) -> Locator:
    """The message-list child holding ``text``."""
    return page.get_by_test_id("message-list").locator(":scope > *", has_text=text)
