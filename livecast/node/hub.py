"""This process's side of the rooms: its connections, sessions, members,
fan-out and tips (the local hub; docs/design.md, "Shape of a process").

The hub knows sockets, not rooms' rules: who may join, send or stay is the
node's decision (node/node.py), made on the room owner's state.

Invariants:
1. Nothing here awaits.  Every write is a synchronous transport write
   through the bounded outbox (connection.py); a member that falls behind is
   degraded, then shed, never waited on.
2. A room's frames reach its members in the order they were handed over: a
   room up to one chunk is written at once, a bigger one chunk by chunk (one
   chunk per loop iteration) behind any earlier frame still on its way.
3. Join and quit tips, and the online count when it changed, are aggregated
   per room and flushed at most once per tip interval, one encoded frame per
   room.  In a cluster each flush announces this process's own joins and
   quits of the interval (``announce``, one control message per room), and
   what the others announced is merged into the next flush (``merge_tips``),
   within the same per-tip member cap.
4. ``connections`` holds every attached connection by id: a message's fate
   finds its sender through its address, or finds nothing once it is gone.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from livecast.core.wsframe import close_frame, frame
from livecast.errors import Close, close_label
from livecast.node.connection import Connection
from livecast.node.fanout import FanJob, fanout
from livecast.node.hooks import Hooks
from livecast.node.metrics import Metrics
from livecast.node.room import TipBuffer
from livecast.settings import Settings

log = logging.getLogger("livecast.node")

MAX_PROFILES = 100_000  # profiles kept for users with no session on this process

KICK_CLOSE = {"multiLogin": Close.MULTI_LOGIN, "adminKick": Close.MULTI_LOGIN,
              "banned": Close.BANNED, "groupDestroyed": Close.NORMAL, "slow": Close.SLOW}


MAX_WAITING = 2  # chunked frames waiting behind the running one, per room, at most


class LocalRoom:
    """A room as this process sees it: its members here, their tips, and the
    frames still on their way to them."""

    __slots__ = ("fanq", "group_id", "joined", "joins", "members", "merged_joins",
                 "merged_quits", "online_sent", "quits")

    def __init__(self, group_id: str, tip_cap: int) -> None:
        self.group_id = group_id
        self.members: dict[Connection, None] = {}
        self.joins = TipBuffer(tip_cap)
        self.quits = TipBuffer(tip_cap)
        self.merged_joins = TipBuffer(tip_cap)  # the other processes' (cluster)
        self.merged_quits = TipBuffer(tip_cap)
        self.online_sent = 0  # the online count last pushed in an ``online`` tip
        self.fanq: deque[FanJob] = deque()  # chunked fan-out in progress (big rooms)
        self.joined = 0  # members added so far: a waiting job's list is still whole

    def encode(self, op: str, key: str, items: list[Any]) -> bytes:
        return orjson.dumps({"op": op, "groupId": self.group_id, key: items})

    def online(self) -> int:
        return len(self.members)

    def take_member_tips(self, announce: Announce | None = None,
                         online: int | None = None) -> list[dict[str, Any]]:
        """The interval's tips: this process's joins and quits (``announce``d
        to the others in a cluster) merged with the others', then the online
        count (``online``: the whole room's, else the members here) if it changed."""
        joins, quits = self.joins.take("memberJoin"), self.quits.take("memberQuit")
        if announce is not None and (joins or quits):
            announce(self.group_id, joins, quits)
        joins = _merged(joins, self.merged_joins.take("memberJoin"), self.joins.cap)
        quits = _merged(quits, self.merged_quits.take("memberQuit"), self.quits.cap)
        tips = [t for t in (joins, quits) if t]
        online = len(self.members) if online is None else online
        if online != self.online_sent:  # joins and quits that cancel out push none
            self.online_sent = online
            tips.append({"type": "online", "onlineMemberNum": online})
        return tips


Announce = Callable[[str, dict[str, Any] | None, dict[str, Any] | None], None]


def _merged(mine: dict[str, Any] | None, theirs: dict[str, Any] | None,
            cap: int) -> dict[str, Any] | None:
    if mine is None or theirs is None:
        return mine or theirs
    return {"type": mine["type"], "members": (mine["members"] + theirs["members"])[:cap],
            "total": mine["total"] + theirs["total"]}


def _absorb(buffer: TipBuffer, tip: dict[str, Any] | None) -> None:
    if tip is not None:
        room = buffer.cap - len(buffer.ids)
        buffer.ids.extend(u for u in tip["members"][:max(room, 0)] if u)
        buffer.total += int(tip["total"])


class LocalHub:
    def __init__(self, settings: Settings, metrics: Metrics, hooks: Hooks) -> None:
        self.settings = settings
        self.metrics = metrics
        self.hooks = hooks
        self.rooms: dict[str, LocalRoom] = {}
        self.connections: dict[int, Connection] = {}  # attached: in rooms and sessions
        self.sockets: dict[Connection, None] = {}  # not lost yet (closing ones included)
        # user -> session -> whether its login's multiLogin kick came back (cluster)
        self.sessions: dict[str, dict[Connection, bool]] = {}
        # nick and avatar by user, oldest set first: at most MAX_PROFILES kept
        # for users with no session here (per-user tables stay bounded); a
        # cache of the store's profiles (Node, "profiles"), ``complete`` while
        # it holds every stored one (a user not in it then has none)
        self.profiles: dict[str, tuple[str, str]] = {}
        self.profiles_complete = False
        self.draining = False
        self.drained = asyncio.Event()
        # during a tick's synchronous fan-out: the member whose frame waits for
        # its reply, one write for both (fanout.py; Node.publish)
        self.hold: Connection | None = None
        self._tip_rooms: dict[LocalRoom, None] = {}
        # close timers (abort after shutdown_grace), cancelled once the socket is lost
        self._aborts: dict[Connection, asyncio.TimerHandle] = {}
        self.aborted = 0  # closed going away (1001), aborted: the close never answered
        self._tip_handle: asyncio.TimerHandle | None = None
        # told when this process gets its first member of a room (True) and
        # loses its last (False): a cluster member subscribes to the room
        self.watch: Callable[[str, bool], None] | None = None
        # in a cluster: this process's joins and quits of each flush go to the
        # other processes, and the online tip counts the whole room
        self.announce: Announce | None = None
        self.online_of: Callable[[str], int] | None = None

    # ---------------------------------------------------------------- rooms
    def open_room(self, group_id: str) -> LocalRoom:
        room = self.rooms.get(group_id)
        if room is None:
            room = self.rooms[group_id] = LocalRoom(group_id, self.settings.tip_member_cap)
            if self.watch is not None:
                self.watch(group_id, True)
        return room

    def close_room(self, group_id: str, last: bytes) -> list[Connection]:
        """The room ends: frames on their way go no further and ``last`` is
        written to every member here; returns them (still members: the node
        makes them leave, then ``forget_room``)."""
        room = self.rooms.get(group_id)
        if room is None:
            return []
        _end_jobs(room)  # the replies of messages delivered go first
        members = list(room.members)
        for conn in members:
            conn.write(last)
        return members

    def forget_room(self, group_id: str) -> None:
        if self.rooms.pop(group_id, None) is not None and self.watch is not None:
            self.watch(group_id, False)

    def members(self, group_id: str) -> dict[Connection, None]:
        room = self.rooms.get(group_id)
        return room.members if room is not None else {}

    def logged_in_members(self, group_id: str) -> list[list[Any]]:
        """The room's logged-in members here (guests left out), as
        ``[connection id, user, nick, avatar]``, the newest join first."""
        return [[c.id, c.user, c.nick, c.avatar] for c in reversed(self.members(group_id))
                if c.logged_in and not c.guest]

    def online(self, group_id: str) -> int:
        room = self.rooms.get(group_id)
        return len(room.members) if room is not None else 0

    def is_member(self, conn: Connection, group_id: str) -> bool:
        room = self.rooms.get(group_id)
        return room is not None and conn in room.members

    def add_member(self, conn: Connection, group_id: str) -> bool:
        """``conn`` joins the room here; False if it was in already."""
        room = self.open_room(group_id)
        if conn in room.members:
            return False
        room.members[conn] = None
        room.joined += 1
        conn.rooms.add(group_id)
        user = conn.user if conn.logged_in else ""
        room.joins.add(user)
        self.hooks.joined(group_id, user, conn.peer)
        self._want_tips(room)
        self.metrics.members.inc()
        return True

    def remove_member(self, conn: Connection, group_id: str, report: bool = True) -> None:
        conn.rooms.discard(group_id)
        room = self.rooms.get(group_id)
        if room is None or conn not in room.members:
            return
        del room.members[conn]
        room.quits.add(conn.user if conn.logged_in else "")
        if report and conn.logged_in:
            self.hooks.exited(group_id, conn.user, conn.peer)
        self._want_tips(room)
        self.metrics.members.dec()

    def user_members(self, user: str, group_id: str) -> list[Connection]:
        """The connections of ``user`` that are members of the room here."""
        room = self.rooms.get(group_id)
        if room is None:
            return []
        return [c for c in self.sessions.get(user, ()) if c in room.members]

    # ---------------------------------------------------------------- sessions
    def attach(self, conn: Connection) -> None:
        self.connections[conn.id] = conn
        self.sockets[conn] = None
        self.metrics.connections.set(len(self.connections))

    def login(self, conn: Connection, user: str) -> None:
        """Log a connection in.  Rooms it joined as a guest are left: it joins
        them again as the user, through the ban check and the before-join
        callback like any other join."""
        for gid in list(conn.rooms):
            self.remove_member(conn, gid, report=False)
        conn.user = user
        conn.logged_in = True
        conn.guest = False
        conn.nick, conn.avatar = self.profiles.get(user, ("", ""))
        if not self.settings.multi_login:
            for old in list(self.sessions.get(user, ())):
                self.kick(old, "multiLogin")
        # after the kicks: detaching the last old session deletes the user's table
        self.sessions.setdefault(user, {})[conn] = False
        log.debug("login %s from %s", user, conn.peer)

    def heard_every_login(self) -> None:
        """After a gap in the subscriptions a session's own multiLogin kick may
        never come back: every session here counts as heard, so a later login
        anywhere closes it."""
        for table in self.sessions.values():
            for conn in table:
                table[conn] = True

    def heard_login(self, user: str, session: int | None) -> list[Connection]:
        """A multiLogin kick of ``user`` heard, in the one order every process
        hears them in (one channel): the sessions here whose own kick came
        before it are older, and returned to be closed; ``session``, the new
        one's connection id when it is here, is marked as heard.  Of two
        logins at once on two processes, the one whose kick comes last stays."""
        table = self.sessions.get(user, {})
        older = [conn for conn, heard in table.items() if heard and conn.id != session]
        for conn in table:
            if conn.id == session:
                table[conn] = True
        return older

    def set_profile(self, user: str, nick: str | None, avatar: str | None) -> tuple[str, str]:
        old_nick, old_avatar = self.profiles.pop(user, ("", ""))
        profile = (old_nick if nick is None else nick, old_avatar if avatar is None else avatar)
        self.profiles[user] = profile  # now the newest
        if len(self.profiles) > MAX_PROFILES:
            self._forget_profiles()
        for conn in self.sessions.get(user, ()):
            conn.nick, conn.avatar = profile
        return profile

    def _forget_profiles(self) -> None:
        """Drop the oldest profiles of users with no session here, down to the cap
        (then the cache no longer holds every stored profile)."""
        self.profiles_complete = False
        excess = len(self.profiles) - MAX_PROFILES
        for user in list(self.profiles):
            if excess <= 0:
                return
            if user not in self.sessions:
                del self.profiles[user]
                excess -= 1

    def detach(self, conn: Connection) -> None:
        """The connection is gone (or going): leave every room and session."""
        for gid in list(conn.rooms):
            self.remove_member(conn, gid)
        others = self.sessions.get(conn.user)
        if others is not None:
            others.pop(conn, None)
            if not others:
                del self.sessions[conn.user]
        if self.connections.pop(conn.id, None) is not None:
            self.metrics.connections.set(len(self.connections))

    def lost(self, conn: Connection) -> None:
        """The connection's socket is closed: nothing more can be written to it."""
        self.detach(conn)
        self.sockets.pop(conn, None)
        abort = self._aborts.pop(conn, None)
        if abort is not None:
            abort.cancel()
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
        self.metrics.closes.labels(close_label(code)).inc()
        self.detach(conn)
        loop = asyncio.get_running_loop()
        self._aborts[conn] = loop.call_later(self.settings.shutdown_grace or 0.1,
                                             self._abort, conn)

    def _abort(self, conn: Connection) -> None:
        self._aborts.pop(conn, None)
        if conn.close_code == Close.GOING_AWAY:  # the shutdown's (a kick's is not counted)
            self.aborted += 1
        conn.transport.abort()

    def going_away(self) -> None:
        """Close every connection with 1001 (graceful shutdown, drain)."""
        self.draining = True
        if not self.sockets:
            self.drained.set()
        for conn in list(self.connections.values()):
            self.close(conn, Close.GOING_AWAY, "server shutting down")

    # ---------------------------------------------------------------- fan-out
    def fan(self, group_id: str, full: bytes, lite: bytes | None) -> None:
        """Write a frame to every member here: at once in a room up to one
        chunk, else chunk by chunk behind any earlier frame still on its way."""
        room = self.rooms.get(group_id)
        if room is None or not room.members:
            return
        if not room.fanq and len(room.members) <= self.settings.fanout_chunk:
            self._write(room.members, full, lite)
            return
        # The members a frame goes to are those of now, when its batch is
        # published (and in the history): one who joins later has the batch in
        # its join reply, and must not get it again from a job that starts
        # later.  A waiting job carries this frame too only if nobody joined
        # since its list was taken (else the joiner would miss this one), or
        # when ``MAX_WAITING`` jobs wait already: then its list is taken anew
        # (the joiners since may get one of its batches again, rather than the
        # queue and its lists growing while the fan-out is behind).
        fanq = room.fanq
        if len(fanq) > 1:
            last = fanq[-1]
            if last.joined != room.joined and len(fanq) > MAX_WAITING:
                last.members, last.joined = list(room.members), room.joined
            if last.joined == room.joined:
                last.absorb(full, lite)
                return
        fanq.append(FanJob(full, lite, list(room.members), room.joined))
        if len(fanq) == 1:
            self._fan_step(room, fresh=True)

    def _fan_step(self, room: LocalRoom, fresh: bool = False) -> None:
        """One chunk of the first job (``fresh``: its list taken just now)."""
        if not room.fanq:
            return  # the room closed since this step was scheduled
        job = room.fanq[0]
        chunk = self.settings.fanout_chunk
        try:
            if fresh:  # nobody has left since the list was taken
                part = job.members[:chunk]
            else:  # skip members who left since the list was taken
                members = room.members
                part = [c for c in job.members[job.pos:job.pos + chunk] if c in members]
            job.pos += chunk
            self._write(part, job.full, job.lite)
        finally:  # whatever happened, the room's queue moves on
            if job.pos >= len(job.members):
                room.fanq.popleft()
                job.reply()
            if room.fanq and self.rooms.get(room.group_id) is room:
                asyncio.get_running_loop().call_soon(self._fan_step, room)
            else:
                _end_jobs(room)

    def after_echo(self, group_id: str, conn: Connection, data: bytes) -> bool:
        """A sender's reply, which must follow its echo: when the room's
        fan-out is chunked and still on its way, it waits for the job that
        carries the echo (the last one) to be done.  False: nothing is on its
        way, write it now."""
        room = self.rooms.get(group_id)
        if room is None or not room.fanq:
            return False
        room.fanq[-1].replies.append((conn, data))
        return True

    def _write(self, members: Iterable[Connection], full: bytes, lite: bytes | None) -> None:
        s = self.settings
        written, degraded, shed = fanout(members, full, lite, s.outbox_soft_bytes,
                                         s.outbox_hard_bytes, self.hold)
        hot = self.metrics.hot
        hot.frames += written
        if degraded:
            hot.frames_lite += degraded
        for conn in shed:
            self.shed(conn)

    def shed(self, conn: Connection) -> None:
        """Drop a member that cannot keep up (kicked "slow", close 4008)."""
        self.metrics.shed.inc()
        self.kick(conn, "slow")

    # ---------------------------------------------------------------- tips
    def push_tips(self, group_id: str, tips: list[dict[str, Any]]) -> None:
        room = self.rooms.get(group_id)
        if tips and room is not None and room.members:
            self.fan(group_id, frame(room.encode("tips", "tips", tips)), None)

    def merge_tips(self, group_id: str, joins: dict[str, Any] | None,
                   quits: dict[str, Any] | None) -> None:
        """Joins and quits another process announced: into this room's next
        flush here (nothing when no member is here to see them)."""
        room = self.rooms.get(group_id)
        if room is None or not room.members or (joins is None and quits is None):
            return
        _absorb(room.merged_joins, joins)
        _absorb(room.merged_quits, quits)
        self._want_tips(room)

    def _want_tips(self, room: LocalRoom) -> None:
        self._tip_rooms[room] = None
        if self._tip_handle is None:
            loop = asyncio.get_running_loop()
            self._tip_handle = loop.call_later(self.settings.tip_interval, self.flush_tips)

    def flush_tips(self) -> None:
        self._tip_handle = None
        rooms, self._tip_rooms = self._tip_rooms, {}
        if self.hooks.enabled:
            self.hooks.flush_members()
        for room in rooms:
            if self.rooms.get(room.group_id) is room:
                total = None if self.online_of is None else self.online_of(room.group_id)
                self.push_tips(room.group_id, room.take_member_tips(self.announce, total))
            if not room.members and not room.fanq and self.rooms.get(room.group_id) is room:
                self.forget_room(room.group_id)  # nobody here: the room costs nothing locally


def _end_jobs(room: LocalRoom) -> None:
    """The room's frames on their way go no further; the replies waiting for
    them are written."""
    for job in room.fanq:
        job.reply()
    room.fanq.clear()
