"""The webhook wiring end to end: a real livecast server on loopback calls a
real aiohttp app playing the business backend (``tests/webhooks/conftest.py``).

Covers docs/webhooks.md and spec/tencent-reference.md section 3: when each
callback fires, its query string and body, how each before-send and
before-join reply is applied, the failure policy, and a hung or dead backend.

Ordering: unless a test says otherwise the server runs with one after-event
worker (``callback_concurrency=2``), so after-events reach the backend in the
order they were posted.  "X was never reported" is then checked by posting a
later event Y and awaiting it: had X been posted, it would have arrived
first.  Nothing sleeps; every wait is on a recorded callback or a reply.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from livecast.client import Client, text
from livecast.core import callbacks as cb
from livecast.core.signing import tencent_sign_ok
from livecast.errors import Close, Code
from livecast.gateway.ws import MAX_WAITING
from livecast.settings import Secret
from tests.backplane.conftest import until_true
from tests.conftest import SDKAPPID, Live, LiveFactory, sig
from tests.webhooks.conftest import Backend, Replier, Seen, code, serve_callbacks, status

TOKEN = "wiring-token"
GID = "live-1"
SVC = "group_open_http_svc"
HEAD = ["SdkAppid", "CallbackCommand", "contenttype", "ClientIP", "OptPlatform"]
Start = Callable[..., Awaitable[Live]]


@pytest.fixture
async def start(business: Backend, live_factory: LiveFactory) -> AsyncIterator[Start]:
    """A livecast server calling ``business``; overrides go to its Settings.
    At the end every callback's query string is checked (3.1, 3.3)."""
    async def go(**overrides: Any) -> Live:
        settings: dict[str, Any] = {
            "callback_url": business.url, "callback_token": Secret(TOKEN),
            "tip_interval": 0.05, "callback_concurrency": 2, "callback_breaker": 0,
            **overrides}
        return await live_factory(**settings)
    yield go
    for seen in business.seen:
        query = [(k, v) for k, v in seen.query if k != "tenant"]  # the URL's own query
        web_only = seen.command in (cb.BEFORE_JOIN, cb.AFTER_JOIN, cb.AFTER_EXIT) and (
            seen.body.get("ExitType") != "Kicked")
        check_query(Seen(query, seen.raw), "Web" if web_only else seen.q["OptPlatform"],
                    client_ip=None)
        assert seen.q["OptPlatform"] in ("Web", "RESTAPI")


# ------------------------------------------------------------------ helpers
async def members(live: Live, gid: str, *users: str) -> list[Client]:
    return [await live.client(u, join=gid) for u in users]


def by_text(table: dict[str, Replier]) -> Replier:
    """Before-send replies chosen by the message's text (default: allow)."""
    def reply(seen: Seen) -> Any:
        content = seen.body["MsgBody"][0]["MsgContent"]
        return table.get(content.get("Text", ""), code(0))(seen)
    return reply


def by_requestor(table: dict[str, Replier]) -> Replier:
    return lambda seen: table.get(seen.body["Requestor_Account"], code(0))(seen)


def texts(push: dict[str, Any]) -> list[str]:
    return [m["msgBody"][0]["MsgContent"]["Text"] for m in push["msgs"]]


async def received(c: Client, n: int) -> list[dict[str, Any]]:
    """The next ``n`` delivered messages of ``c`` (across ``msgs`` frames)."""
    got: list[dict[str, Any]] = []
    while len(got) < n:
        got += (await c.next_push("msgs"))["msgs"]
    assert len(got) == n, got
    return got


def accounts(seen: Seen, key: str) -> list[str]:
    return [m["Member_Account"] for m in seen.body[key]]


def check_query(seen: Seen, platform: str, client_ip: str | None = "127.0.0.1") -> None:
    """Tencent's query string (3.1, 3.3), Sign checked against the token."""
    keys = [k for k, _ in seen.query]
    assert keys == [*HEAD, "Sign", "RequestTime"], keys
    q = seen.q
    assert (q["SdkAppid"], q["contenttype"], q["OptPlatform"]) == (str(SDKAPPID), "json", platform)
    assert q["CallbackCommand"] == seen.body["CallbackCommand"]
    if client_ip is not None:
        assert q["ClientIP"] == client_ip
    assert tencent_sign_ok(TOKEN, q["Sign"], q["RequestTime"], time.time(), window=300)
    assert not tencent_sign_ok(TOKEN + "x", q["Sign"], q["RequestTime"], time.time())


def event_time_ok(seen: Seen, t0: int, t1: int) -> None:
    stamp = seen.body["EventTime"]
    assert isinstance(stamp, int) and t0 <= stamp <= t1, (t0, stamp, t1)


def ms() -> int:
    return int(time.time() * 1000)


async def metrics(live: Live) -> dict[tuple[str, str], float]:
    """``/metrics`` as {(sample name, command label): value}."""
    async with aiohttp.ClientSession() as http, http.get(live.url("/metrics")) as resp:
        assert resp.status == 200
        page = await resp.text()
    return {(s.name, s.labels.get("command", "")): s.value
            for family in text_string_to_metric_families(page) for s in family.samples}


def message_fields(sender: str, operator: str, random: int, body: list[dict[str, Any]],
                   ccd: str, priority: str) -> dict[str, Any]:
    return {"GroupId": GID, "Type": "AVChatRoom", "From_Account": sender,
            "Operator_Account": operator, "Random": random, "OnlineOnlyFlag": 0,
            "MsgBody": body, "CloudCustomData": ccd, "MsgPriority": priority}


def without_time(seen: Seen) -> dict[str, Any]:
    return {k: v for k, v in seen.body.items() if k != "EventTime"}


async def marker(live: Live, business: Backend, sender: Client, random: int = 999) -> Seen:
    """Send a plain message and await its after-send (see the module's "Ordering")."""
    r = await sender.send(GID, text("marker"), random=random)
    assert r["code"] == 0 and r["msgSeq"] > 0, r
    [seen] = await business.wait_count(cb.AFTER_SEND, 1, Random=random)
    return seen


# ------------------------------------------------------- 1. WebSocket sends
async def test_an_allowed_send_is_delivered_and_reported_before_and_after(
        start: Start, business: Backend) -> None:
    live = await start()
    await live.room(GID)
    alice, bob = await members(live, GID, "alice", "bob")
    t0 = ms()
    r = await alice.send(GID, text("hello"), priority="High", random=7, cloud_custom_data="cc")
    assert (r["code"], r["dropReason"]) == (0, "") and r["msgSeq"] > 0
    [msg] = await received(bob, 1)
    assert (msg["seq"], msg["from"], msg["random"]) == (r["msgSeq"], "alice", 7)
    assert (msg["msgBody"], msg["cloudCustomData"]) == (text("hello"), "cc")
    [before] = business.of(cb.BEFORE_SEND)
    [after] = await business.wait_count(cb.AFTER_SEND, 1)
    t1 = ms()
    fields = message_fields("alice", "alice", 7, text("hello"), "cc", "High")
    assert without_time(before) == {"CallbackCommand": cb.BEFORE_SEND, **fields}
    assert without_time(after) == {"CallbackCommand": cb.AFTER_SEND, **fields,
                                   "MsgSeq": r["msgSeq"], "MsgTime": r["msgTime"] // 1000}
    for seen in (before, after):
        check_query(seen, "Web")
        event_time_ok(seen, t0, t1)
    assert before.body["EventTime"] <= after.body["EventTime"]
    assert next(iter(before.body)) == "CallbackCommand"


@pytest.mark.parametrize(("reply", "body", "ccd"), [
    ({"MsgBody": text("replaced")}, text("replaced"), "orig"),
    ({"CloudCustomData": "new-cc"}, text("hello"), "new-cc"),
    ({"MsgBody": text("both"), "CloudCustomData": ""}, text("both"), ""),
    ({"MsgBody": None, "CloudCustomData": None}, text("hello"), "orig"),  # null: no change
], ids=["body", "cloud-custom-data", "both", "nulls"])
async def test_an_allowing_reply_may_replace_the_message(
        start: Start, business: Backend, reply: dict[str, Any], body: list[dict[str, Any]],
        ccd: str) -> None:
    business.replies[cb.BEFORE_SEND] = code(0, **reply)
    live = await start()
    await live.room(GID)
    alice, bob = await members(live, GID, "alice", "bob")
    r = await alice.send(GID, text("hello"), random=3, cloud_custom_data="orig")
    assert r["code"] == 0 and r["msgSeq"] > 0
    for member in (alice, bob):
        [msg] = await received(member, 1)
        assert (msg["msgBody"], msg["cloudCustomData"]) == (body, ccd)
    [before] = business.of(cb.BEFORE_SEND)
    assert (before.body["MsgBody"], before.body["CloudCustomData"]) == (text("hello"), "orig")
    [after] = await business.wait_count(cb.AFTER_SEND, 1)
    assert (after.body["MsgBody"], after.body["CloudCustomData"]) == (body, ccd)


async def test_reply_1_refuses_with_10016_and_nothing_is_delivered(
        start: Start, business: Backend) -> None:
    business.replies[cb.BEFORE_SEND] = by_text({"spam": code(1, "no ads here")})
    live = await start()
    await live.room(GID)
    alice, bob = await members(live, GID, "alice", "bob")
    r = await alice.send(GID, text("spam"), random=1)
    assert (r["code"], r["info"]) == (Code.CALLBACK_REJECTED, "no ads here")
    await marker(live, business, alice)
    for member in (alice, bob):
        assert texts(await member.next_push("msgs")) == ["marker"]
    assert business.of(cb.AFTER_SEND, Random=1) == []
    assert business.of(cb.SEND_EXCEPTION) == []


async def test_reply_2_drops_silently_with_drop_reason_callback(
        start: Start, business: Backend) -> None:
    business.replies[cb.BEFORE_SEND] = by_text({"quiet": code(2)})
    live = await start()
    await live.room(GID)
    alice, bob = await members(live, GID, "alice", "bob")
    r = await alice.send(GID, text("quiet"), random=1)
    assert (r["code"], r["msgSeq"], r["dropReason"]) == (0, 0, "Callback")
    await marker(live, business, alice)
    for member in (alice, bob):
        assert texts(await member.next_push("msgs")) == ["marker"]
    assert business.of(cb.AFTER_SEND, Random=1) == []
    assert business.of(cb.SEND_EXCEPTION) == []


@pytest.mark.parametrize("custom", [10100, 10200])
async def test_a_custom_code_and_its_error_info_reach_the_sender(
        start: Start, business: Backend, custom: int) -> None:
    business.replies[cb.BEFORE_SEND] = by_text({"x": code(custom, "level too low")})
    live = await start()
    await live.room(GID)
    alice, bob = await members(live, GID, "alice", "bob")
    r = await alice.send(GID, text("x"), random=1)
    assert (r["code"], r["info"]) == (custom, "level too low")
    await marker(live, business, alice)
    assert texts(await bob.next_push("msgs")) == ["marker"]
    assert business.of(cb.AFTER_SEND, Random=1) == []


UNUSABLE: dict[str, Replier] = {
    "10099": code(10099, "out of range"),
    "10201": code(10201),
    "not-json": status(200, "surely"),
    "http-500": status(500, "boom"),
    "invalid-replacement": code(0, MsgBody=[]),
}


@pytest.mark.parametrize("case", list(UNUSABLE))
async def test_an_unusable_reply_fails_open_by_default(
        start: Start, business: Backend, case: str) -> None:
    business.replies[cb.BEFORE_SEND] = by_text({"hello": UNUSABLE[case]})
    live = await start()
    await live.room(GID)
    alice, bob = await members(live, GID, "alice", "bob")
    r = await alice.send(GID, text("hello"), random=1, cloud_custom_data="cc")
    assert (r["code"], r["dropReason"]) == (0, "") and r["msgSeq"] > 0
    [msg] = await received(bob, 1)
    assert (msg["msgBody"], msg["cloudCustomData"]) == (text("hello"), "cc")  # the original
    [after] = await business.wait_count(cb.AFTER_SEND, 1)
    assert after.body["MsgBody"] == text("hello")
    m = await metrics(live)
    assert m[("livecast_callbacks_failed_total", cb.BEFORE_SEND)] == 1
    assert m[("livecast_callbacks_sent_total", cb.BEFORE_SEND)] == 1


@pytest.mark.parametrize("case", list(UNUSABLE))
async def test_an_unusable_reply_refuses_with_80003_when_fail_closed(
        start: Start, business: Backend, case: str) -> None:
    business.replies[cb.BEFORE_SEND] = by_text({"hello": UNUSABLE[case]})
    live = await start(callback_fail_closed=True)
    await live.room(GID)
    alice, bob = await members(live, GID, "alice", "bob")
    r = await alice.send(GID, text("hello"), random=1)
    assert r["code"] == Code.CALLBACK_FAILED
    await marker(live, business, alice)
    assert texts(await bob.next_push("msgs")) == ["marker"]
    assert business.of(cb.AFTER_SEND, Random=1) == []


async def test_a_backend_timeout_fails_open_or_closed(
        start: Start, business: Backend) -> None:
    business.dead = True  # never answers: every call times out
    live = await start(callback_timeout=0.1, callback_fail_closed=True)
    await live.room(GID)
    open_live = await start(callback_timeout=0.1)
    await open_live.room(GID)
    alice = await live.client("alice")
    r = await alice.join(GID)  # before-join timed out, fail closed
    assert r["code"] == Code.CALLBACK_FAILED
    assert (await alice.send(GID, text("hello")))["code"] == Code.NO_PERMISSION
    [bob] = await members(open_live, GID, "bob")  # failed open: joined
    r = await bob.send(GID, text("hello"), random=1)
    assert r["code"] == 0 and r["msgSeq"] > 0
    m = await metrics(open_live)
    assert m[("livecast_callbacks_timeout_total", cb.BEFORE_SEND)] == 1
    assert m[("livecast_callbacks_timeout_total", cb.BEFORE_JOIN)] == 1


# ------------------------------------------------- 2. rate limit and mute
async def test_rate_limit_drops_are_reported_as_exceptions_and_deliveries_as_after_send(
        start: Start, business: Backend) -> None:
    live = await start(room_rate=4, room_burst=4, max_wait=(5.0, 2.0, 0.3, 0.3))
    await live.room(GID)
    senders = await members(live, GID, "s0", "s1", "s2")
    [viewer] = await members(live, GID, "viewer")
    flood = [s.send(GID, text(f"like {i}-{n}"), priority="Low", random=100 * i + n)
             for n in range(15) for i, s in enumerate(senders)]
    replies = await asyncio.gather(*flood)
    delivered = {r["msgSeq"] for r in replies if r["msgSeq"] > 0}
    dropped = [r for r in replies if r["dropReason"] == "MsgFreqCtrl"]
    assert all(r["code"] == 0 for r in replies)
    assert len(delivered) + len(dropped) == len(flood)
    assert delivered and len(dropped) > len(flood) // 2
    await marker(live, business, viewer, random=5000)  # every earlier after-event arrived
    after = [s for s in business.of(cb.AFTER_SEND) if s.body["Random"] != 5000]
    failed = business.of(cb.SEND_EXCEPTION)
    assert len(after) == len(delivered)
    assert {s.body["MsgSeq"] for s in after} == delivered
    assert len(failed) == len(dropped)
    assert len(business.of(cb.BEFORE_SEND)) == len(flood) + 1  # before rate limiting
    randoms = {s.body["Random"] for s in after} | {s.body["Random"] for s in failed}
    assert randoms == {100 * i + n for n in range(15) for i in range(3)}  # each exactly once
    for seen in failed:
        assert seen.body["ErrorCode"] == Code.FREQ_LIMIT
        assert seen.body["ErrorInfo"] == "msg count exceeds limit,please retry later"
        assert seen.body["MsgPriority"] == "Low" and seen.body["Operator_Account"] in (
            "s0", "s1", "s2")
        check_query(seen, "Web")
    m = await metrics(live)
    assert m[("livecast_callbacks_sent_total", cb.SEND_EXCEPTION)] == len(dropped)


async def test_a_muted_sender_gets_10017_and_an_exception_without_before_send(
        start: Start, business: Backend) -> None:
    live = await start()
    await live.room(GID)
    alice, bob = await members(live, GID, "alice", "bob")
    r = await live.rest(SVC, "forbid_send_msg", {"GroupId": GID, "Members_Account": ["alice"],
                                                 "MuteTime": 600})
    assert r["ErrorCode"] == 0
    r = await alice.send(GID, text("hush"), random=41)
    assert r["code"] == Code.MUTED
    assert business.of(cb.BEFORE_SEND) == []
    r = await live.rest(SVC, "send_group_msg", {"GroupId": GID, "From_Account": "alice",
                                                "Random": 42, "MsgBody": text("rest hush")})
    assert r["ErrorCode"] == Code.MUTED
    assert business.of(cb.BEFORE_SEND) == []
    ws, rest = await business.wait_count(cb.SEND_EXCEPTION, 2)
    assert without_time(ws) == {"CallbackCommand": cb.SEND_EXCEPTION,
                                **message_fields("alice", "alice", 41, text("hush"), "", "Normal"),
                                "ErrorCode": Code.MUTED, "ErrorInfo": ws.body["ErrorInfo"]}
    assert ws.body["ErrorInfo"]
    check_query(ws, "Web")
    assert (rest.body["ErrorCode"], rest.body["Random"]) == (Code.MUTED, 42)
    assert (rest.body["From_Account"], rest.body["Operator_Account"]) == ("alice",
                                                                          "administrator")
    check_query(rest, "RESTAPI")
    await marker(live, business, bob)
    assert texts(await bob.next_push("msgs")) == ["marker"]


# ------------------------------------------------------- 3. REST sends
def rest_msg(random: int, words: str = "from the backend", **fields: Any) -> dict[str, Any]:
    return {"GroupId": GID, "From_Account": "alice", "Random": random,
            "MsgBody": text(words), **fields}


async def test_rest_send_reports_the_admin_as_operator(start: Start, business: Backend) -> None:
    live = await start()
    await live.room(GID)
    [bob] = await members(live, GID, "bob")
    r = await live.rest(SVC, "send_group_msg", rest_msg(11, MsgPriority="Low",
                                                         CloudCustomData="cc"))
    assert r["ErrorCode"] == 0 and r["MsgSeq"] > 0
    [msg] = await received(bob, 1)
    assert (msg["from"], msg["seq"]) == ("alice", r["MsgSeq"])
    [before] = business.of(cb.BEFORE_SEND)
    [after] = await business.wait_count(cb.AFTER_SEND, 1)
    fields = message_fields("alice", "administrator", 11, text("from the backend"), "cc", "Low")
    assert without_time(before) == {"CallbackCommand": cb.BEFORE_SEND, **fields}
    assert without_time(after) == {"CallbackCommand": cb.AFTER_SEND, **fields,
                                   "MsgSeq": r["MsgSeq"], "MsgTime": r["MsgTime"]}
    check_query(before, "RESTAPI")
    check_query(after, "RESTAPI")
    r = await live.rest(SVC, "send_group_msg", {"GroupId": GID, "Random": 12,
                                                "MsgBody": text("as admin")})
    assert r["ErrorCode"] == 0
    [before] = business.of(cb.BEFORE_SEND, Random=12)
    assert (before.body["From_Account"], before.body["Operator_Account"]) == (
        "administrator", "administrator")


async def test_forbid_callback_control_skips_the_named_callbacks(
        start: Start, business: Backend) -> None:
    live = await start()
    await live.room(GID)
    [bob] = await members(live, GID, "bob")
    cases = {21: ["ForbidBeforeSendMsgCallback"], 22: ["ForbidAfterSendMsgCallback"],
             23: ["ForbidBeforeSendMsgCallback", "ForbidAfterSendMsgCallback"], 24: []}
    for random, forbid in cases.items():
        r = await live.rest(SVC, "send_group_msg",
                            rest_msg(random, f"m{random}", ForbidCallbackControl=forbid))
        assert r["ErrorCode"] == 0 and r["MsgSeq"] > 0, r
    assert [m["msgBody"] for m in await received(bob, 4)] == [text(f"m{n}") for n in cases]
    await business.wait_count(cb.AFTER_SEND, 1, Random=24)  # the last one: all have arrived
    assert sorted(s.body["Random"] for s in business.of(cb.BEFORE_SEND)) == [22, 24]
    assert sorted(s.body["Random"] for s in business.of(cb.AFTER_SEND)) == [21, 24]


async def test_rest_reply_2_answers_drop_reason_callback(start: Start, business: Backend) -> None:
    business.replies[cb.BEFORE_SEND] = by_text({"drop me": code(2)})
    live = await start()
    await live.room(GID)
    [bob] = await members(live, GID, "bob")
    r = await live.rest(SVC, "send_group_msg", rest_msg(31, "drop me"))
    assert (r["ErrorCode"], r["MsgSeq"], r["MsgDropReason"]) == (0, 0, "Callback")
    await marker(live, business, bob)
    assert texts(await bob.next_push("msgs")) == ["marker"]
    assert business.of(cb.AFTER_SEND, Random=31) == []


async def test_a_rest_refusal_is_not_remembered_by_random(
        start: Start, business: Backend) -> None:
    business.replies[cb.BEFORE_SEND] = code(1, "not now")
    live = await start()
    await live.room(GID)
    for attempt in (1, 2):
        r = await live.rest(SVC, "send_group_msg", rest_msg(77))
        assert (r["ErrorCode"], r["ErrorInfo"]) == (Code.CALLBACK_REJECTED, "not now")
        assert len(business.of(cb.BEFORE_SEND, Random=77)) == attempt  # asked again
    business.replies[cb.BEFORE_SEND] = code(0)
    first = await live.rest(SVC, "send_group_msg", rest_msg(77))
    assert first["ErrorCode"] == 0 and first["MsgSeq"] > 0
    again = await live.rest(SVC, "send_group_msg", rest_msg(77))  # admitted: remembered
    assert again["MsgSeq"] == first["MsgSeq"]
    assert len(business.of(cb.BEFORE_SEND, Random=77)) == 3


# ------------------------------------------------------------- 4. joins
async def test_before_join_replies_allow_refuse_or_pass_a_code_on(
        start: Start, business: Backend) -> None:
    business.replies[cb.BEFORE_JOIN] = by_requestor({
        "bob": code(1, "members only"), "carol": code(10150, "buy a ticket"),
        "dave": code(10099)})  # unusable: fails open
    live = await start()
    await live.room(GID)
    clients = {u: await live.client(u) for u in ("alice", "bob", "carol", "dave")}
    t0 = ms()
    answers = {u: await c.join(GID) for u, c in clients.items()}
    t1 = ms()
    assert {u: (a["code"], a["info"]) for u, a in answers.items()} == {
        "alice": (0, ""), "bob": (Code.CALLBACK_REJECTED, "members only"),
        "carol": (10150, "buy a ticket"), "dave": (0, "")}
    assert (await clients["bob"].send(GID, text("hi")))["code"] == Code.NO_PERMISSION
    r = await live.rest(SVC, "get_online_member_num", {"GroupId": GID})
    assert r["OnlineMemberNum"] == 2
    befores = business.of(cb.BEFORE_JOIN)
    assert [s.body["Requestor_Account"] for s in befores] == ["alice", "bob", "carol", "dave"]
    for seen in befores:
        assert without_time(seen) == {"CallbackCommand": cb.BEFORE_JOIN, "GroupId": GID,
                                      "Type": "AVChatRoom",
                                      "Requestor_Account": seen.body["Requestor_Account"],
                                      "ApplyMsg": ""}
        check_query(seen, "Web")
        event_time_ok(seen, t0, t1)
    await business.wait_for(lambda: joined(business) >= {"alice", "dave"})
    assert joined(business) == {"alice", "dave"}


def joined(business: Backend) -> set[str]:
    return {a for s in business.of(cb.AFTER_JOIN) for a in accounts(s, "NewMemberList")}


def exited(business: Backend) -> list[tuple[str, str, str]]:
    """(ExitType, Operator_Account, member) of every exit reported."""
    return [(s.body["ExitType"], s.body["Operator_Account"], a)
            for s in business.of(cb.AFTER_EXIT) for a in accounts(s, "ExitMemberList")]


async def test_guests_cause_no_join_or_exit_callbacks(start: Start, business: Backend) -> None:
    live = await start()
    await live.room(GID)
    guest = await live.client(None, join=GID)
    [alice] = await members(live, GID, "alice")
    await business.wait_count(cb.AFTER_JOIN, 1)
    assert (await guest.quit(GID))["code"] == 0
    assert (await alice.quit(GID))["code"] == 0
    await business.wait_count(cb.AFTER_EXIT, 1)
    assert [s.body["Requestor_Account"] for s in business.of(cb.BEFORE_JOIN)] == ["alice"]
    assert [accounts(s, "NewMemberList") for s in business.of(cb.AFTER_JOIN)] == [["alice"]]
    assert exited(business) == [("Quit", "alice", "alice")]


async def test_joins_and_exits_are_aggregated_per_room(start: Start, business: Backend) -> None:
    live = await start(tip_interval=3600.0)  # flushed by hand below
    await live.room(GID)
    users = ["u1", "u2", "u3", "u4", "u5"]
    clients = await members(live, GID, *users)
    assert business.of(cb.AFTER_JOIN) == []
    t0 = ms()
    live.node._flush_tips()  # the tip timer's callback: one flush, now
    [join] = await business.wait_count(cb.AFTER_JOIN, 1)
    assert without_time(join) == {
        "CallbackCommand": cb.AFTER_JOIN, "GroupId": GID, "Type": "AVChatRoom",
        "JoinType": "Apply", "Operator_Account": "u1",
        "NewMemberList": [{"Member_Account": u} for u in users]}
    event_time_ok(join, t0, ms())
    check_query(join, "Web")
    assert (await clients[1].quit(GID))["code"] == 0
    await clients[3].close()  # a closed connection is a Quit too
    assert (await clients[0].quit(GID))["code"] == 0
    live.node._flush_tips()
    [exit_] = await business.wait_count(cb.AFTER_EXIT, 1)
    assert without_time(exit_) == {
        "CallbackCommand": cb.AFTER_EXIT, "GroupId": GID, "Type": "AVChatRoom",
        "ExitType": "Quit", "Operator_Account": "u2",
        "ExitMemberList": [{"Member_Account": u} for u in ("u2", "u4", "u1")]}
    check_query(exit_, "Web")


async def test_a_ban_is_one_kicked_exit_by_the_admin(start: Start, business: Backend) -> None:
    live = await start()
    await live.room(GID)
    _alice, bob, carol = await members(live, GID, "alice", "bob", "carol")
    await business.wait_for(lambda: joined(business) == {"alice", "bob", "carol"})
    r = await live.rest(SVC, "ban_group_member", {"GroupId": GID, "Members_Account": ["bob"],
                                                  "Duration": 600})
    assert r["ErrorCode"] == 0
    assert (await bob.next_push("kicked"))["reason"] == "banned"
    assert await bob.wait_closed() == Close.BANNED
    [kick] = await business.wait_count(cb.AFTER_EXIT, 1)
    assert without_time(kick) == {
        "CallbackCommand": cb.AFTER_EXIT, "GroupId": GID, "Type": "AVChatRoom",
        "ExitType": "Kicked", "Operator_Account": "administrator",
        "ExitMemberList": [{"Member_Account": "bob"}]}
    check_query(kick, "RESTAPI", client_ip=None)
    again = await live.client("bob")
    assert (await again.join(GID))["code"] == Code.NO_PERMISSION  # banned: not even asked
    assert [s.body["Requestor_Account"] for s in business.of(cb.BEFORE_JOIN)].count("bob") == 1
    assert (await carol.quit(GID))["code"] == 0
    await business.wait_for(lambda: ("Quit", "carol", "carol") in exited(business))
    assert exited(business) == [("Kicked", "administrator", "bob"), ("Quit", "carol", "carol")]


# ---------------------------------------------------- 5. group lifecycle
async def test_group_lifecycle_over_rest(start: Start, business: Backend) -> None:
    live = await start(callback_url=business.url + "?tenant=7")
    r = await live.rest(SVC, "create_group", {
        "Type": "AVChatRoom", "GroupId": "live-9", "Name": "My live", "Owner_Account": "alice",
        "AppDefinedData": [{"Key": "Live", "Value": "on"}]})
    assert (r["ErrorCode"], r["GroupId"]) == (0, "live-9")
    [viewer] = await members(live, "live-9", "viewer")
    for change in ({"Name": "New name"}, {"AppDefinedData": [{"Key": "Live", "Value": "off"}]},
                   {"Notification": "8pm", "AppDefinedData": [{"Key": "like_count",
                                                                "Value": "3"}]}):
        r = await live.rest(SVC, "modify_group_base_info", {"GroupId": "live-9", **change})
        assert r["ErrorCode"] == 0, r
    r = await live.rest(SVC, "destroy_group", {"GroupId": "live-9"})
    assert r["ErrorCode"] == 0
    await business.wait_count(cb.AFTER_DESTROYED, 1)
    assert await viewer.wait_closed() is not None
    lifecycle = [s for s in business.seen if s.command not in (cb.BEFORE_JOIN, cb.AFTER_JOIN)]
    assert [without_time(s) for s in lifecycle] == [
        {"CallbackCommand": cb.AFTER_CREATE, "GroupId": "live-9", "Type": "AVChatRoom",
         "Operator_Account": "administrator", "Owner_Account": "alice", "Name": "My live",
         "MemberList": [], "UserDefinedDataList": [{"Key": "Live", "Value": "on"}]},
        {"CallbackCommand": cb.AFTER_INFO_CHANGED, "GroupId": "live-9", "Type": "AVChatRoom",
         "Operator_Account": "administrator", "Name": "New name"},
        {"CallbackCommand": cb.AFTER_INFO_CHANGED, "GroupId": "live-9", "Type": "AVChatRoom",
         "Operator_Account": "administrator", "Notification": "8pm"},
        {"CallbackCommand": cb.AFTER_DESTROYED, "GroupId": "live-9", "Type": "AVChatRoom",
         "Owner_Account": "alice", "Name": "New name", "MemberList": []}]
    for seen in lifecycle:
        assert seen.query[0] == ("tenant", "7")
        check_query(Seen(seen.query[1:], seen.raw), "RESTAPI")
    # members leaving with their group get no exit callback: after-destroyed covers them
    await marker_in(live, business)
    assert business.of(cb.AFTER_EXIT) == []


async def marker_in(live: Live, business: Backend) -> None:
    """Post the aggregated member events now, then an after-event, and await
    that one: every event posted before it has arrived (one worker, FIFO)."""
    live.node._flush_tips()  # the tip timer's callback
    await live.room("marker-room")
    await live.rest(SVC, "modify_group_base_info", {"GroupId": "marker-room", "Name": "m"})
    await business.wait_count(cb.AFTER_INFO_CHANGED, 1, GroupId="marker-room")


# ------------------------------------------------- 6. hung and dead backends
async def test_a_hung_callback_stalls_neither_its_room_nor_others(
        start: Start, business: Backend) -> None:
    live = await start(callback_timeout=30.0)  # longer than the test: the call stays hung
    await live.room(GID)
    await live.room("other")
    alice, bob = await members(live, GID, "alice", "bob")
    carol, dave = await members(live, "other", "carol", "dave")
    await business.wait_for(lambda: len(joined(business)) == 4)
    business.dead = True
    hung = asyncio.ensure_future(alice.send(GID, text("waiting"), random=1))
    await business.wait_count(cb.BEFORE_SEND, 1, Random=1)
    forbid = ["ForbidBeforeSendMsgCallback"]
    for gid, viewer in ((GID, bob), ("other", dave)):
        r = await live.rest(SVC, "send_group_msg", {"GroupId": gid, "Random": 2,
                                                    "MsgBody": text(f"to {gid}"),
                                                    "ForbidCallbackControl": forbid})
        assert r["ErrorCode"] == 0 and r["MsgSeq"] > 0
        assert texts(await viewer.next_push("msgs")) == [f"to {gid}"]
    assert (await carol.get_group_info("other"))["code"] == 0
    assert (await bob.ping())["code"] == 0
    assert not hung.done()  # still waiting for the backend (30 s timeout)
    business.release.set()
    r = await hung
    assert r["code"] == 0 and r["msgSeq"] > 0
    assert texts(await bob.next_push("msgs")) == ["waiting"]


async def test_a_dead_backend_opens_the_breaker_and_rooms_keep_their_full_rate(
        start: Start, business: Backend) -> None:
    burst = 20
    live = await start(room_rate=burst, room_burst=burst, callback_timeout=0.2,
                       callback_breaker=3, callback_breaker_cooldown=600.0,
                       callback_concurrency=8)
    await live.room(GID)
    await live.room("other")
    a_senders = await members(live, GID, "a1", "a2", "a3", "a4")
    b_senders = await members(live, "other", "b1", "b2")
    [va], [vb] = await members(live, GID, "va"), await members(live, "other", "vb")
    await business.wait_for(lambda: len(joined(business)) == 8)
    business.dead = True
    sent = 0  # one send at a time until the breaker opens; each still gets an answer
    while (await metrics(live))[("livecast_callback_breaker_state", "")] != 1:
        sent += 1
        assert sent <= 3  # 3 consecutive failures open it
        r = await a_senders[0].send(GID, text(f"early {sent}"), random=sent)
        assert (r["code"], r["dropReason"]) == (0, "") and r["msgSeq"] > 0  # fail open
    m0 = await metrics(live)
    early = (m0[("livecast_callbacks_timeout_total", cb.BEFORE_SEND)]
             + m0[("livecast_callbacks_dropped_total", cb.BEFORE_SEND)])
    assert early == sent
    # the bucket started full and delivered ``sent``: the rest of the burst must all go out
    n = burst - sent
    a_flood = [a_senders[i % 4].send(GID, text(f"a {i}"), random=100 + i) for i in range(n)]
    b_flood = [b_senders[i % 2].send("other", text(f"b {i}"), random=100 + i)
               for i in range(burst)]
    replies = await asyncio.gather(*a_flood, *b_flood)
    assert [(r["code"], r["dropReason"]) for r in replies] == [(0, "")] * (n + burst)
    assert all(r["msgSeq"] > 0 for r in replies)
    assert len(await received(va, sent + n)) == burst
    assert len(await received(vb, burst)) == burst
    m1 = await metrics(live)
    delta = {k: m1[k] - m0.get(k, 0) for k in m1}
    assert delta[("livecast_callbacks_sent_total", cb.BEFORE_SEND)] == 0
    assert delta[("livecast_callbacks_dropped_total", cb.BEFORE_SEND)] == n + burst
    assert m1[("livecast_callback_breaker_state", "")] == 1
    # after-events have a breaker of their own: each is tried until it opens
    # too, then dropped; none waits on the dead backend for long
    events = sent + n + burst

    async def after_sends_settled() -> bool:
        m = await metrics(live)
        return (m[("livecast_callbacks_sent_total", cb.AFTER_SEND)]
                + m[("livecast_callbacks_dropped_total", cb.AFTER_SEND)]) == events
    await until_true(after_sends_settled)
    m2 = await metrics(live)
    assert m2[("livecast_callbacks_dropped_total", cb.AFTER_SEND)] > 0  # its breaker opened


async def test_a_group_destroyed_during_before_send_ends_the_message_with_10010(
        start: Start, business: Backend) -> None:
    live = await start(callback_timeout=30.0)
    await live.room(GID)
    business.dead = True  # holds the before-send below until released
    hung = asyncio.ensure_future(live.rest(SVC, "send_group_msg", rest_msg(61)))
    await business.wait_count(cb.BEFORE_SEND, 1, Random=61)
    assert (await live.rest(SVC, "destroy_group", {"GroupId": GID}))["ErrorCode"] == 0
    business.release.set()
    assert (await hung)["ErrorCode"] == Code.GROUP_NOT_FOUND
    [failed] = await business.wait_count(cb.SEND_EXCEPTION, 1)
    assert (failed.body["Random"], failed.body["ErrorCode"]) == (61, Code.GROUP_NOT_FOUND)
    assert business.of(cb.AFTER_SEND) == []


async def test_a_reconnect_is_reported_as_exit_then_join(start: Start, business: Backend) -> None:
    live = await start(tip_interval=3600.0)  # flushed by hand below
    await live.room(GID)
    [old] = await members(live, GID, "alice")
    live.node._flush_tips()
    await business.wait_count(cb.AFTER_JOIN, 1)
    [new] = await members(live, GID, "alice")  # the login kicks the old session
    assert await old.wait_closed() == Close.MULTI_LOGIN
    [visitor] = await members(live, GID, "bob")  # a short visit: join, then quit
    assert (await visitor.quit(GID))["code"] == 0
    live.node._flush_tips()
    await business.wait_for(lambda: {m for _, _, m in exited(business)} == {"alice", "bob"})
    await marker_in(live, business)
    events = [(s.command, accounts(s, "NewMemberList" if s.command == cb.AFTER_JOIN
                                   else "ExitMemberList"))
              for s in business.seen if s.command in (cb.AFTER_JOIN, cb.AFTER_EXIT)]
    alice = [(c, a) for c, a in events if "alice" in a]
    bob = [(c, a) for c, a in events if "bob" in a]
    assert [c for c, _ in alice] == [cb.AFTER_JOIN, cb.AFTER_EXIT, cb.AFTER_JOIN]  # in: present
    assert [c for c, _ in bob] == [cb.AFTER_JOIN, cb.AFTER_EXIT]  # out: gone
    assert (await new.ping())["code"] == 0


async def test_pending_member_events_precede_a_kick_and_a_destroy(
        start: Start, business: Backend) -> None:
    live = await start(tip_interval=3600.0)  # nothing flushes by itself
    await live.room(GID)
    await members(live, GID, "alice", "bob")
    r = await live.rest(SVC, "ban_group_member", {"GroupId": GID, "Members_Account": ["bob"],
                                                  "Duration": 600})
    assert r["ErrorCode"] == 0
    await members(live, GID, "carol")
    assert (await live.rest(SVC, "destroy_group", {"GroupId": GID}))["ErrorCode"] == 0
    await business.wait_count(cb.AFTER_DESTROYED, 1)
    after = [s for s in business.seen if s.command != cb.BEFORE_JOIN]
    assert [(s.command, s.body.get("NewMemberList") or s.body.get("ExitMemberList"))
            for s in after] == [
        (cb.AFTER_JOIN, [{"Member_Account": "alice"}, {"Member_Account": "bob"}]),
        (cb.AFTER_EXIT, [{"Member_Account": "bob"}]),
        (cb.AFTER_JOIN, [{"Member_Account": "carol"}]),
        (cb.AFTER_DESTROYED, None)]


async def test_a_member_banned_with_two_sessions_is_one_kicked_exit(
        start: Start, business: Backend) -> None:
    live = await start(multi_login=True)
    await live.room(GID)
    phone, laptop = await members(live, GID, "bob", "bob")
    r = await live.rest(SVC, "ban_group_member", {"GroupId": GID, "Members_Account": ["bob"],
                                                  "Duration": 600})
    assert r["ErrorCode"] == 0
    assert (await phone.wait_closed(), await laptop.wait_closed()) == (Close.BANNED,) * 2
    await marker_in(live, business)
    assert exited(business) == [("Kicked", "administrator", "bob")]


async def test_a_sender_muted_during_before_send_gets_10017(
        start: Start, business: Backend) -> None:
    live = await start(callback_timeout=30.0)
    await live.room(GID)
    business.dead = True  # holds the before-send below until released
    hung = asyncio.ensure_future(live.rest(SVC, "send_group_msg", rest_msg(62)))
    await business.wait_count(cb.BEFORE_SEND, 1, Random=62)
    sender = (await business.wait_count(cb.BEFORE_SEND, 1, Random=62))[0].body["From_Account"]
    forbid = {"GroupId": GID, "Members_Account": [sender], "MuteTime": 60}
    assert (await live.rest(SVC, "forbid_send_msg", forbid))["ErrorCode"] == 0
    business.release.set()
    assert (await hung)["ErrorCode"] == Code.MUTED
    [failed] = await business.wait_count(cb.SEND_EXCEPTION, 1)
    assert (failed.body["Random"], failed.body["ErrorCode"]) == (62, Code.MUTED)
    assert business.of(cb.AFTER_SEND) == []


@pytest.mark.parametrize("meanwhile", ["banned", "closed", "rest banned"])
async def test_a_send_refused_after_its_before_send_is_reported(
        start: Start, business: Backend, meanwhile: str) -> None:
    """A message that passed before-send ends exactly once (rooms.md, inv. 4):
    a sender banned or disconnected while its before-send was answered gets
    no delivery, and the backend gets the exception."""
    live = await start(callback_timeout=30.0)
    await live.room(GID)
    gate = business.gates[63] = asyncio.Event()
    if meanwhile == "rest banned":
        sent = asyncio.ensure_future(live.rest(SVC, "send_group_msg", rest_msg(63)))
    else:
        alice = await live.client("alice", join=GID)
        sent = asyncio.ensure_future(alice.send(GID, text("held"), random=63))
    await business.wait_count(cb.BEFORE_SEND, 1, Random=63)
    if meanwhile in ("banned", "rest banned"):
        ban = {"GroupId": GID, "Members_Account": ["alice"], "Duration": 600}
        assert (await live.rest(SVC, "ban_group_member", ban))["ErrorCode"] == 0
    else:
        await alice.close()
    gate.set()
    if meanwhile == "rest banned":
        assert (await sent)["ErrorCode"] == Code.NO_PERMISSION
    else:
        with pytest.raises(Exception):  # noqa: B017 - no answer: the socket is gone
            await sent
    [failed] = await business.wait_count(cb.SEND_EXCEPTION, 1, Random=63)
    assert failed.body["ErrorCode"] == Code.NO_PERMISSION and failed.body["ErrorInfo"]
    await marker_in(live, business)  # every event posted before it has arrived
    assert business.of(cb.AFTER_SEND) == []


async def test_sends_waiting_for_the_backend_hold_up_nothing_and_keep_their_order(
        start: Start, business: Backend) -> None:
    live = await start(callback_timeout=30.0)
    await live.room(GID)
    alice = await live.client("alice", join=GID)
    gate71, gate72 = asyncio.Event(), asyncio.Event()
    business.gates.update({71: gate71, 72: gate72})  # both before-sends wait
    first = asyncio.ensure_future(alice.send(GID, text("one"), random=71))
    second = asyncio.ensure_future(alice.send(GID, text("two"), random=72))
    await business.wait_count(cb.BEFORE_SEND, 1, Random=72)  # asked concurrently
    assert (await alice.ping())["code"] == 0  # answered while the sends wait
    assert (await alice.get_online_member_num(GID))["onlineMemberNum"] == 1
    gate72.set()  # the backend answers the second send first...
    sample = live.node.metrics.registry.get_sample_value
    for _ in range(1000):  # polled: nothing else tells when the server has the answer
        if sample("livecast_callback_seconds_count", {"command": cb.BEFORE_SEND}) == 1:
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("the second send's before-send never completed")
    assert not first.done() and not second.done()  # ...which still waits its turn
    gate71.set()
    assert [(await first)["msgSeq"], (await second)["msgSeq"]] == [1, 2]


# ------------------------------------------- 7. the order of a connection's requests
class HeldJoins:
    """The business backend with every before-join of ``user`` held until
    ``release`` is set: a real aiohttp app on loopback in front of ``business``."""

    def __init__(self, business: Backend, user: str) -> None:
        self.business, self.user = business, user
        self.arrived, self.release = asyncio.Event(), asyncio.Event()
        self.server: Any = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("CallbackCommand") == cb.BEFORE_JOIN:
            body = await request.json()
            if body["Requestor_Account"] == self.user:
                self.arrived.set()
                await self.release.wait()
        return await self.business.handle(request)

    async def __aenter__(self) -> HeldJoins:
        self.server = await serve_callbacks(self.handle)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        await self.server.close()

    @property
    def url(self) -> str:
        return str(self.server.make_url("/im/callback"))


async def raw_member(live: Live, user: str) -> aiohttp.ClientWebSocketResponse:
    """A logged-in connection of aiohttp's own client, pongs left to the test."""
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(live.ws_url, autoping=False)
    live.clients.append(Closer(http, ws))  # type: ignore[arg-type]
    await ws.send_json({"op": "login", "id": "login", "sdkAppId": SDKAPPID, "userId": user,
                        "userSig": sig(user)})
    assert (await ws.receive_json(timeout=10))["code"] == 0
    return ws


class Closer:
    """Closes a raw connection and its session with the test's other clients."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.http, self.ws = http, ws

    async def close(self) -> None:
        await self.ws.close()
        await self.http.close()


async def frames(ws: aiohttp.ClientWebSocketResponse, n: int) -> list[Any]:
    """The next ``n`` messages: a parsed text frame, or the string "pong"."""
    got: list[Any] = []
    while len(got) < n:
        msg = await ws.receive(timeout=10)
        if msg.type is aiohttp.WSMsgType.PONG:
            got.append("pong")
        else:
            assert msg.type is aiohttp.WSMsgType.TEXT, msg
            got.append(orjson.loads(msg.data))
    return got


async def replies(ws: aiohttp.ClientWebSocketResponse, ids: set[Any]) -> list[dict[str, Any]]:
    """The replies, in arrival order, until one has come for each of ``ids``
    (pushes are skipped)."""
    got: list[dict[str, Any]] = []
    while {r["id"] for r in got} != ids:
        [f] = await frames(ws, 1)
        if f != "pong" and f["op"] == "reply":
            assert f["id"] in ids and f["id"] not in {r["id"] for r in got}, f
            got.append(f)
    return got


def send_frame(rid: str, words: str, random: int) -> dict[str, Any]:
    return {"op": "send", "id": rid, "groupId": GID, "msgBody": text(words),
            "random": random}


async def test_a_join_waiting_for_its_callback_holds_the_requests_after_it_not_the_reader(
        start: Start, business: Backend) -> None:
    """join + 3 sends + a read, pipelined: all succeed, in order, while the
    before-join is held; pings and the flood budget are served meanwhile."""
    async with HeldJoins(business, "alice") as held:
        live = await start(callback_url=held.url, callback_timeout=30.0, req_burst=8,
                           req_rate=0.001)
        await live.room(GID)
        bob = await live.client("bob", join=GID)
        alice = await raw_member(live, "alice")  # 1 token of 8
        await alice.send_json({"op": "join", "id": "join", "groupId": GID})
        await held.arrived.wait()
        for i, words in enumerate(("one", "two", "three")):
            await alice.send_json(send_frame(f"send{i}", words, 81 + i))
        await alice.send_json({"op": "getOnlineMemberNum", "id": "online", "groupId": GID})
        await alice.ping(b"still there")  # token 7: answered by the reader at once
        await alice.send_json({"op": "ping", "id": "ping"})  # token 8
        await alice.send_json({"op": "ping", "id": "flood"})  # no token left
        early = await frames(alice, 3)
        assert early == ["pong", {"op": "reply", "id": "ping", "code": 0, "info": ""},
                         {"op": "reply", "id": "flood", "code": Code.FREQ_LIMIT,
                          "info": "too many requests: slow down"}]
        assert live.node.online(GID) == 1  # alice is not in yet
        held.release.set()
        late = await replies(alice, {"join", "send0", "send1", "send2", "online"})
    by_id = {f["id"]: f for f in late}
    assert late[0]["id"] == "join"  # all waited for the join
    assert by_id["join"]["code"] == 0
    assert by_id["online"]["onlineMemberNum"] == 2
    assert [(by_id[f"send{i}"]["code"], by_id[f"send{i}"]["msgSeq"]) for i in range(3)] == [
        (0, 1), (0, 2), (0, 3)]
    assert [m["msgBody"][0]["MsgContent"]["Text"] for m in await received(bob, 3)] == [
        "one", "two", "three"]
    sent = await business.wait_count(cb.BEFORE_SEND, 3)
    assert [s.body["Random"] for s in sent] == [81, 82, 83]


async def test_a_connection_past_max_waiting_requests_gets_10006_not_10023(
        start: Start, business: Backend) -> None:
    async with HeldJoins(business, "alice") as held:
        live = await start(callback_url=held.url, callback_timeout=30.0)
        await live.room(GID)
        alice = await raw_member(live, "alice")
        await alice.send_json({"op": "join", "id": "join", "groupId": GID})
        await held.arrived.wait()
        for i in range(MAX_WAITING):  # the join and 31 reads wait; the 32nd read is refused
            await alice.send_json({"op": "getOnlineMemberNum", "id": i, "groupId": GID})
        [refused] = await frames(alice, 1)
        assert refused == {"op": "reply", "id": MAX_WAITING - 1, "code": Code.TOO_MANY_WAITING,
                           "info": f"too many requests waiting on this connection (at most "
                                   f"{MAX_WAITING}): wait for their replies"}
        assert Code.TOO_MANY_WAITING == 10006
        held.release.set()
        late = await replies(alice, {"join", *range(MAX_WAITING - 1)})
    assert [f["id"] for f in late] == ["join", *range(MAX_WAITING - 1)]
    assert all(f["code"] == 0 for f in late)
    assert {f["onlineMemberNum"] for f in late[1:]} == {1}


async def test_a_quit_after_a_held_join_takes_effect_after_it(
        start: Start, business: Backend) -> None:
    """join, quit, join again, pipelined: the room sees them in that order."""
    async with HeldJoins(business, "alice") as held:
        live = await start(callback_url=held.url, callback_timeout=30.0)
        await live.room(GID)
        alice = await raw_member(live, "alice")
        await alice.send_json({"op": "join", "id": "join", "groupId": GID})
        await held.arrived.wait()
        await alice.send_json({"op": "quit", "id": "quit", "groupId": GID})
        await alice.send_json({"op": "setMyProfile", "id": "nick", "nick": "Al"})
        await alice.send_json({"op": "getMyProfile", "id": "profile"})
        await alice.send_json({"op": "getOnlineMemberNum", "id": "online", "groupId": GID})
        held.release.set()
        late = await replies(alice, {"join", "quit", "nick", "profile", "online"})
    assert [(f["id"], f["code"]) for f in late] == [
        ("join", 0), ("quit", 0), ("nick", 0), ("profile", 0), ("online", 0)]
    assert late[3]["nick"] == "Al"
    assert late[4]["onlineMemberNum"] == 0
