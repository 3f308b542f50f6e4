"""A page on another origin loads livecast.js and a development UserSig from
a livecast server that lists its origin in LIVECAST_ALLOWED_ORIGINS, and logs
in over the WebSocket; a page on an origin not listed cannot.  Real Chromium
enforces CORS here, preflight included (the UserSig request is sent as JSON).

The other origin is a second HTTP server on loopback (another port is another
origin), serving one page; both are on loopback so that the browser's local
network access rules do not come into it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.pages.conftest import OpenTab, Served, free_port, start_server

APP_PAGE = "<!doctype html><title>app</title><p>an app on its own origin</p>"

CROSS = """
  const base = BASE;
  const out = {};
  try {
    const lc = await import(base + "/static/livecast.js");
    out.imported = true;
    const r = await fetch(base + "/dev/usersig", {method: "POST",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify({userId: "cross-user"})});
    const sig = await r.json();
    const c = new lc.LivecastClient({url: base.replace("http", "ws") + "/v1/ws",
                                     sdkAppId: sig.sdkAppId, userId: "cross-user",
                                     userSig: sig.userSig});
    await c.connect();
    out.joined = (await c.join("demo")).code;
    c.close();
  } catch (err) {
    out.error = String(err);
  }
  return out;
"""


class AppPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = APP_PAGE.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def app_origin() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), AppPage)
    thread = threading.Thread(target=httpd.serve_forever, name="app-origin", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(10)


@pytest.fixture(scope="module")
def listed() -> Iterator[str]:
    yield from app_origin()


@pytest.fixture(scope="module")
def unlisted() -> Iterator[str]:
    yield from app_origin()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, listed: str) -> Iterator[Served]:
    """A development server that shares with the ``listed`` origin only."""
    key_file: Path = tmp_path_factory.mktemp("key") / "dev-key"
    port = free_port()
    proc = start_server(port, key_file, LIVECAST_ALLOWED_ORIGINS=listed)
    yield Served(proc, port, key_file)
    proc.stop()


def run_from(open_tab: OpenTab, origin: str, served: Served) -> dict[str, object]:
    page = open_tab(origin + "/app").page
    got: dict[str, object] = page.evaluate(
        f"async () => {{ const BASE = {served.base!r}; {CROSS} }}")
    return got


def test_a_listed_origin_loads_the_client_gets_a_usersig_and_logs_in(
        shared: Served, listed: str, open_tab: OpenTab) -> None:
    assert run_from(open_tab, listed, shared) == {
        "imported": True, "joined": 0}


def test_an_origin_not_listed_cannot_load_the_client(
        shared: Served, unlisted: str, open_tab: OpenTab) -> None:
    got = run_from(open_tab, unlisted, shared)
    assert "imported" not in got and "error" in got
