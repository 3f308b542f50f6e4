"""An async Python client of the livecast WebSocket protocol v1.

    async with Client("ws://127.0.0.1:8080/v1/ws") as c:
        await c.login(1400000000, "alice", sig)
        await c.join("demo")
        await c.send("demo", text("hello"))
        async for push in c.pushes():
            ...

Replies are matched to requests by ``id``; pushes (``msgs``, ``tips``,
``kicked``) are queued in arrival order.  A reply with a non-zero code is
returned, not raised: callers check ``reply["code"]``.  A reply that comes
after its request gave up (``timeout``, or the caller cancelled) is dropped
and counted in ``late_replies``, never queued as a push.

Recovery (docs/protocol.md, "Recent messages and recovery"): the client
keeps, per joined room, the last seq it saw and the room's ``historyEpoch``.
``reconnect`` connects, logs in and joins every room again (but those left
with ``quit``) with ``sinceSeq``: the messages missed meanwhile are queued
as one ``msgs`` push (marked ``"recovered": true``) after the pushes that
came before the connection was lost and were not read yet (a reconnect keeps
them) and before any live push, so the stream of seqs goes on
with no gap and no duplicate; ``recovered: false`` in the join reply says
they could not all be had (the app reloads what it needs).  The messages a
join's reply carries (``history`` or ``sinceSeq``) are queued the same way.

``connect_and_login`` honours admission control (docs/protocol.md,
"Admission control"): a close 4013 "... retry after N s" (or a login reply
70399) is retried after N seconds plus a random share of an exponential
backoff (``retry_delay``), a bounded number of times; so is a connection
refused, or cut (1006) or closed by a restarting server (1001, 1012, 1013)
before the login was answered.
"""

from __future__ import annotations

import asyncio
import itertools
import random as _random
import re
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any

import aiohttp
import orjson


def text(s: str) -> list[dict[str, Any]]:
    """A msgBody holding one TIMTextElem."""
    return [{"MsgType": "TIMTextElem", "MsgContent": {"Text": s}}]


def custom(data: str, desc: str = "") -> list[dict[str, Any]]:
    """A msgBody holding one TIMCustomElem."""
    return [{"MsgType": "TIMCustomElem", "MsgContent": {"Data": data, "Desc": desc}}]


TRY_LATER = 4013          # close code of admission control
# closes worth another try: admission control, and the server going away,
# restarting, overloaded or cut off before the login was answered
RETRY_CLOSES = frozenset({TRY_LATER, 1001, 1006, 1012, 1013})
LOGIN_RATE_LIMIT = 70399  # login reply code of admission control
MAX_GAP_SEEN = 10_000  # seqs kept for an open gap: past it, the gap is given up
_RETRY_AFTER = re.compile(r"retry after (\d+(?:\.\d+)?) s")


def retry_after(reason: str) -> float | None:
    """The seconds of a "retry after N s" hint in a close reason or an
    ErrorInfo; None when there is none."""
    found = _RETRY_AFTER.search(reason)
    return float(found.group(1)) if found else None


def retry_delay(attempt: int, hint: float = 0.0, base: float = 0.5, cap: float = 30.0,
                random: Callable[[], float] = _random.random) -> float:
    """How long to wait before retry ``attempt`` (0 first): at least ``hint``,
    plus a random share of ``min(cap, base * 2**attempt)`` so that clients
    refused together do not come back together."""
    return float(hint + random() * min(cap, base * 2 ** attempt))


class ClientClosed(Exception):
    """The connection closed; ``code`` is the close code the server sent."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"connection closed with code {code}")
        self.code = code


class Client:
    def __init__(self, url: str, session: aiohttp.ClientSession | None = None,
                 timeout: float = 10.0) -> None:
        self.url = url
        self.timeout = timeout
        self._own_session = session is None
        self._session = session
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int | str, asyncio.Future[dict[str, Any]]] = {}
        self._gave_up: set[int] = set()  # requests of this connection no longer waited for
        self.late_replies = 0  # replies dropped: their request had given up
        self._pushes: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        # per joined room: (historyEpoch, last seq seen), for recovery
        self.positions: dict[str, tuple[int, int]] = {}
        # per room with a gap (seqs a push skipped: Low and Lowest ones left out while the
        # connection lagged): the first seq missed, and the seqs received since
        self.gaps: dict[str, tuple[int, set[int]]] = {}
        # join requests in flight -> (room, the sinceSeq asked from, if any)
        self._joins: dict[int | str, tuple[str, int | None]] = {}

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def connect(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self._keep_unread()
        self._gave_up.clear()
        self.close_code, self.close_reason = None, ""
        self._ws = await self._session.ws_connect(self.url, autoping=True, max_msg_size=0)
        self._reader = asyncio.create_task(self._read())

    def _keep_unread(self) -> None:
        """The pushes not read yet stay queued for the next connection; only
        the end-of-connection marker of the last one goes."""
        unread = []
        while not self._pushes.empty():
            push = self._pushes.get_nowait()
            if push is not None:
                unread.append(push)
        for push in unread:
            self._pushes.put_nowait(push)

    async def close(self) -> None:
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        if self._reader is not None:
            await self._reader
        if self._ws is not None:  # a close we started: the reader stopped before the reply
            self.close_code = self._ws.close_code
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def connect_and_login(self, sdkappid: int, user_id: str, user_sig: str,
                                attempts: int = 5) -> dict[str, Any]:
        """Connect and log in; refused by admission control (close 4013, login
        70399), or the connection refused or cut before the login was answered
        (a restarting server: ``RETRY_CLOSES``), wait ``retry_delay`` and try
        again, at most ``attempts`` times.  The last login reply is returned;
        ClientClosed if the last try closed, the connection error if it failed."""
        for attempt in range(attempts):
            try:
                await self.connect()
            except (aiohttp.ClientError, OSError):
                if attempt == attempts - 1:
                    raise
                await asyncio.sleep(retry_delay(attempt))
                continue
            try:
                answer = await self.login(sdkappid, user_id, user_sig)
            except ClientClosed:
                answer = None
            if answer is not None and answer["code"] != LOGIN_RATE_LIMIT:
                return answer
            await self.wait_closed()
            await self.close()
            if self.close_code not in RETRY_CLOSES or attempt == attempts - 1:
                if answer is not None:
                    return answer
                raise ClientClosed(self.close_code)
            hint = retry_after(self.close_reason) or 0.0
            await asyncio.sleep(retry_delay(attempt, hint))
        raise ClientClosed(self.close_code)

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            while True:
                msg = await self._ws.receive()
                if msg.type is aiohttp.WSMsgType.TEXT:
                    self._route(orjson.loads(msg.data))
                elif msg.type is aiohttp.WSMsgType.CLOSE:
                    self.close_reason = str(msg.extra or "")
                    break
                elif msg.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED,
                                  aiohttp.WSMsgType.ERROR):
                    break
        finally:
            self.close_code = self._ws.close_code
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_exception(ClientClosed(self.close_code))
            self._waiting.clear()
            self._joins.clear()  # their replies can no longer come
            self._pushes.put_nowait(None)

    def _route(self, frame: dict[str, Any]) -> None:
        op = frame.get("op")
        if op == "reply":
            rid = frame.get("id")
            joined = self._joins.pop(rid, None)  # type: ignore[arg-type]
            if joined is not None and frame.get("code") == 0:
                self._joined(joined[0], frame, joined[1])
            fut = self._waiting.pop(rid, None)  # type: ignore[arg-type]
            if fut is not None:
                if not fut.done():
                    fut.set_result(frame)
                return
            if isinstance(rid, int) and rid in self._gave_up:  # too late: not a push
                self._gave_up.discard(rid)
                self.late_replies += 1
                return
        elif op == "msgs" and not self._seen(frame):
            return
        self._pushes.put_nowait(frame)

    def _joined(self, gid: str, reply: dict[str, Any], since: int | None = None) -> None:
        """A join's reply: the room's position, and its messages as the first push."""
        if "historyEpoch" not in reply:
            return
        msgs = reply.get("msgs") or []
        epoch = int(reply["historyEpoch"])
        before = self.positions.get(gid)
        gap = self.gaps.get(gid)
        if before is not None and before[0] == epoch:  # joined again: what was seen is not again
            first, got = gap if gap is not None else (before[1] + 1, set())
            msgs = [m for m in msgs if int(m["seq"]) > before[1]
                    or (int(m["seq"]) >= first and int(m["seq"]) not in got)]
        if (before is None or before[0] != epoch
                or (gap is not None and since is not None and since < gap[0])):
            self.gaps.pop(gid, None)  # asked from the gap: recovered, or no longer held
        elif gap is not None:  # kept: what this join brings is seen, not to be pushed again
            gap[1].update(int(m["seq"]) for m in msgs)
            if len(gap[1]) > MAX_GAP_SEEN:
                del self.gaps[gid]
        last = max([int(reply.get("lastSeq", 0))] + [int(m["seq"]) for m in msgs]
                   + ([before[1]] if before is not None and before[0] == epoch else []))
        self.positions[gid] = (epoch, last)
        if msgs:
            self._pushes.put_nowait({"op": "msgs", "groupId": gid, "msgs": msgs,
                                     "recovered": bool(reply.get("recovered"))})

    def _seen(self, push: dict[str, Any]) -> bool:
        """Keep only messages newer than the room's position; False if none is left."""
        gid = push.get("groupId")
        msgs = push.get("msgs")
        if not isinstance(gid, str) or not isinstance(msgs, list) or not msgs:
            return True
        position = self.positions.get(gid)
        if position is None:
            return True
        epoch, last = position
        fresh = [m for m in msgs if int(m.get("seq", 0)) > last]
        if len(fresh) < len(msgs):
            push["msgs"] = fresh
        if fresh:
            self._note_gaps(gid, last, fresh)
            self.positions[gid] = (epoch, int(fresh[-1]["seq"]))
        return bool(fresh)

    def _note_gaps(self, gid: str, last: int, fresh: list[dict[str, Any]]) -> None:
        """Seqs skipped after ``last`` open the room's gap (``rejoin`` asks from
        its first); seqs received while it is open are not shown again."""
        gap = self.gaps.get(gid)
        for m in fresh:
            seq = int(m["seq"])
            if gap is None and seq > last + 1:
                gap = self.gaps[gid] = (last + 1, set())
            if gap is not None:
                gap[1].add(seq)
            last = seq
        if gap is not None and len(gap[1]) > MAX_GAP_SEEN:  # past what a room's history holds
            del self.gaps[gid]

    async def send_frame(self, frame: dict[str, Any]) -> None:
        assert self._ws is not None, "connect() first"
        await self._ws.send_str(orjson.dumps(frame).decode())

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request and wait for its reply; ClientClosed once closed."""
        if self._reader is not None and self._reader.done():
            raise ClientClosed(self.close_code)
        rid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = fut
        if op == "join":
            self._joins[rid] = (str(fields.get("groupId")), fields.get("sinceSeq"))
        try:
            try:
                await self.send_frame({"op": op, "id": rid, **fields})
            except (ConnectionError, aiohttp.ClientError) as exc:  # closing, not read to its end
                self._joins.pop(rid, None)
                raise ClientClosed(self.close_code or 1006) from exc
            return await asyncio.wait_for(fut, self.timeout)
        finally:  # not answered (timed out, cancelled): a reply may still come
            if self._waiting.pop(rid, None) is not None:
                self._gave_up.add(rid)

    async def login(self, sdkappid: int, user_id: str, user_sig: str) -> dict[str, Any]:
        return await self.request("login", sdkAppId=sdkappid, userId=user_id, userSig=user_sig)

    async def join(self, group_id: str, history: int = 0,
                   since_seq: int | None = None,
                   history_epoch: int | None = None) -> dict[str, Any]:
        """Join; ``history``: that many recent messages first; ``since_seq``
        (and ``history_epoch``): every message after it (recovery)."""
        fields: dict[str, Any] = {"groupId": group_id}
        if history:
            fields["history"] = history
        if since_seq is not None:
            fields["sinceSeq"] = since_seq
            if history_epoch is not None:
                fields["historyEpoch"] = history_epoch
        return await self.request("join", **fields)

    async def rejoin(self, group_id: str, history: int = 0, gap: bool = True) -> dict[str, Any]:
        """Join again from the last seq seen in the room (recovery), or, with
        ``gap``, from the first one missed when a push skipped some (``gaps``):
        only the messages not seen are pushed, and the gap is closed, whether
        its messages are still held or not."""
        position = self.positions.get(group_id)
        if position is None:
            return await self.join(group_id, history)
        epoch, last = position
        open_gap = self.gaps.get(group_id) if gap else None
        since = last if open_gap is None else open_gap[0] - 1
        return await self.join(group_id, history, since, epoch)

    async def reconnect(self, sdkappid: int, user_id: str | None = None,
                        user_sig: str = "") -> dict[str, dict[str, Any]]:
        """A new connection after a lost one: log in again (unless a guest,
        ``user_id`` None) and rejoin every room joined before; the join
        replies by room."""
        if self._ws is not None and not self._ws.closed:
            await self.close()
        elif self._reader is not None:
            await self._reader
        await self.connect()
        if user_id is not None:
            answer = await self.login(sdkappid, user_id, user_sig)
            if answer["code"] != 0:
                return {"": answer}
        # from the last seq seen: a gap older than that may be held no more, and
        # asking from it would then lose what came while away (``rejoin`` asks)
        return {gid: await self.rejoin(gid, gap=False) for gid in list(self.positions)}

    def drop(self) -> None:
        """Cut the connection at once, as a lost network would (tests, demos)."""
        if self._ws is not None:
            transport = self._ws._writer.transport
            if transport is not None:
                transport.abort()

    async def quit(self, group_id: str) -> dict[str, Any]:
        """Leave the room: ``reconnect`` no longer rejoins it, whatever the reply."""
        self.positions.pop(group_id, None)
        for rid in [rid for rid, (gid, _since) in self._joins.items() if gid == group_id]:
            del self._joins[rid]  # a join still in flight does not bring it back
        return await self.request("quit", groupId=group_id)

    async def send(self, group_id: str, msg_body: list[dict[str, Any]], priority: str = "Normal",
                   random: int = 0, cloud_custom_data: str = "") -> dict[str, Any]:
        return await self.request("send", groupId=group_id, msgBody=msg_body, priority=priority,
                                  random=random, cloudCustomData=cloud_custom_data)

    async def get_group_info(self, group_id: str) -> dict[str, Any]:
        return await self.request("getGroupInfo", groupId=group_id)

    async def get_online_member_num(self, group_id: str) -> dict[str, Any]:
        return await self.request("getOnlineMemberNum", groupId=group_id)

    async def set_my_profile(self, nick: str | None = None,
                             avatar: str | None = None) -> dict[str, Any]:
        fields = {k: v for k, v in (("nick", nick), ("avatar", avatar)) if v is not None}
        return await self.request("setMyProfile", **fields)

    async def get_my_profile(self) -> dict[str, Any]:
        return await self.request("getMyProfile")

    async def ping(self) -> dict[str, Any]:
        return await self.request("ping")

    async def next_push(self, op: str | None = None,
                        within: float | None = None) -> dict[str, Any]:
        """The next push (of ``op`` if given, skipping others); ClientClosed at the end."""
        while True:
            push = await asyncio.wait_for(self._pushes.get(), within or self.timeout)
            if push is None:
                self._pushes.put_nowait(None)
                raise ClientClosed(self.close_code)
            if op is None or push.get("op") == op:
                return push

    async def pushes(self) -> AsyncIterator[dict[str, Any]]:
        """Every push until the connection closes."""
        while True:
            push = await self._pushes.get()
            if push is None:
                self._pushes.put_nowait(None)
                return
            yield push

    async def wait_closed(self, within: float | None = None) -> int | None:
        """Wait until the server closes the connection; returns its close code."""
        if self._reader is not None:
            await asyncio.wait_for(asyncio.shield(self._reader), within or self.timeout)
        return self.close_code
