"""The WebSocket user classes: Viewer, Chatter, Liker, Gifter (docs/loadtesting.md).

Every one of them is a room member: it connects, logs in (a Viewer may join
as a guest instead), joins its room, and records every message delivered to
it. The senders also send, without waiting for replies (a person types the
next line before the last one is answered): each reply is matched to its send
in the connection's reader greenlet.

Request events (locust's statistics, CSV and HTML report):

| type | name | response time | failure |
|---|---|---|---|
| WS connect | open | the upgrade | it failed |
| WS login / WS join | login / member, guest | to the reply | non-zero code |
| WS send | High, Normal, Low | to the reply (the message's fate) | non-zero code |
| WS drop | High, Normal, Low | to the reply | never: a drop is the room's rate limit at work |
| WS recv | the message's priority | now - the server's dispatch ``time`` | never |
| WS e2e | priority, or system | now - the sender's own timestamp | never |
| WS close | the close code and kick reason | 0 | always: the server ended a connection |
| WS drop % | High, Normal, Low, Lowest | 100 if dropped, else 0 (the average: drop %) | never |
| WS count | seq gap, missed message, seq disorder, reconnect, server close | 0 | never |

(WS drop % fires once per send reply; WS count once per occurrence.)

Senders put their timestamp (unix ms) in ``cloudCustomData`` as
``{"ts": ...}``; the Admin puts one in system notifications. Latencies are
wall-clock differences between machines: keep the clocks in sync (NTP) when
the load comes from other hosts; a negative difference counts as 0.

seq (protocol.md "seq and gap detection"): per member, the first message
after each join starts the count; a jump over missing numbers is one gap of
``seq - last - 1`` missed messages; a seq not above the last is disorder.
"""

from __future__ import annotations

import random
import time
from functools import partial
from typing import Any

import gevent
import orjson
from locust import User, constant, task

from livecast_locust import state
from livecast_locust.options import Config
from livecast_locust.summary import DROP_PCT
from livecast_locust.wsclient import Reply, WsClient


class ReplyError(Exception):
    """A non-zero reply code; its text groups failures in locust's report."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(f"code {reply.get('code')}: {reply.get('info', '')}")


class ServerClosed(Exception):
    """The server (or the network) closed a connection."""


def _now_ms() -> float:
    return time.time() * 1000.0


def _sender_ts(data: Any) -> float | None:
    """The sender's timestamp in a ``{"ts": ms}`` JSON string, if any."""
    if not isinstance(data, str) or not data.startswith('{"ts"'):
        return None
    try:
        ts = orjson.loads(data).get("ts")
    except orjson.JSONDecodeError:
        return None
    return float(ts) if isinstance(ts, int | float) else None


class Member(User):
    """A room member over WebSocket; subclasses choose the role and what it sends."""

    abstract = True
    role = "member"
    wait_time = constant(1.0)

    cfg: Config
    user_id: str
    room: str
    guest: bool
    client: WsClient | None = None

    # lifecycle

    def on_start(self) -> None:
        self.cfg = state.config()
        number = state.next_number()
        worker = int(getattr(self.environment.runner, "worker_index", 0) or 0)
        self.user_id = state.user_id(worker, self.role, number)
        self.room = self.cfg.rooms[(worker + number) % len(self.cfg.rooms)]
        self.guest = self.role == "viewer" and random.random() < self.cfg.guest_share
        self.last_seq: int | None = None
        self.kick_reason = ""
        self.connects = 0
        self.ensure_connected()

    def on_stop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        state.VIEWERS_LOGGED_IN.discard(self.user_id)

    def ensure_connected(self) -> bool:
        """Connect, log in and join unless already in the room; False if that failed."""
        if self.client is not None and self.client.open:
            return True
        if self.connects:
            self.count("reconnects")
            gevent.sleep(random.uniform(0.5, 2.0))  # back off, as a real client should
        self.connects += 1
        self.client = self._join()
        return self.client is not None

    def _join(self) -> WsClient | None:
        client = WsClient(self.cfg.ws_url, self._on_push, self._on_close, self.cfg.reply_timeout)
        started = time.perf_counter()
        try:
            client.connect()
        except Exception as exc:  # any failure to upgrade is this request's failure
            self.fire("WS connect", "open", (time.perf_counter() - started) * 1000, exc)
            return None
        self.fire("WS connect", "open", (time.perf_counter() - started) * 1000)
        self.last_seq, self.kick_reason = None, ""
        if not self.guest and not self._ask(client, "WS login", "login", "login",
                                            sdkAppId=self.cfg.sdkappid, userId=self.user_id,
                                            userSig=self.cfg.sig(self.user_id)):
            return None
        if not self._ask(client, "WS join", "guest" if self.guest else "member", "join",
                         groupId=self.room):
            return None
        if self.role == "viewer" and not self.guest:
            state.VIEWERS_LOGGED_IN.add(self.user_id)
        return client

    def _ask(self, client: WsClient, kind: str, name: str, op: str, **fields: Any) -> bool:
        reply, ms = client.call(op, **fields)
        ok = reply.get("code") == 0
        self.fire(kind, name, ms, None if ok else ReplyError(reply))
        if not ok:
            client.close()
        return ok

    # events

    def fire(self, kind: str, name: str, ms: float, exc: Exception | None = None,
             length: int = 0) -> None:
        self.environment.events.request.fire(
            request_type=kind, name=name, response_time=max(0.0, ms),
            response_length=length, exception=exc, context={})

    def count(self, name: str, n: int = 1) -> None:
        """A counter of the summary, also as ``n`` WS count events (locust's stats and CSV)."""
        state.TALLY.add(name, n)
        for _ in range(n):
            self.fire(state.COUNT_TYPE, state.COUNTED[name], 0.0)

    # sending

    def send(self, priority: str, body: list[dict[str, Any]]) -> None:
        """Send one message without waiting; its reply becomes a WS send event.

        Nothing is sent on a connection the server closed (that close is its
        own WS close failure); the next task connects again."""
        if self.client is None or not self.client.open:
            return
        self.client.request(
            "send", partial(self._on_send_reply, priority), groupId=self.room, msgBody=body,
            priority=priority, random=random.getrandbits(32),
            cloudCustomData=orjson.dumps({"ts": _now_ms()}).decode())

    def _on_send_reply(self, priority: str, reply: Reply, ms: float) -> None:
        if reply.get("code") != 0:
            self.fire("WS send", priority, ms, ReplyError(reply))
            return
        self.fire("WS send", priority, ms)
        reason = reply.get("dropReason") or ""
        self.fire(DROP_PCT, priority, 100.0 if reason else 0.0)
        if reason:
            name = priority if reason == "MsgFreqCtrl" else f"{priority} {reason}"
            self.fire("WS drop", name, ms)

    # receiving (in the reader greenlet)

    def _on_push(self, push: Reply, size: int) -> None:
        op = push.get("op")
        if op == "msgs" and push.get("groupId") == self.room:
            msgs = push.get("msgs") or []
            now = _now_ms()
            each = size // max(1, len(msgs))
            for m in msgs:
                self._on_msg(m, now, each)
        elif op == "tips":
            self._on_tips(push.get("tips") or [])
        elif op == "kicked":
            self.kick_reason = str(push.get("reason", ""))

    def _on_msg(self, m: Reply, now: float, size: int) -> None:
        seq = m.get("seq")
        if isinstance(seq, int):
            last = self.last_seq
            if last is not None and seq > last + 1:
                self.count("seq_gaps")
                self.count("seq_missed", seq - last - 1)
            elif last is not None and seq <= last:
                self.count("seq_disorder")
            self.last_seq = seq if last is None else max(last, seq)
        priority = str(m.get("priority", "Normal"))
        sent_at = m.get("time")
        if isinstance(sent_at, int | float):
            self.fire("WS recv", priority, now - sent_at, length=size)
        ts = _sender_ts(m.get("cloudCustomData"))
        if ts is not None:
            self.fire("WS e2e", priority, now - ts, length=size)

    def _on_tips(self, tips: list[Reply]) -> None:
        state.TALLY.add("tips", len(tips))
        for tip in tips:
            if tip.get("type") == "system":
                state.TALLY.add("system_tips")
                ts = _sender_ts(tip.get("content"))
                if ts is not None:
                    self.fire("WS e2e", "system", _now_ms() - ts)

    def _on_close(self, code: int) -> None:
        self.count("closes")
        state.VIEWERS_LOGGED_IN.discard(self.user_id)
        reason = f" {self.kick_reason}" if self.kick_reason else ""
        self.fire("WS close", f"{code}{reason}", 0.0,
                  ServerClosed(f"closed by the server: {code}{reason}"))


class Viewer(Member):
    """Joins (logged in, or as a guest per --guest-share) and receives; never sends."""

    role = "viewer"

    @task
    def watch(self) -> None:
        self.ensure_connected()


class Chatter(Member):
    """Normal text messages, Poisson at --chat-rate per second."""

    role = "chatter"

    def wait_time(self) -> float:
        return random.expovariate(self.cfg.chat_rate)

    @task
    def chat(self) -> None:
        if self.ensure_connected():
            words = random.choice(("hello", "so good", "where is this?", "haha", "wow", "+1"))
            self.send("Normal", [{"MsgType": "TIMTextElem", "MsgContent": {"Text": words}}])


class Liker(Member):
    """Bursts of --like-burst Low likes, a burst every --like-every seconds on average."""

    role = "liker"

    def wait_time(self) -> float:
        return random.expovariate(1.0 / self.cfg.like_every)

    @task
    def like(self) -> None:
        if not self.ensure_connected():
            return
        for i in range(self.cfg.like_burst):
            if i:
                gevent.sleep(random.uniform(0.05, 0.25))  # taps
            data = orjson.dumps({"type": "like", "count": random.randint(1, 10)}).decode()
            self.send("Low", [{"MsgType": "TIMCustomElem",
                               "MsgContent": {"Data": data, "Desc": "like"}}])


class Gifter(Member):
    """High gift messages, Poisson at --gift-rate per second."""

    role = "gifter"

    def wait_time(self) -> float:
        return random.expovariate(self.cfg.gift_rate)

    @task
    def gift(self) -> None:
        if self.ensure_connected():
            data = orjson.dumps({"type": "gift", "giftId": random.choice(("rose", "rocket", "car")),
                                 "count": random.choice((1, 1, 1, 5, 10))}).decode()
            self.send("High", [{"MsgType": "TIMCustomElem",
                                "MsgContent": {"Data": data, "Desc": "gift"}}])
