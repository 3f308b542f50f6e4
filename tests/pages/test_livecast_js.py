"""livecast.js, the ES module client, running in Chromium against a real server;
and the room page's like total, which reads both places a backend may keep it."""

from __future__ import annotations

import json
import re
import socket
import time

from playwright.sync_api import WebSocketRoute, expect

from livecast.core.usersig import mint
from livecast.errors import Code
from tests.pages.conftest import OpenTab, Served, free_port, join_room

IMPORT = 'const lc = await import("/static/livecast.js");'

BACKOFF = IMPORT + """
  const top = (a) => lc.backoff(a, 500, 15000, () => 0.999999);
  const draws = Array.from({length: 2000}, () => lc.backoff(4, 500, 15000));
  return {top: [0, 1, 2, 3, 4, 5, 10].map(top), zero: lc.backoff(6, 500, 15000, () => 0),
          min: Math.min(...draws), max: Math.max(...draws),
          distinct: new Set(draws).size};
"""

GAPS = IMPORT + """
  const c = new lc.LivecastClient({sdkAppId: 1});
  const gaps = [], seen = [];
  c.on("gap", (g) => gaps.push(g));
  c.on("message", (m) => seen.push(m.seq));
  c.rooms.set("r", 0);
  const push = (...seqs) => c.receive(JSON.stringify(
      {op: "msgs", groupId: "r", msgs: seqs.map((seq) => ({seq, msgBody: []}))}));
  push(7, 8); push(9, 12); push(13); push(1, 2); push(4);
  return {gaps, seen};
"""

SESSION = IMPORT + """
  const sig = await (await fetch("/dev/usersig", {method: "POST",
      body: JSON.stringify({userId: "js-user"})})).json();
  const c = new lc.LivecastClient({sdkAppId: sig.sdkAppId, userId: "js-user",
                                   userSig: sig.userSig});
  window.events = [];
  for (const name of ["state", "message", "tip", "counters", "groupInfo", "online"]) {
    c.on(name, (d) => window.events.push({name, ...d}));
  }
  await c.connect();
  await c.setMyProfile({nick: "JS <User>"});
  const joined = await c.join("demo");
  const sent = await c.send("demo", lc.custom({type: "gift"}, "gift"), {priority: "High"});
  const bad = await c.send("demo", lc.text("x"), {priority: "Urgent"});
  window.client = c;
  return {joined: joined.code, seq: sent.msgSeq, bad: bad.code, state: c.state};
"""

SILENT = IMPORT + """
  const sig = await (await fetch("/dev/usersig", {method: "POST",
      body: JSON.stringify({userId: "quiet-net"})})).json();
  const c = new lc.LivecastClient({sdkAppId: sig.sdkAppId, userId: "quiet-net",
      userSig: sig.userSig, pingEvery: 200, timeout: 400, baseDelay: 50});
  const states = [], rejoins = [];
  c.on("state", (s) => states.push([s.state, s.code ?? null]));
  c.on("rejoin", (r) => rejoins.push([r.groupId, r.reply.code]));
  await c.connect();
  await c.join("demo");
  await new Promise((resolve) => c.on("state", (s) => {
    if (s.state === "open") resolve();
  }));
  c.close();
  return {states, rejoins};
"""


def test_backoff_is_exponential_with_full_jitter(plain: Served, open_tab: OpenTab) -> None:
    tab = open_tab(plain.base + "/")
    got = tab.page.evaluate(f"async () => {{ {BACKOFF} }}")
    tops = [round(x) for x in got["top"]]
    assert tops == [500, 1000, 2000, 4000, 8000, 15000, 15000]
    assert got["zero"] == 0
    assert 0 <= got["min"] < 800 and 7200 < got["max"] < 8000 and got["distinct"] > 1900


def test_seq_gaps_are_reported_and_a_restart_is_not_a_gap(
        plain: Served, open_tab: OpenTab) -> None:
    tab = open_tab(plain.base + "/")
    got = tab.page.evaluate(f"async () => {{ {GAPS} }}")
    assert got["seen"] == [7, 8, 9, 12, 13, 1, 2, 4]
    assert got["gaps"] == [
        {"groupId": "r", "expected": 10, "got": 12, "missed": 2},
        {"groupId": "r", "expected": 3, "got": 4, "missed": 1},
    ]


def test_client_sends_with_priority_and_emits_messages_tips_counters(
        plain: Served, open_tab: OpenTab) -> None:
    tab = open_tab(plain.base + "/")
    page = tab.page
    got = page.evaluate(f"async () => {{ {SESSION} }}")
    assert got == {"joined": 0, "seq": got["seq"], "bad": 10004, "state": "open"}
    assert got["seq"] > 0
    plain.rest("group_open_http_svc", "update_group_counter",
               {"GroupId": "demo", "GroupCounter": [{"Key": "viewers", "Value": 3}],
                "Mode": "Set"})
    page.wait_for_function("""() => ["message", "counters"].every(
        (n) => window.events.some((e) => e.name === n))
        && window.events.some((e) => e.name === "online")
        && window.events.some((e) => e.name === "tip" && e.type === "memberJoin")""")
    events = page.evaluate("window.events")
    msg = next(e for e in events if e["name"] == "message")
    assert (msg["groupId"], msg["seq"], msg["priority"], msg["from"], msg["nick"]) == (
        "demo", got["seq"], "High", "js-user", "JS <User>")
    assert any(e["name"] == "tip" and e["type"] == "memberJoin" and "js-user" in e["members"]
               for e in events)
    online = next(e for e in events if e["name"] == "online")
    assert online["groupId"] == "demo" and online["onlineMemberNum"] >= 1
    counters = next(e for e in events if e["name"] == "counters")
    assert counters["counters"] == [{"Key": "viewers", "Value": 3}]
    assert [e["state"] for e in events if e["name"] == "state"] == ["connecting", "open"]
    page.evaluate("window.client.close()")
    assert page.evaluate("window.client.state") == "closed"
    assert tab.errors == []


def test_like_total_follows_app_defined_data_and_the_like_counter(
        plain: Served, open_tab: OpenTab) -> None:
    """Whichever place the backend writes (docs/counter.md targets), the page shows it."""
    tab = open_tab(plain.base + "/")
    join_room(tab, "Counter Watcher")
    total = tab.page.get_by_test_id("like-total")
    plain.rest("group_open_http_svc", "modify_group_base_info",
               {"GroupId": "demo", "AppDefinedData": [{"Key": "likes", "Value": "1234"}]})
    expect(total).to_have_text("1234")
    plain.rest("group_open_http_svc", "update_group_counter",
               {"GroupId": "demo", "GroupCounter": [{"Key": "likes", "Value": 1300}],
                "Mode": "Set"})
    expect(total).to_have_text("1300")
    late = open_tab(plain.base + "/")
    join_room(late, "Late Joiner")
    expect(late.page.get_by_test_id("like-total")).to_have_text("1300")
    assert tab.errors == [] and late.errors == []


def test_a_connection_that_stops_answering_is_replaced(plain: Served, open_tab: OpenTab) -> None:
    """The first ping never reaches the server (a dead network that sends no
    close): the client gives that socket up, connects again and re-joins."""
    tab = open_tab(plain.base + "/")
    swallowed: list[str] = []

    def route(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()

        def to_server(frame: str | bytes) -> None:
            if isinstance(frame, str) and '"op":"ping"' in frame and not swallowed:
                swallowed.append(frame)
                return
            server.send(frame)

        ws.on_message(to_server)

    tab.page.route_web_socket(re.compile(r"/v1/ws$"), route)
    got = tab.page.evaluate(f"async () => {{ {SILENT} }}")
    assert len(swallowed) == 1
    assert got["states"] == [["connecting", None], ["open", None], ["reconnecting", 4000],
                             ["reconnecting", None], ["open", None], ["closed", 1000]]
    assert got["rejoins"] == [["demo", 0]]


FIRST_ATTEMPT = IMPORT + """
  const opens = [];
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(url) { super(url); opens.push(url); }
  };
  const attempt = async (opts) => {
    const c = new lc.LivecastClient({sdkAppId: 1400000000, userId: "u1", userSig: "x",
                                     baseDelay: 10, ...opts});
    const states = [];
    c.on("state", (s) => states.push(s.state));
    try {
      await c.connect();
      return {ok: true};
    } catch (err) {
      return {error: err instanceof Error, name: err.name, code: err.code, info: err.info,
              state: c.state, states, ws: c.ws === null};
    }
  };
  const out = {};
  for (const [name, opts] of Object.entries(CASES)) {
    opens.length = 0;
    out[name] = {...await attempt(opts), opens: opens.length};
  }
  window.WebSocket = Native;
  return out;
"""


def test_connect_rejects_with_an_error_after_one_bounded_attempt(
        plain: Served, open_tab: OpenTab) -> None:
    """Wrong port, wrong path, a server that never answers, a refused UserSig:
    connect() rejects with an Error carrying the code, and retries nothing."""
    tab = open_tab(plain.base + "/")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()   # accepts TCP, never answers the upgrade
    expired = mint(1400000000, plain.secret(), "u1", time.time() - 7200, 60)
    cases = {
        "port": {"url": f"ws://127.0.0.1:{free_port()}/v1/ws"},
        "path": {"url": f"ws://127.0.0.1:{plain.port}/v2/nowhere"},
        "silent": {"url": f"ws://127.0.0.1:{silent.getsockname()[1]}/v1/ws",
                   "connectTimeout": 300},
        "garbage": {"url": f"ws://127.0.0.1:{plain.port}/v1/ws"},
        "expired": {"url": f"ws://127.0.0.1:{plain.port}/v1/ws", "userSig": expired},
    }
    try:
        got = tab.page.evaluate(
            f"async () => {{ const CASES = {json.dumps(cases)}; {FIRST_ATTEMPT} }}")
    finally:
        silent.close()
    for name, result in got.items():
        assert result["error"] is True and result["name"] == "ConnectError", (name, result)
        assert result["state"] == "closed" and result["ws"] is True, (name, result)
        assert result["states"] == ["connecting", "closed"], (name, result)
        assert result["opens"] == 1, (name, result)
    assert got["port"]["code"] == 1006 and got["path"]["code"] == 1006
    assert got["silent"]["code"] == 4000
    assert got["garbage"]["code"] == Code.SIG_INVALID
    assert got["expired"]["code"] == Code.SIG_EXPIRED and got["expired"]["info"]


GET_SIG = IMPORT + """
  const asked = [];
  const c = new lc.LivecastClient({sdkAppId: 1400000000, userId: "late-sig",
    getUserSig: async (userId) => {
      asked.push(userId);
      const r = await fetch("/dev/usersig", {method: "POST", body: JSON.stringify({userId})});
      return (await r.json()).userSig;
    }});
  await c.connect();
  const state = c.state;
  c.close();
  return {asked, state};
"""


def test_connect_asks_get_user_sig_when_it_has_no_usersig(
        plain: Served, open_tab: OpenTab) -> None:
    tab = open_tab(plain.base + "/")
    assert tab.page.evaluate(f"async () => {{ {GET_SIG} }}") == {
        "asked": ["late-sig"], "state": "open"}


TRY_LATER = IMPORT + """
  const sig = await (await fetch("/dev/usersig", {method: "POST",
      body: JSON.stringify({userId: "admitted-later"})})).json();
  const c = new lc.LivecastClient({sdkAppId: sig.sdkAppId, userId: "admitted-later",
      userSig: sig.userSig, baseDelay: 50});
  const states = [];
  c.on("state", (s) => states.push([s.state, s.code ?? null, s.delay ?? null]));
  await c.connect();
  await c.join("demo");
  await new Promise((resolve) => c.on("state", (s) => {
    if (s.state === "open") resolve();
  }));
  c.close();
  return {states, parsed: [lc.retryAfter("too many connects: retry after 7 s"),
                           lc.retryAfter("flood"), lc.retryAfter(undefined)]};
"""


def test_a_4013_close_waits_its_retry_hint_before_reconnecting(
        plain: Served, open_tab: OpenTab) -> None:
    """Admission control (docs/protocol.md): the reason's "retry after N s"
    comes first, the jittered backoff on top."""
    tab = open_tab(plain.base + "/")
    routes: list[WebSocketRoute] = []

    def route(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        first = not routes
        routes.append(ws)

        def to_page(frame: str | bytes) -> None:
            ws.send(frame)
            if first and isinstance(frame, str) and '"onlineMemberNum"' in frame:
                ws.close(code=4013, reason="too many logins: retry after 2 s")

        server.on_message(to_page)

    tab.page.route_web_socket(re.compile(r"/v1/ws$"), route)
    got = tab.page.evaluate(f"async () => {{ {TRY_LATER} }}")
    assert got["parsed"] == [7, 0, 0]
    reconnecting = [s for s in got["states"] if s[0] == "reconnecting" and s[1] == 4013]
    assert len(reconnecting) == 1
    assert 2000 <= reconnecting[0][2] < 2050
    assert got["states"][-2:] == [["open", None, None], ["closed", 1000, None]]
    assert len(routes) == 2
