"""The node: rooms, sessions and the dispatch timers of one livecast process.

Decisions come from ``livecast.core``; this module wires them to the event
loop and to transports.  Nothing here awaits on the fan-out path: a room's
dispatch runs as one loop callback (``_dispatch``) that ticks the scheduler,
encodes the batch once and writes it to every member.

Room dispatch timing (README, LIVECAST_TICK_MS): a room with
waiting messages is dispatched once per tick; a quiet room dispatches its
first message at once (on the next loop iteration, so that messages sent in
the same iteration share one frame).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from livecast.backplane.memory import MemoryBackplane
from livecast.core.group import Group, new_group_id, wire_time
from livecast.core.group_attrs import AttrChange, GroupAttrs
from livecast.core.scheduler import PRIORITY_NAMES, Priority, RoomScheduler
from livecast.core.wsframe import close_frame, frame
from livecast.errors import Close, Code, LivecastError
from livecast.node.connection import Connection
from livecast.node.fanout import FanJob, fanout
from livecast.node.hooks import Hooks
from livecast.node.kicks import KickTimes, MemoryKickTimes
from livecast.node.metrics import Metrics
from livecast.node.room import LiveRoom, Outgoing
from livecast.settings import Settings
from livecast.webhooks.client import Webhooks

log = logging.getLogger("livecast.node")

KICK_CLOSE = {"multiLogin": Close.MULTI_LOGIN, "banned": Close.BANNED,
              "groupDestroyed": Close.NORMAL, "slow": Close.SLOW}


class Node:
    def __init__(self, settings: Settings, metrics: Metrics | None = None,
                 clock: Callable[[], float] = time.time,
                 kicks: KickTimes | None = None) -> None:
        self.settings = settings
        self.kicks: KickTimes = kicks or MemoryKickTimes()  # UserSig revocation
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.rooms: dict[str, LiveRoom] = {}
        self.sessions: dict[str, dict[Connection, None]] = {}
        self.profiles: dict[str, tuple[str, str]] = {}
        self.connections: dict[Connection, None] = {}  # attached: in rooms and sessions
        self.sockets: dict[Connection, None] = {}  # not lost yet (closing ones included)
        self.backplane = MemoryBackplane()
        self.webhooks = Webhooks(settings, self.metrics.registry, clock)
        self.hooks = Hooks(self.webhooks, clock)
        # each message offered to a room that has a before-send callback (node/likes.py)
        self.on_admit: Callable[[str, Outgoing], None] | None = None
        self._tip_rooms: dict[LiveRoom, None] = {}
        self._tip_handle: asyncio.TimerHandle | None = None
        self._group_counter = 0
        self._salt = os.urandom(8)
        self.draining = False
        self.drained = asyncio.Event()

    # ----------------------------------------------------------- groups
    def create_group(self, owner: str, fields: dict[str, Any], group_id: str | None = None,
                     operator: str | None = None, client_ip: str = "") -> Group:
        """A new room; ``operator`` (the REST caller) gets the after-create callback."""
        now = self.clock()
        if group_id is None:
            group_id = self._fresh_group_id()
        elif group_id in self.rooms:
            taken = self.rooms[group_id].group.owner == owner
            raise LivecastError(Code.GROUP_ID_TAKEN_BY_YOU if taken else Code.GROUP_ID_TAKEN,
                                f"group id {group_id!r} is already used")
        group = Group.create(group_id, owner, now, fields)
        s = self.settings
        sched = RoomScheduler(s.room_rate, s.room_burst, now, s.max_wait)
        self.rooms[group_id] = LiveRoom(group, sched, s.tip_member_cap)
        self.metrics.rooms.set(len(self.rooms))
        log.info("room created: %s", group_id)
        if operator is not None:
            self.hooks.created(group, operator, client_ip)
        return group

    def _fresh_group_id(self) -> str:
        while True:
            self._group_counter += 1
            gid = new_group_id(self._group_counter, self._salt)
            if gid not in self.rooms:
                return gid

    def room(self, group_id: str) -> LiveRoom:
        room = self.rooms.get(group_id)
        if room is None:
            raise LivecastError(Code.GROUP_NOT_FOUND, f"group {group_id!r} does not exist")
        return room

    def destroy_group(self, group_id: str, client_ip: str = "") -> None:
        room = self.room(group_id)
        if room.handle is not None:
            room.handle.cancel()
        self._settle_pending(room, Code.GROUP_NOT_FOUND)  # answered before the kicks below
        room.fanq.clear()  # frames still on their way to a big room go no further
        tip = frame(room.encode("tips", "tips", [{"type": "destroyed"}]))
        for conn in list(room.members):
            conn.write(tip)
            self.quit(conn, group_id, report=False)  # no exit callback: after-destroyed covers it
            self.kick(conn, "groupDestroyed")
        del self.rooms[group_id]
        self.metrics.rooms.set(len(self.rooms))
        self.hooks.destroyed(room.group, client_ip)
        log.info("room destroyed: %s", group_id)

    def _settle_pending(self, room: LiveRoom, code: int) -> None:
        """A room's waiting messages end as drops (accounting, invariant 4)."""
        for pending in room.sched.drain():
            self._drop(room.group_id, pending.payload, pending.priority, code)

    def modify_group(self, group_id: str, fields: dict[str, Any], operator: str = "",
                     client_ip: str = "") -> dict[str, Any]:
        room = self.room(group_id)
        changes = room.group.modify(fields, self.clock())
        if changes:
            self.push_tips(room, [{"type": "groupInfo", "changes": changes}])
            self.hooks.info_changed(group_id, operator, changes, client_ip)
        return changes

    def update_counters(self, group_id: str, items: object, mode: object) -> list[dict[str, Any]]:
        room = self.room(group_id)
        result = room.group.update_counters(items, mode)
        if result:
            self.push_tips(room, [{"type": "counters", "counters": result}])
        return result

    def delete_counters(self, group_id: str, keys: list[str] | None) -> list[dict[str, Any]]:
        room = self.room(group_id)
        result = room.group.delete_counters(keys)
        if result:
            deleted = [item["Key"] for item in result]
            self.push_tips(room, [{"type": "counters", "counters": [], "deleted": deleted}])
        return result

    def mute(self, group_id: str, users: list[str], seconds: int) -> None:
        room = self.room(group_id)
        now = self.clock()
        tips = []
        for user in users:
            until = room.group.mute(user, seconds, now)
            tips.append({"type": "mute", "member": user, "until": wire_time(until)})
        self.push_tips(room, tips)

    def ban(self, group_id: str, users: list[str], seconds: int,
            operator: str = "administrator", client_ip: str = "") -> None:
        room = self.room(group_id)
        now = self.clock()
        kicked: list[str] = []
        for user in users:
            room.group.ban(user, seconds, now)
            conns = [c for c in self.sessions.get(user, ()) if c in room.members]
            for conn in conns:
                self.quit(conn, group_id, report=False)
                self.kick(conn, "banned")
            if conns:
                kicked.append(user)  # once, however many sessions it had
        self.hooks.kicked(group_id, kicked, operator, client_ip)

    # ----------------------------------------------------------- group attributes
    def write_attrs(self, group_id: str,
                    write: Callable[[GroupAttrs], AttrChange | None]) -> GroupAttrs:
        """An admin's write (REST): applied, and a change pushed to every
        member as one ``groupAttributes`` tip; returns the attributes after it."""
        room = self.room(group_id)
        change = write(room.group.attrs)
        if change is not None:
            self.push_tips(room, [change.tip()])
        return room.group.attrs

    def member_write_attrs(self, conn: Connection, group_id: str, seq: int,
                           write: Callable[[GroupAttrs], AttrChange | None]) -> GroupAttrs:
        """A member's write (WebSocket): allowed by ``member_attrs``, from a
        logged-in member who may speak, at the current ``attrSeq``
        (compare-and-set, core/group_attrs.py), within the group's budget."""
        if not self.settings.member_attrs:
            raise LivecastError(Code.NO_PERMISSION, "group attributes are written by the app "
                                                    "backend only on this server")
        room = self.room(group_id)
        if conn.guest or not conn.logged_in or conn not in room.members:
            raise LivecastError(Code.NO_PERMISSION, "not a member of this group")
        now = self.clock()
        if room.group.can_send(conn.user, now, self.settings.is_admin(conn.user)):
            raise LivecastError(Code.MUTED, f"{conn.user} is muted in this group")
        room.group.attrs.member_write(seq, now)
        return self.write_attrs(group_id, write)

    def system_notification(self, group_id: str, content: str) -> None:
        self.push_tips(self.room(group_id), [{"type": "system", "content": content}])

    def set_rate(self, group_id: str, rate: int, burst: int) -> None:
        room = self.room(group_id)
        room.group.rate, room.group.burst = rate, burst
        room.sched.configure(rate, burst, self.clock())

    # ----------------------------------------------------------- sessions
    def attach(self, conn: Connection) -> None:
        self.connections[conn] = None
        self.sockets[conn] = None
        self.metrics.connections.set(len(self.connections))

    def login(self, conn: Connection, user: str) -> None:
        """Log a connection in.  Rooms it joined as a guest are left: it joins
        them again as the user, through the ban check and the before-join
        callback like any other join."""
        for gid in list(conn.rooms):
            self.quit(conn, gid, report=False)
        conn.user = user
        conn.logged_in = True
        conn.guest = False
        conn.nick, conn.avatar = self.profiles.get(user, ("", ""))
        if not self.settings.multi_login:
            for old in list(self.sessions.get(user, ())):
                self.kick(old, "multiLogin")
        # after the kicks: detaching the last old session deletes the user's table
        self.sessions.setdefault(user, {})[conn] = None
        log.debug("login %s from %s", user, conn.peer)

    def set_profile(self, user: str, nick: str | None, avatar: str | None) -> tuple[str, str]:
        old_nick, old_avatar = self.profiles.get(user, ("", ""))
        profile = (old_nick if nick is None else nick, old_avatar if avatar is None else avatar)
        self.profiles[user] = profile
        for conn in self.sessions.get(user, ()):
            conn.nick, conn.avatar = profile
        return profile

    async def enter(self, conn: Connection, group_id: str) -> dict[str, Any]:
        """A join asked by a client: the before-join callback first (logged-in
        users only; guests have no account to report), then ``join``."""
        room = self.room(group_id)
        if self.hooks.enabled and conn.logged_in and conn not in room.members:
            if room.group.is_banned(conn.user, self.clock()):
                raise LivecastError(Code.NO_PERMISSION, "banned from this group")
            await self.hooks.before_join(group_id, conn.user, conn.peer)
        if conn.closing:
            raise LivecastError(Code.NO_PERMISSION, "connection closed")
        return self.join(conn, group_id)

    def join(self, conn: Connection, group_id: str) -> dict[str, Any]:
        room = self.room(group_id)
        if not conn.logged_in:
            if not self.settings.allow_guests:
                raise LivecastError(Code.NO_PERMISSION, "guests are not allowed: login first")
            conn.guest = True
        elif room.group.is_banned(conn.user, self.clock()):
            raise LivecastError(Code.NO_PERMISSION, "banned from this group")
        if conn not in room.members:
            room.members[conn] = None
            conn.rooms.add(group_id)
            room.joins.add(conn.user if conn.logged_in else "")
            self.hooks.joined(group_id, conn.user if conn.logged_in else "", conn.peer)
            self._want_tips(room)
            self.metrics.members.inc()
        return {"group": room.group.profile(), "counters": room.group.counter_list(),
                "onlineMemberNum": room.online(),
                "groupAttributes": room.group.attrs.get(), "attrSeq": room.group.attrs.seq}

    def quit(self, conn: Connection, group_id: str, report: bool = True) -> None:
        room = self.rooms.get(group_id)
        if room is None or conn not in room.members:
            conn.rooms.discard(group_id)
            return
        del room.members[conn]
        conn.rooms.discard(group_id)
        room.quits.add(conn.user if conn.logged_in else "")
        if report and conn.logged_in:
            self.hooks.exited(group_id, conn.user, conn.peer)
        self._want_tips(room)
        self.metrics.members.dec()

    def detach(self, conn: Connection) -> None:
        """The connection is gone (or going): leave every room and session."""
        for gid in list(conn.rooms):
            self.quit(conn, gid)
        others = self.sessions.get(conn.user)
        if others is not None:
            others.pop(conn, None)
            if not others:
                del self.sessions[conn.user]
        if self.connections.pop(conn, 0) is None:
            self.metrics.connections.set(len(self.connections))

    def lost(self, conn: Connection) -> None:
        """The connection's socket is closed: nothing more can be written to it."""
        self.detach(conn)
        self.sockets.pop(conn, None)
        if self.draining and not self.sockets:
            self.drained.set()

    def kick(self, conn: Connection, reason: str) -> None:
        """Send ``kicked`` then close with the reason's code; never waits."""
        self.close(conn, KICK_CLOSE[reason], reason, kicked=True)

    def close(self, conn: Connection, code: int, reason: str = "", kicked: bool = False) -> None:
        """Write the close frame and leave every room now; the socket itself is
        closed by the connection's reader once the peer answers (or hangs up),
        and aborted after ``shutdown_grace`` if it never does."""
        if conn.closing:
            return
        if kicked:
            conn.send({"op": "kicked", "reason": reason})
        conn.write(close_frame(code, reason))
        conn.closing = True
        conn.close_code = code
        self.metrics.closes.labels(str(code)).inc()
        self.detach(conn)
        loop = asyncio.get_running_loop()
        loop.call_later(self.settings.shutdown_grace or 0.1, conn.transport.abort)

    # ----------------------------------------------------------- sending
    def submit(self, group_id: str, msg: Outgoing) -> None:
        """Offer an admitted message to its room's scheduler (after webhooks)."""
        room = self.room(group_id)
        if self.on_admit is not None and msg.before_callback:
            self.on_admit(group_id, msg)  # before rate limiting, as before-send sees it
        now = self.clock()
        self.metrics.admitted_by[msg.priority].inc()
        for pending in room.sched.offer(msg, msg.priority, now):
            self._drop(group_id, pending.payload, pending.priority)
        self._schedule(room)

    async def send(self, group_id: str, msg: Outgoing,
                   turn: asyncio.Future[Any] | None = None) -> None:
        """The send pipeline shared by WebSocket and REST: the before-send
        callback (which may reject, drop or rewrite), then the room's scheduler.
        ``turn``: an earlier send of the same sender, still on its way; this one
        asks the backend meanwhile and reaches the room after it.
        The sender's answer comes through ``msg.fate``."""
        self.room(group_id)
        if self.hooks.enabled:
            go_on = await self.hooks.before_send(group_id, msg)
            if turn is not None:
                await asyncio.wait([turn])
            if not go_on:
                return
            room = self.rooms.get(group_id)
            if room is None:  # destroyed during the callback: reported (inv. 4)
                self.hooks.failed(group_id, msg, Code.GROUP_NOT_FOUND)
            elif room.group.is_muted(msg.sender, self.clock()):  # muted meanwhile
                self.refuse_muted(group_id, msg)
        self.submit(group_id, msg)  # the room may be gone after the await: 10010

    def refuse_muted(self, group_id: str, msg: Outgoing) -> None:
        self.hooks.failed(group_id, msg, Code.MUTED)
        raise LivecastError(Code.MUTED, f"{msg.sender} is muted in this group")

    def check_send(self, conn: Connection, group_id: str, msg: Outgoing) -> LiveRoom:
        room = self.room(group_id)
        if conn.guest or not conn.logged_in or conn not in room.members:
            raise LivecastError(Code.NO_PERMISSION, "not a member of this group")
        if room.group.is_banned(conn.user, self.clock()):
            raise LivecastError(Code.NO_PERMISSION, "banned from this group")
        if room.group.can_send(conn.user, self.clock(), self.settings.is_admin(conn.user)):
            self.refuse_muted(group_id, msg)
        return room

    def _drop(self, group_id: str, msg: Outgoing, priority: Priority,
              code: int = Code.FREQ_LIMIT) -> None:
        """A message that will not be delivered: counted, answered, reported."""
        now_ms = int(self.clock() * 1000)
        if code == Code.FREQ_LIMIT:
            self.metrics.dropped_freq[priority].inc()
            if msg.fate is not None:
                msg.fate(0, now_ms, "MsgFreqCtrl", 0)
        else:
            reason = "GroupDestroyed" if code == Code.GROUP_NOT_FOUND else "Shutdown"
            self.metrics.dropped.labels(PRIORITY_NAMES[priority], reason).inc()
            if msg.fate is not None:
                msg.fate(0, now_ms, "", code)
        self.hooks.failed(group_id, msg, code)

    def _schedule(self, room: LiveRoom) -> None:
        if room.handle is not None:
            return
        loop = asyncio.get_running_loop()
        due = room.last_dispatch + self.settings.tick
        if due <= loop.time():
            room.handle = loop.call_soon(self._dispatch, room)
        else:
            room.handle = loop.call_at(due, self._dispatch, room)

    def _dispatch(self, room: LiveRoom) -> None:
        started = time.perf_counter()
        room.handle = None
        room.last_dispatch = asyncio.get_running_loop().time()
        now = self.clock()
        try:
            result = room.sched.tick(now)
            for pending in result.dropped:
                self._drop(room.group_id, pending.payload, pending.priority)
            if result.delivered:
                self._deliver(room, result.delivered, int(now * 1000))
        finally:  # a failure above must not leave a room with waiting messages unscheduled
            if room.sched.pending and self.rooms.get(room.group_id) is room:
                self._schedule(room)
            self.metrics.tick_seconds.observe(time.perf_counter() - started)

    def _deliver(self, room: LiveRoom, batch: list[Any], time_ms: int) -> None:
        wires = [p.payload.wire(seq, time_ms) for seq, p in batch]
        full = frame(room.encode("msgs", "msgs", wires))
        keep = [w for (_s, p), w in zip(batch, wires, strict=True) if p.priority <= Priority.NORMAL]
        lite: bytes | None = None
        if len(keep) < len(wires):
            lite = frame(room.encode("msgs", "msgs", keep)) if keep else b""
        self.backplane.publish(room.group_id, full, lite)
        self._fan(room, full, lite)
        delivered = self.metrics.delivered_by
        hooks = self.hooks
        for seq, pending in batch:
            msg: Outgoing = pending.payload
            delivered[pending.priority].inc()
            try:
                if msg.fate is not None:
                    msg.fate(seq, time_ms, "", 0)
                if hooks.enabled:
                    hooks.delivered(room.group_id, msg, seq, time_ms)
            except Exception:  # one sender's trouble never costs the others their answers
                log.exception("answering message %d of %s", seq, room.group_id)
        room.group.last_msg_time = time_ms / 1000

    def _fan(self, room: LiveRoom, full: bytes, lite: bytes | None) -> None:
        """Write a frame to every member: at once in a room up to one chunk,
        else chunk by chunk behind any earlier frame still on its way."""
        if not room.fanq and len(room.members) <= self.settings.fanout_chunk:
            self._write(room.members, full, lite)
            return
        if len(room.fanq) > 1:  # one job runs, one waits: the waiting one carries this too
            room.fanq[-1].absorb(full, lite)
            return
        room.fanq.append(FanJob(full, lite))
        if len(room.fanq) == 1:
            self._fan_step(room)

    def _fan_step(self, room: LiveRoom) -> None:
        job = room.fanq[0]
        chunk = self.settings.fanout_chunk
        try:
            if job.members is None:
                job.members = list(room.members)
                part = job.members[:chunk]
            else:  # a later chunk: skip members who left since the snapshot
                members = room.members
                part = [c for c in job.members[job.pos:job.pos + chunk] if c in members]
            job.pos += chunk
            self._write(part, job.full, job.lite)
        finally:  # whatever happened, the room's queue moves on
            if job.members is None or job.pos >= len(job.members):
                room.fanq.popleft()
            if room.fanq and self.rooms.get(room.group_id) is room:
                asyncio.get_running_loop().call_soon(self._fan_step, room)
            else:
                room.fanq.clear()

    def _write(self, members: Iterable[Connection], full: bytes, lite: bytes | None) -> None:
        s = self.settings
        written, degraded, shed = fanout(members, full, lite, s.outbox_soft_bytes,
                                         s.outbox_hard_bytes)
        self.metrics.frames.inc(written)
        if degraded:
            self.metrics.frames_lite.inc(degraded)
        for conn in shed:
            self.shed(conn)

    def shed(self, conn: Connection) -> None:
        """Drop a member that cannot keep up (kicked "slow", close 4008)."""
        self.metrics.shed.inc()
        self.kick(conn, "slow")

    # ----------------------------------------------------------- tips
    def push_tips(self, room: LiveRoom, tips: list[dict[str, Any]]) -> None:
        if tips and room.members:
            data = frame(room.encode("tips", "tips", tips))
            self._fan(room, data, None)

    def _want_tips(self, room: LiveRoom) -> None:
        self._tip_rooms[room] = None
        if self._tip_handle is None:
            loop = asyncio.get_running_loop()
            self._tip_handle = loop.call_later(self.settings.tip_interval, self._flush_tips)

    def _flush_tips(self) -> None:
        self._tip_handle = None
        rooms, self._tip_rooms = self._tip_rooms, {}
        if self.hooks.enabled:
            self.hooks.flush_members()
        for room in rooms:
            if self.rooms.get(room.group_id) is room:
                self.push_tips(room, room.take_member_tips() + self._online_tip(room))

    @staticmethod
    def _online_tip(room: LiveRoom) -> list[dict[str, Any]]:
        """The room's online count, in the same frame as its member tips, when
        it differs from the one last pushed (joins and quits that cancel out
        in one interval push none)."""
        online = room.online()
        if online == room.online_sent:
            return []
        room.online_sent = online
        return [{"type": "online", "onlineMemberNum": online}]

    # ----------------------------------------------------------- shutdown
    def going_away(self) -> None:
        """Close every connection with 1001 (graceful shutdown, drain)."""
        self.draining = True
        for room in self.rooms.values():
            self._settle_pending(room, Code.INTERNAL)
        if not self.sockets:
            self.drained.set()
        for conn in list(self.connections):
            self.close(conn, Close.GOING_AWAY, "server shutting down")
