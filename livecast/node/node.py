"""The node: one livecast process, wiring its local hub to the rooms it owns
(docs/design.md, "Shape of a process").

- ``rooms``: group id -> ``RoomOwner`` (owner.py): the group's state, its
  scheduler, seq and dispatch timer.  On one process every room's owner is
  here.
- ``hub``: ``LocalHub`` (hub.py): this process's connections, sessions,
  members, fan-out and tips.
- ``link``: ``ClusterLink`` (cluster.py) on this process's broker: the
  in-memory one when the process is alone, Redis in a cluster (then also
  ``cluster``).  One code path either way: leases, publish, controls, tips.
- collaborators, injected and owned by the app's lifecycle (gateway/app.py):
  ``store`` (durable room state), ``broker``, ``webhooks``, ``clock``.

Invariants:
1. Stored before acknowledged: a change of a room's state (profile, custom
   data, counters, attributes, mutes, bans, rate, kick times) is written to
   the store before it is answered or pushed to members; if the store refuses
   it, nothing changes and the caller gets 10002.  Changes of one room are
   applied one at a time (``_locks``), in the order asked.
2. Never per message: messages in flight are not stored; a room's seq starts
   at 1 in each ``epoch`` (the node's start time in ms), which join and
   getGroupInfo answer, so a client sees a restart instead of reused numbers.
3. A message's fate is a value for its address (core/fate.py): ``settle``
   answers the sender's connection or REST call, wherever it is, exactly once.
4. One rule decides whether a sender may send (``core.fate.send_refusal``),
   asked when the send arrives and again after its before-send callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, ValuesView
from typing import Any, TypeVar

import orjson

from livecast.backplane.broker import (
    Broker,
    BrokerError,
    Destroy,
    KeyedLocks,
    Kick,
    ProfileChanged,
    Tips,
)
from livecast.backplane.memory_broker import MemoryBroker
from livecast.core.callbacks import DROP_REASON
from livecast.core.fate import (
    Address,
    Delivered,
    Dropped,
    Failed,
    Fate,
    delivered_reply,
    fate_reply,
    rest_answer,
    send_refusal,
)
from livecast.core.group import Group, new_group_id, wire_time
from livecast.core.group_attrs import AttrChange, GroupAttrs
from livecast.core.profiles import Profile, merge, nick_and_avatar
from livecast.core.protocol import reply
from livecast.core.records import group_record, restore_group
from livecast.core.scheduler import Pending, Priority, RoomScheduler
from livecast.core.wsframe import frame
from livecast.errors import Code, LivecastError
from livecast.node.cluster import AWAY_INFO, ClusterLink
from livecast.node.connection import Connection
from livecast.node.history import HistoryBook
from livecast.node.hooks import Hooks
from livecast.node.hub import MAX_PROFILES, LocalHub
from livecast.node.kicks import KickTimes, MemoryKickTimes
from livecast.node.metrics import Metrics
from livecast.node.owner import RoomOwner, Timers
from livecast.node.room import Outgoing
from livecast.settings import Settings
from livecast.store.base import Store, StoreError
from livecast.store.memory import MemoryStore
from livecast.webhooks.client import Webhooks

log = logging.getLogger("livecast.node")
T = TypeVar("T")
# a cluster's read-change-write of a room or a profile (Node._everywhere): how
# long a change waits for one on another process, and how long a lock lives
# if its holder dies holding it
LOCK_WAIT = 5.0
LOCK_TTL = 10.0


class LoopTimers:
    """The running event loop, as the room owners' timers.  The loop is looked
    up once, not per call: ``asyncio.get_running_loop`` makes a ``getpid``
    system call each time (it checks for a fork), two or three per message."""

    __slots__ = ("_loop",)

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None or loop.is_closed():  # first use, or a node outliving its loop
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def time(self) -> float:
        return self.loop.time()

    def call_soon(self, callback: Callable[[], object]) -> asyncio.Handle:
        return self.loop.call_soon(callback)

    def call_at(self, when: float, callback: Callable[[], object]) -> asyncio.TimerHandle:
        return self.loop.call_at(when, callback)


class Node:
    def __init__(self, settings: Settings, metrics: Metrics | None = None,
                 clock: Callable[[], float] = time.time, kicks: KickTimes | None = None, *,
                 store: Store | None = None, broker: Broker | None = None,
                 webhooks: Webhooks | None = None, timers: Timers | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.kicks: KickTimes = kicks or MemoryKickTimes()  # UserSig revocation
        self.store: Store = store or MemoryStore()
        self._profile_locks = KeyedLocks()  # one change of a user's profile at a time
        self.webhooks = webhooks or Webhooks(settings, self.metrics.registry, clock)
        self.hooks = Hooks(self.webhooks, clock)
        self.hub = LocalHub(settings, self.metrics, self.hooks)
        self.hub.profiles_complete = store is None  # a store of its own: empty
        self.timers: Timers = timers or LoopTimers()
        self.rooms: dict[str, RoomOwner] = {}
        # this process's link to its broker; ``cluster`` too when it is shared
        self.link = ClusterLink(self, broker or MemoryBroker(node_id=""))
        self.cluster: ClusterLink | None = None
        self.epoch = int(clock() * 1000)
        self.history = HistoryBook(settings, clock, self.epoch)  # node/history.py
        # each message offered to a room that has a before-send callback (node/likes.py)
        self.on_admit: Callable[[str, Outgoing], None] | None = None
        self.on_drop: Callable[[str], None] | None = None  # a room ended here (node/likes.py)
        self.rest_waiters: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_waiter = 0
        self._locks: dict[str, asyncio.Lock] = {}
        self._held: dict[str, list[Any]] = {}  # cluster: a tick's deliveries, per room
        self._holding: Connection | None = None  # its tick frame held for its reply (publish)
        self._reserved: set[str] = set()
        # cluster: joins on their way per room, whose ring (node/history.py)
        # must not be dropped under them
        self._joining: dict[str, int] = {}
        self._group_counter = 0
        self._salt = os.urandom(8)

    # ----------------------------------------------------------- lifecycle
    async def start(self) -> int:
        """Load every stored room and kick time; returns the number of rooms."""
        snap = await self.store.load_all(self.clock())
        for record in snap.groups:
            self._own(restore_group(record))
        for user, at in snap.kicks.items():
            self.kicks.record_kick(user, at)
        await self.reload_profiles()
        self.metrics.rooms.set(len(self.rooms))
        self.hub.watch = self.link.watch
        self.hub.announce = self.link.announce_members
        self.hub.online_of = self.online
        if self.cluster is not None:
            self._follow_history(self.cluster)
        await self.link.start()
        return len(snap.groups)

    def join_cluster(self, broker: Broker) -> None:
        """This process is a member of a cluster on ``broker`` (before ``start``)."""
        self.link = self.cluster = ClusterLink(self, broker)
        fan, keep = self.hub.fan, self.history.on_batch

        def on_batch(group_id: str, full: bytes, lite: bytes | None) -> None:
            fan(group_id, full, lite)
            keep(group_id, full)  # every process's ring follows the batches (node/history.py)
        self.link.on_batch = on_batch

    async def ready(self) -> bool:
        return (not self.hub.draining and await self.store.ping()
                and await self.link.broker.ready())

    @property
    def settings(self) -> Settings:
        return self._settings

    @settings.setter
    def settings(self, settings: Settings) -> None:
        """New settings reach the hub too (tests change limits on a running node)."""
        self._settings = settings
        if hasattr(self, "hub"):
            self.hub.settings = settings

    # the local hub's state, as the gateway and the admin layer read it
    @property
    def connections(self) -> ValuesView[Connection]:
        return self.hub.connections.values()

    @property
    def sockets(self) -> dict[Connection, None]:
        return self.hub.sockets

    @property
    def sessions(self) -> dict[str, dict[Connection, bool]]:
        return self.hub.sessions

    @property
    def profiles(self) -> dict[str, tuple[str, str]]:
        return self.hub.profiles

    @property
    def draining(self) -> bool:
        return self.hub.draining

    @property
    def drained(self) -> asyncio.Event:
        return self.hub.drained

    # ----------------------------------------------------------- groups
    def _own(self, group: Group) -> RoomOwner:
        s = self.settings
        rate = s.room_rate if group.rate is None else group.rate
        burst = s.room_burst if group.burst is None else group.burst
        sched = RoomScheduler(rate, burst, self.timers.time(), s.max_wait)  # monotonic
        owner = RoomOwner(group, sched, self, self.timers, self.clock, s.tick)
        self.rooms[group.group_id] = owner
        return owner

    async def create_group(self, owner: str, fields: dict[str, Any],
                           group_id: str | None = None, operator: str | None = None,
                           client_ip: str = "") -> Group:
        """A new room, stored; ``operator`` (the REST caller) gets the after-create callback."""
        if len(self.rooms) + len(self._reserved) >= self.settings.max_rooms:
            raise LivecastError(Code.TOO_MANY_ROOMS, f"at most {self.settings.max_rooms} rooms "
                                                     "(LIVECAST_MAX_ROOMS)")
        if group_id is None:
            group_id = self._fresh_group_id()
        elif group_id in self.rooms or group_id in self._reserved:
            room = self.rooms.get(group_id)
            taken = room is not None and room.group.owner == owner
            raise LivecastError(Code.GROUP_ID_TAKEN_BY_YOU if taken else Code.GROUP_ID_TAKEN,
                                f"group id {group_id!r} is already used")
        group = Group.create(group_id, owner, self.clock(), fields)
        self._reserved.add(group_id)
        try:
            await self._unique(group_id, owner)
            if not await self._store(self.store.put_group(group_record(group), create=True)):
                await self._unique(group_id, owner)  # created elsewhere meanwhile: its owner's
                raise LivecastError(Code.GROUP_ID_TAKEN, f"group id {group_id!r} is already used")
        finally:
            self._reserved.discard(group_id)
        self._own(group)
        await self.link.sweep_room(group_id)
        self.link.announce(Tips(group_id, []))  # the others load it
        self.metrics.rooms.set(len(self.rooms))
        log.info("room created: %s", group_id)
        if operator is not None:
            self.hooks.created(group, operator, client_ip)
        return group

    async def _unique(self, group_id: str, owner: str) -> None:
        """In a cluster, a group id another process created is taken too."""
        stored = await self._store(self.store.load_group(group_id))
        if stored is not None:
            taken = stored.owner == owner
            raise LivecastError(Code.GROUP_ID_TAKEN_BY_YOU if taken else Code.GROUP_ID_TAKEN,
                                f"group id {group_id!r} is already used")

    def adopt(self, group: Group) -> RoomOwner:
        """A room created on another process of the cluster."""
        room = self._own(group)
        self.metrics.rooms.set(len(self.rooms))
        return room

    def _fresh_group_id(self) -> str:
        while True:
            self._group_counter += 1
            gid = new_group_id(self._group_counter, self._salt)
            if gid not in self.rooms and gid not in self._reserved:
                return gid

    def room(self, group_id: str) -> RoomOwner:
        room = self.rooms.get(group_id)
        if room is None:
            raise LivecastError(Code.GROUP_NOT_FOUND, f"group {group_id!r} does not exist")
        return room

    def online(self, group_id: str) -> int:
        """Members of the room on this process, and on the others of the cluster."""
        return self.hub.online(group_id) + self.link.online(group_id)

    async def room_members(self, group_id: str) -> list[tuple[str, int, str, str, str]]:
        """The room's logged-in members on every process, as (node id,
        connection id, user, nick, avatar): this process's first, then the
        others' (``ClusterLink.members``), each process's newest join first."""
        mine = [(self.node_id, int(m[0]), m[1], m[2], m[3])
                for m in self.hub.logged_in_members(group_id)]
        if self.cluster is None:
            return mine
        return mine + await self.cluster.members(group_id)

    async def destroy_group(self, group_id: str, client_ip: str = "") -> None:
        room = self.room(group_id)
        async with self._lock(group_id), self._everywhere(f"room:{group_id}"):
            await self._store(self.store.delete_group(group_id))
        if self.rooms.get(group_id) is not room:
            return  # destroyed meanwhile
        self.drop_room(group_id)
        self.link.announce(Destroy(group_id))
        self.hooks.destroyed(room.group, client_ip)
        log.info("room destroyed: %s", group_id)

    def drop_room(self, group_id: str) -> None:
        """The room ends on this process: waiting messages fail (10010), members
        get the ``destroyed`` tip and are closed."""
        room = self.rooms.pop(group_id, None)
        if room is None:
            return
        if self.on_drop is not None:
            self.on_drop(group_id)
        room.close(Code.GROUP_NOT_FOUND)  # waiting messages answered before the kicks below
        self._locks.pop(group_id, None)
        self._held.pop(group_id, None)
        self.history.forget(group_id)
        tip = frame(room.encode("tips", "tips", [{"type": "destroyed"}]))
        for conn in self.hub.close_room(group_id, tip):
            self.hub.remove_member(conn, group_id, report=False)  # after-destroyed covers it
            self.hub.kick(conn, "groupDestroyed")
        self.hub.forget_room(group_id)
        self.metrics.rooms.set(len(self.rooms))

    def _lock(self, group_id: str) -> asyncio.Lock:
        lock = self._locks.get(group_id)
        if lock is None:
            lock = self._locks[group_id] = asyncio.Lock()
        return lock

    async def _store(self, write: Any) -> Any:
        """Await a store write; a refusal becomes 10002 (nothing was acknowledged)."""
        try:
            return await write
        except StoreError as err:
            log.warning("store: %s", err)
            raise LivecastError(Code.INTERNAL, "the change could not be stored: "
                                               "nothing was changed, try again") from err

    async def change(self, group_id: str, apply: Callable[[Group], T],
                     restrictions: bool = False) -> T:
        """Apply a change to a copy of the room's group, store it, then make it
        the room's (invariant 1).  ``restrictions``: mutes or bans changed.
        In a cluster the room is read from the store first (another process
        may have changed it, its announcement not here yet), and a room
        destroyed meanwhile is not written back."""
        room = self.room(group_id)
        gone = LivecastError(Code.GROUP_NOT_FOUND, f"group {group_id!r} does not exist")
        async with self._lock(group_id), self._everywhere(f"room:{group_id}"):
            if self.rooms.get(group_id) is not room:
                raise gone
            if self.cluster is not None and not await self._store(self.cluster.refresh(group_id)):
                raise gone
            draft = copy.deepcopy(room.group)
            result = apply(draft)
            if result or restrictions:
                record = group_record(draft)
                write = self.store.put_group if restrictions else self.store.put_settings
                if not await self._store(write(record)):
                    raise gone  # destroyed meanwhile, elsewhere
                # messages went on meanwhile (never back: the stored time may be newer)
                draft.last_msg_time = max(draft.last_msg_time, room.group.last_msg_time)
                room.group = draft
        return result

    async def modify_group(self, group_id: str, fields: dict[str, Any], operator: str = "",
                           client_ip: str = "") -> dict[str, Any]:
        now = self.clock()
        changes = await self.change(group_id, lambda g: g.modify(fields, now))
        if changes:
            self.push_tips(group_id, [{"type": "groupInfo", "changes": changes}])
            self.hooks.info_changed(group_id, operator, changes, client_ip)
        return changes

    async def update_counters(self, group_id: str, items: object,
                              mode: object) -> list[dict[str, Any]]:
        result = await self.change(group_id, lambda g: g.update_counters(items, mode))
        if result:
            self.push_tips(group_id, [{"type": "counters", "counters": result}])
        return result

    async def delete_counters(self, group_id: str,
                              keys: list[str] | None) -> list[dict[str, Any]]:
        result = await self.change(group_id, lambda g: g.delete_counters(keys))
        if result:
            deleted = [item["Key"] for item in result]
            self.push_tips(group_id,
                               [{"type": "counters", "counters": [], "deleted": deleted}])
        return result

    async def mute(self, group_id: str, users: list[str], seconds: int) -> None:
        now = self.clock()
        untils = await self.change(group_id, lambda g: [g.mute(u, seconds, now) for u in users],
                                   restrictions=True)
        self.push_tips(group_id, [{"type": "mute", "member": u, "until": wire_time(t)}
                                      for u, t in zip(users, untils, strict=True)])

    async def ban(self, group_id: str, users: list[str], seconds: int,
                  operator: str = "administrator", client_ip: str = "") -> None:
        now = self.clock()
        untils = await self.change(group_id, lambda g: [g.ban(u, seconds, now) for u in users],
                                   restrictions=True)
        self._changed(group_id)
        kicked: list[str] = []
        for user, until in zip(users, untils, strict=True):
            if self.kick_user(user, "banned", group_id):
                kicked.append(user)  # once, however many sessions it had
            # the other processes apply the ban, remove and report theirs (on_kick)
            self.link.announce(Kick(user, "banned", group_id, operator, client_ip, until))
        self.hooks.kicked(group_id, kicked, operator, client_ip)

    def kick_everywhere(self, user: str, reason: str) -> None:
        """Close every session of ``user``, on every process of the cluster."""
        self.kick_user(user, reason)
        self.link.announce(Kick(user, reason))

    def kick_sessions(self, conns: list[Connection], reason: str) -> None:
        for conn in conns:
            self.hub.kick(conn, reason)

    def kick_user(self, user: str, reason: str, group_id: str = "") -> bool:
        """Close ``user``'s sessions on this process (those in ``group_id``, or
        all); True if there were any."""
        if group_id:
            conns = self.hub.user_members(user, group_id)
        else:
            conns = list(self.hub.sessions.get(user, ()))
        for conn in conns:
            if group_id:
                self.hub.remove_member(conn, group_id, report=False)
            self.hub.kick(conn, reason)
        return bool(conns)

    async def unban(self, group_id: str, users: list[str]) -> None:
        await self.change(group_id, lambda g: [g.unban(u) for u in users], restrictions=True)
        self._changed(group_id)

    async def set_rate(self, group_id: str, rate: int, burst: int) -> None:
        def apply(g: Group) -> bool:
            g.rate, g.burst = rate, burst
            return True
        await self.change(group_id, apply)
        self.room(group_id).configure(rate, burst)
        self._changed(group_id)

    async def set_join_history(self, group_id: str, on: bool) -> None:
        """The room's join history (``join`` with ``history``) on or off, stored."""
        def apply(g: Group) -> bool:
            g.join_history = on
            return True
        await self.change(group_id, apply)
        self._changed(group_id)

    async def message_position(self, group_id: str) -> tuple[int, float]:
        """The room's (NextMsgSeq, LastMsgTime): on one process, and where this
        process owns it, its scheduler's and its own; elsewhere in a cluster
        the last seq published (one read of the broker) and the newer of the
        last time known here and the newest message this process holds."""
        room = self.room(group_id)
        held = self.history.last_time_ms(group_id) / 1000  # 0 when none is held here
        last_time = max(room.group.last_msg_time, held)
        if self.cluster is None or group_id in self.link.tokens:
            return room.sched.next_seq, last_time
        try:
            last = await self.link.broker.last_seq(group_id)
        except BrokerError:
            raise LivecastError(Code.INTERNAL, AWAY_INFO) from None
        return last + 1, last_time

    async def read_history(self, group_id: str, count: int) -> tuple[int, int, list[bytes]]:
        """The room's newest ``count`` messages held (REST): (historyEpoch,
        lastSeq, messages oldest first).  In a cluster one read seeds this
        process's ring, kept only while the room has members here."""
        room, book = self.room(group_id), self.history
        await book.ready(group_id)
        last = book.last_seq(group_id) if self.cluster is not None else room.sched.next_seq - 1
        answer = book.epoch_of(group_id), last, book.last(group_id, count)
        if self.cluster is not None and not self._followed_here(group_id):
            book.forget(group_id)
        return answer

    def _followed_here(self, group_id: str) -> bool:
        """Cluster: the room's ring is kept while it has members here or a
        join on its way (node/history.py)."""
        return bool(self.hub.online(group_id) or self._joining.get(group_id))

    def _changed(self, group_id: str) -> None:
        """A change with no tip of its own: the other processes reload the room."""
        self.link.announce(Tips(group_id, []))

    def system_notification(self, group_id: str, content: str) -> None:
        self.room(group_id)
        self.push_tips(group_id, [{"type": "system", "content": content}])

    async def record_kick(self, user: str, at: float) -> None:
        """``user`` was kicked at ``at``: UserSigs issued until then are revoked (stored)."""
        await self._store(self.store.set_kick(user, at))
        self.kicks.record_kick(user, at)

    # ----------------------------------------------------------- group attributes
    async def write_attrs(self, group_id: str,
                          write: Callable[[GroupAttrs], AttrChange | None]) -> GroupAttrs:
        """An admin's write (REST): applied, stored, and a change pushed to every
        member as one ``groupAttributes`` tip; returns the attributes after it."""
        change = await self.change(group_id, lambda g: write(g.attrs))
        if change is not None:
            self.push_tips(group_id, [change.tip()])
        return self.room(group_id).group.attrs

    async def member_write_attrs(self, conn: Connection, group_id: str, seq: int,
                                 write: Callable[[GroupAttrs], AttrChange | None]) -> GroupAttrs:
        """A member's write (WebSocket): allowed by ``member_attrs``, from a
        logged-in member who may speak, at the current ``attrSeq``
        (compare-and-set, core/group_attrs.py), within the group's budget."""
        if not self.settings.member_attrs:
            raise LivecastError(Code.NO_PERMISSION, "group attributes are written by the app "
                                                    "backend only on this server")
        room = self.room(group_id)
        now = self.clock()
        member = conn.logged_in and not conn.guest and self.hub.is_member(conn, group_id)
        refusal = send_refusal(room.group, conn.user, now, member=member,
                               is_admin=self.settings.is_admin(conn.user))
        if refusal is not None:
            raise LivecastError(*refusal)
        room.group.attrs.member_write(seq, now)  # a stale or flooding write goes at once

        def checked(attrs: GroupAttrs) -> AttrChange | None:
            attrs.check_seq(seq)  # again under the room's lock: another write may be first
            return write(attrs)
        return await self.write_attrs(group_id, checked)

    # ----------------------------------------------------------- members
    def attach(self, conn: Connection) -> None:
        self.hub.attach(conn)

    def login(self, conn: Connection, user: str) -> None:
        self.hub.login(conn, user)
        if not self.settings.multi_login:  # its older sessions on other processes
            self.link.announce(Kick(user, "multiLogin", session=conn.id))

    # ----------------------------------------------------------- profiles
    # A user's profile (core/profiles.py) is stored; each process caches the
    # nick and avatar (``hub.profiles``): every stored one when there are at
    # most MAX_PROFILES (read at start: a user not in the cache has none, and
    # a login is answered on the reader), else the newest ones, and a login
    # of a user not in it reads the store first, off the reader.  A change is
    # stored, then announced to every process (ProfileChanged).
    def profile_known(self, user: str) -> bool:
        """Whether ``user``'s nick and avatar are known here without a read."""
        return self.hub.profiles_complete or user in self.hub.profiles

    async def load_profile(self, user: str) -> None:
        """``user``'s nick and avatar into the cache, read from the store if
        not known here (a store that fails: 10002)."""
        if self.profile_known(user):
            return
        async with self._profile_locks.hold(user):  # in turn with changes heard of
            if self.profile_known(user):  # read meanwhile
                return
            self.hub.set_profile(user, *nick_and_avatar(await self._profile_of(user)))

    async def _profile_of(self, user: str) -> Profile:
        """``user``'s whole stored profile ({} if none; a store that fails: 10002)."""
        return (await self.stored_profiles([user])).get(user, {})

    async def stored_profiles(self, users: list[str]) -> dict[str, Profile]:
        """The whole stored profiles of ``users`` (REST portrait_get)."""
        found: dict[str, Profile] = await self._store(self.store.load_profiles(users))
        return found

    async def change_profile(self, user: str, nick: str | None = None,
                             avatar: str | None = None,
                             tags: Mapping[str, str | int] | None = None) -> tuple[str, str]:
        """Merge a change into ``user``'s stored profile (None: unchanged), store
        it (invariant 1), then give every session of the user, here and on the
        other processes, its nick and avatar; returns them."""
        async with self._profile_locks.hold(user), self._everywhere(f"profile:{user}"):
            stored = await self._profile_of(user)
            profile = merge(stored, nick, avatar, tags)
            if profile != stored:
                await self._store(self.store.put_profile(user, profile))
            now = nick_and_avatar(profile)
            self.hub.set_profile(user, *now)
            self.link.announce(ProfileChanged(user, *now))
        return now

    async def reload_profile(self, user: str) -> None:
        """``user``'s profile changed on another process: read it again, in
        turn with this process's own changes of it (the last read wins, and
        it is the newest), if it is cached or in session here."""
        async with self._profile_locks.hold(user):
            hub = self.hub
            if not (hub.profiles_complete or user in hub.profiles or user in hub.sessions):
                return
            try:
                stored = await self._profile_of(user)
            except LivecastError as err:  # the store failed: read again at the next sweep
                log.warning("profile of %s not read again: %s", user, err)
                self.link.reread_profiles.add(user)
                return
            hub.set_profile(user, *nick_and_avatar(stored))

    @contextlib.asynccontextmanager
    async def _everywhere(self, name: str) -> AsyncIterator[None]:
        """In a cluster, the store's lock ``name`` (Store.lock) held around a
        read-change-write, so that one made on another process at the same
        time is not undone by it; taken within ``LOCK_WAIT`` s (else 10002),
        given up after ``LOCK_TTL`` s should this process die holding it.
        One process: its own locks are enough."""
        if self.cluster is None:
            yield
            return
        deadline, pause = time.monotonic() + LOCK_WAIT, 0.002
        while (token := await self._store(self.store.lock(name, LOCK_TTL))) is None:
            if time.monotonic() > deadline:
                raise LivecastError(Code.INTERNAL, "being changed on another process: "
                                                   "nothing was changed, try again")
            await asyncio.sleep(pause)  # another process holds it: ask again
            pause = min(pause * 2, 0.05)
        try:
            yield
        finally:
            try:
                await self.store.unlock(name, token)
            except StoreError as err:  # it expires by itself
                log.warning("store: unlock %s: %s", name, err)

    async def reload_profiles(self) -> None:
        """The cache as stored now (at start; in a cluster after a gap in the
        subscriptions, where a ProfileChanged may have been missed): every
        stored profile if few enough, else those of the users with a session
        here, the others read again at their next login."""
        hub = self.hub
        stored = await self.store.all_profiles(MAX_PROFILES)
        if stored is not None:
            known = {user: nick_and_avatar(p) for user, p in stored.items()}
        else:
            users = list(hub.sessions)
            found = await self.store.load_profiles(users) if users else {}
            known = {user: nick_and_avatar(found.get(user, {})) for user in users}
        for user in [u for u in hub.profiles if u not in known]:
            if user in hub.sessions:  # no stored profile any more
                hub.set_profile(user, "", "")
            else:
                del hub.profiles[user]
        for user, (nick, avatar) in known.items():
            if hub.profiles.get(user) != (nick, avatar):
                hub.set_profile(user, nick, avatar)
        hub.profiles_complete = stored is not None and len(hub.profiles) <= MAX_PROFILES

    async def enter(self, conn: Connection, group_id: str,
                    args: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A join asked by a client: the before-join callback first (logged-in
        users only; guests have no account to report), then ``join``.  A room
        not known here may have just been created on another process: looked up
        first (cluster.py, invariant 10)."""
        if group_id not in self.rooms:
            await self.link.find(group_id)
        room = self.room(group_id)
        joining = self._joining
        joining[group_id] = joining.get(group_id, 0) + 1
        try:
            if self.hooks.enabled and conn.logged_in and not self.hub.is_member(conn, group_id):
                if room.group.is_banned(conn.user, self.clock()):
                    raise LivecastError(Code.NO_PERMISSION, "banned from this group")
                await self.hooks.before_join(group_id, conn.user, conn.peer)
            # cluster: one read per room (node/history.py); read again if the
            # ring was dropped meanwhile (a missed batch), at most twice more
            for _ in range(3):
                if args is None or not self.join_waits(args):
                    break
                await self.history.ready(group_id)
            if conn.closing:
                raise LivecastError(Code.NO_PERMISSION, "connection closed")
            return self.join(conn, group_id, args)
        finally:  # a cluster follows a room's history only while it has members here
            left = joining.pop(group_id) - 1
            if left:
                joining[group_id] = left
            if self.cluster is not None and not self._followed_here(group_id):
                self.history.forget(group_id)

    def join_waits(self, args: Mapping[str, Any]) -> bool:
        """Whether a join must first read the room's history (a cluster whose
        process does not follow the room yet): then it runs as ``enter``."""
        gid = args.get("groupId")
        return (isinstance(gid, str) and gid in self.rooms
                and self.history.needs_read(gid))

    def join(self, conn: Connection, group_id: str,
             args: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``conn`` joins (or is in already); ``args``: the join's optional
        ``history`` and ``sinceSeq``/``historyEpoch`` (docs/protocol.md, join).
        Registering the member and reading the history are one synchronous
        step: no live batch can fall between the reply's messages and the next push."""
        room = self.room(group_id)
        if not conn.logged_in:
            if not self.settings.allow_guests:
                raise LivecastError(Code.NO_PERMISSION, "guests are not allowed: login first")
            conn.guest = True
        elif room.group.is_banned(conn.user, self.clock()):
            raise LivecastError(Code.NO_PERMISSION, "banned from this group")
        self.hub.add_member(conn, group_id)
        group = room.group
        answer = {"group": group.profile(), "counters": group.counter_list(),
                  "onlineMemberNum": self.online(group_id), "epoch": self.epoch,
                  "groupAttributes": group.attrs.get(), "attrSeq": group.attrs.seq}
        if args is not None:
            answer.update(self._history_answer(room, args, conn))
        return answer

    def _history_answer(self, room: RoomOwner, args: Mapping[str, Any],
                        conn: Connection) -> dict[str, Any]:
        """A join's history (``history: N``) and recovery (``sinceSeq``) fields;
        their messages' size is charged to ``conn``'s request budget."""
        gid, book = room.group_id, self.history
        last_seq = book.last_seq(gid) if self.cluster is not None else room.sched.next_seq - 1
        out: dict[str, Any] = {"historyEpoch": book.epoch_of(gid), "lastSeq": last_seq}
        want = min(int(args.get("history") or 0), self.settings.join_history_max)
        since = args.get("sinceSeq")
        msgs: list[bytes] = []
        if since is not None:
            rec = book.since(gid, int(since), args.get("historyEpoch"), last_seq)
            out["recovered"], msgs = rec.recovered, rec.msgs
        if want > 0 and not out.get("recovered") and room.group.join_history:
            msgs = book.last(gid, want)
        if since is not None or want > 0:
            out["msgs"] = [orjson.Fragment(m) for m in msgs]
            conn.charge(sum(map(len, msgs)))
        return out

    def _follow_history(self, cluster: ClusterLink) -> None:
        """Cluster: the rings follow this process's subscriptions (node/history.py)."""
        book, watch = self.history, cluster.watch
        book.subscribe, book.unsubscribe = cluster.broker.subscribe, cluster.broker.unsubscribe

        def follow(gid: str, opened: bool) -> None:
            if not opened and not self._joining.get(gid):
                book.forget(gid)
            watch(gid, opened)
        self.hub.watch = follow

    def quit(self, conn: Connection, group_id: str, report: bool = True) -> None:
        self.hub.remove_member(conn, group_id, report)

    def lost(self, conn: Connection) -> None:
        self.hub.lost(conn)

    def kick(self, conn: Connection, reason: str) -> None:
        self.hub.kick(conn, reason)

    def close(self, conn: Connection, code: int, reason: str = "", kicked: bool = False) -> None:
        self.hub.close(conn, code, reason, kicked)

    def shed(self, conn: Connection) -> None:
        self.hub.shed(conn)

    # ----------------------------------------------------------- sending
    def check_send(self, conn: Connection, group_id: str, msg: Outgoing) -> RoomOwner:
        """The one send rule (core.fate.send_refusal) for a client's send."""
        room = self.room(group_id)
        member = conn.logged_in and not conn.guest and self.hub.is_member(conn, group_id)
        self._refuse(room, msg, member, self.settings.is_admin(conn.user))
        return room

    def check_rest_send(self, group_id: str, msg: Outgoing) -> RoomOwner:
        """The same rule for a REST send: made by the app admin on the sender's
        behalf, so only a personal mute or ban refuses it."""
        room = self.room(group_id)
        self._refuse(room, msg, True, True)
        return room

    def _refuse(self, room: RoomOwner, msg: Outgoing, member: bool, is_admin: bool) -> None:
        refusal = send_refusal(room.group, msg.sender, self.clock(), member=member,
                               is_admin=is_admin)
        if refusal is not None:
            if refusal[0] == Code.MUTED:
                self.hooks.failed(room.group_id, msg, Code.MUTED)
            raise LivecastError(*refusal)

    def submit(self, group_id: str, msg: Outgoing, room: RoomOwner | None = None) -> None:
        """Offer an admitted message to its room's owner (after webhooks);
        ``room``: the room ``check_send`` has just looked up (else looked up here)."""
        if room is None:
            room = self.room(group_id)
        link = self.link
        if group_id not in link.tokens or not (link.redis_ok and link.broker.connected()):
            if not link.available():  # Redis away: an explicit retry, at once
                self.answer(msg, Failed(Code.INTERNAL, AWAY_INFO))
                return
            link.forward(group_id, msg)  # the owner counts, schedules, answers
            return
        if self.on_admit is not None and msg.before_callback:
            self.on_admit(group_id, msg)  # before rate limiting, as before-send sees it
        self.metrics.hot.admitted[msg.priority] += 1
        room.offer(msg)

    async def send(self, group_id: str, msg: Outgoing, turn: asyncio.Future[Any] | None = None,
                   conn: Connection | None = None) -> None:
        """The send pipeline shared by WebSocket and REST: the before-send
        callback (which may reject, drop or rewrite), then the room's owner.
        ``turn``: an earlier send of the same sender, still on its way; this one
        asks the backend meanwhile and reaches the room after it.  After the
        callback the send rule is asked again (a ban, mute or kick meanwhile
        refuses it).  The sender's answer is its fate, at ``msg.reply_to``."""
        room: RoomOwner | None = self.room(group_id)
        if self.hooks.enabled:
            go_on = await self.hooks.before_send(group_id, msg)
            if turn is not None:
                await asyncio.wait([turn])
            if not go_on:  # dropped by the backend: a success with its reason
                self.answer(msg, Dropped(int(self.clock() * 1000), DROP_REASON))
                return
            room = self.rooms.get(group_id)
            if room is None:  # destroyed during the callback: reported (inv. 4)
                self.hooks.failed(group_id, msg, Code.GROUP_NOT_FOUND)
            else:
                room = self._still_allowed(room, msg, conn)
        self.submit(group_id, msg, room)  # the room may be gone after the await: 10010

    def _still_allowed(self, room: RoomOwner, msg: Outgoing, conn: Connection | None) -> RoomOwner:
        """The send rule asked again after before-send passed: a refusal now
        (a mute, a ban, a kick or quit, the sender's connection closed) ends
        the message, so it is reported to the backend (inv. 4) as well as
        answered."""
        try:
            if conn is None:
                return self.check_rest_send(room.group_id, msg)
            if conn.closing:
                raise LivecastError(Code.NO_PERMISSION, "connection closed")
            return self.check_send(conn, room.group_id, msg)
        except LivecastError as err:
            if err.code != Code.MUTED:  # _refuse reports a mute itself
                self.hooks.failed(room.group_id, msg, err.code, err.info)
            raise

    def rest_waiter(self) -> tuple[int, asyncio.Future[dict[str, Any]]]:
        """An address for a REST send's answer, and the future that gets it."""
        self._next_waiter += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.rest_waiters[self._next_waiter] = future
        return self._next_waiter, future

    # ----------------------------------------------------------- the owners' events
    def deliver(self, owner: RoomOwner, batch: list[tuple[int, Pending]], encoded: list[bytes],
                full: bytes, lite: bytes | None, time_ms: int) -> None:
        """A tick's delivered batch: published to the room's members (through
        the broker), then each message's fate settled, in seq order.  One
        process, whose deliveries never wait for the publish, keeps the batch
        in the room's history and settles each message here (``_delivered``,
        as ``settle_now`` does a delivery)."""
        gid = owner.group.group_id
        self.publish(owner, full, lite, batch[0][1].payload.reply_to)
        try:
            if self.cluster is not None or gid in self._held:
                for seq, pending in batch:  # a cluster's fates may wait for the publish
                    self.settle(gid, pending.payload, pending.priority, Delivered(seq, time_ms))
                return
            if self.history.enabled:
                self.history.record(gid, [seq for seq, _p in batch], encoded, time_ms)
            for seq, pending in batch:
                self._delivered(gid, pending.payload, pending.priority, Delivered(seq, time_ms))
        finally:  # the first sender's frame, if held for its reply, goes out regardless
            self.release()

    def publish(self, owner: RoomOwner, full: bytes, lite: bytes | None,
                first: Address | None = None) -> None:
        """Once across the broker; every subscriber (this process too) fans it
        out.  Published at once (in memory): no fate waits, the batch is
        written already, but for the frame of ``first``'s sender when it is a
        member here: that one goes out with its reply (``release`` if none
        comes).  Else this tick's Delivered fates wait for the publish."""
        gid = owner.group_id
        hub = self.hub
        if (first is not None and first.request is not None and not first.rest
                and (not first.node or first.node == self.link.node_id)):
            hub.hold = hub.connections.get(first.conn)
        try:
            held = self.link.publish(gid, full, lite, owner.sched.next_seq - 1)
        finally:
            self._holding, hub.hold = hub.hold, None
        if held is not None:
            self._held[gid] = held
        elif self._held:
            self._held.pop(gid, None)

    def release(self) -> None:
        conn = self._holding
        if conn is not None:
            self._holding = None
            if conn.held:  # no reply took it (the sender is gone, say)
                conn.write(b"")

    def ticked(self, seconds: float) -> None:
        self.metrics.hot.ticked(seconds)

    def settle(self, group_id: str, msg: Outgoing, priority: Priority, fate: Fate) -> None:
        """A message's fate: counted, answered at its address, reported.  In a
        cluster a delivery waits for its tick's publish (cluster.py)."""
        if self._held and isinstance(fate, Delivered):
            held = self._held.get(group_id)
            if held is not None:
                held.append((group_id, msg, priority, fate))
                return
        self.settle_now(group_id, msg, priority, fate)

    def settle_now(self, group_id: str, msg: Outgoing, priority: Priority, fate: Fate,
                   answered: bool = False) -> None:
        """``answered``: a delivery whose fate rode on the batch to the sender
        (cluster.py, invariant 13): counted and reported here, not answered again."""
        if isinstance(fate, Delivered):
            self._delivered(group_id, msg, priority, fate, answered)
            return
        self.metrics.hot.settled(priority, fate)
        try:
            self.answer(msg, fate)
            code = fate.code if isinstance(fate, Failed) else Code.FREQ_LIMIT
            self.hooks.failed(group_id, msg, code)
        except Exception:  # one sender's trouble never costs the others their answers
            log.exception("answering a message of %s", group_id)

    def _delivered(self, group_id: str, msg: Outgoing, priority: Priority, fate: Delivered,
                   answered: bool = False) -> None:
        """A delivery settled: counted, answered after its room's echo (unless
        its fate rode on the batch), reported to the after-send webhook."""
        self.metrics.hot.delivered[priority] += 1
        try:
            if not answered:
                self.answer(msg, fate, group_id)
            if self.hooks.enabled:
                self.hooks.delivered(group_id, msg, fate.seq, fate.time_ms)
        except Exception:  # one sender's trouble never costs the others their answers
            log.exception("answering a message of %s", group_id)

    def answer(self, msg: Outgoing, fate: Fate, group_id: str = "") -> None:
        """A message's fate, to its sender: here, or on its process in a cluster.
        ``group_id``: a delivery's room, whose echo the reply follows."""
        address = msg.reply_to
        if address is None:
            return
        if address.node and address.node != self.link.node_id:
            self.link.fate_elsewhere(address, fate)
            return
        self.answer_local(address, fate, group_id)

    def answer_local(self, address: Address, fate: Fate, group_id: str = "") -> None:
        """``group_id`` (a delivery's): the reply follows the sender's echo,
        after a chunked fan-out still on its way (``LocalHub.after_echo``)."""
        if address.rest:
            future = self.rest_waiters.pop(address.rest, None)
            if future is None or future.done():
                return
            if isinstance(fate, Failed):
                future.set_exception(LivecastError(fate.code, fate.info))
                future.exception()  # retrieved: the waiting handler re-raises it
            else:
                future.set_result(rest_answer(fate))
        elif address.request is not None:
            conn = self.hub.connections.get(address.conn)
            if conn is not None:
                if isinstance(fate, Delivered):  # every delivered message's: made without a dict
                    data = frame(delivered_reply(address.request, fate.seq, fate.time_ms))
                else:
                    code, info, fields = fate_reply(fate)
                    data = frame(orjson.dumps(reply(address.request, code, info, **fields)))
                if not (group_id and self.hub.after_echo(group_id, conn, data)):
                    conn.write(data)

    # ----------------------------------------------------------- tips and shutdown
    def push_tips(self, group_id: str, tips: list[dict[str, Any]]) -> None:
        """Tips for the whole room: to this process's members, and in a cluster
        to every process's (each reloads the room from the store first)."""
        self.hub.push_tips(group_id, tips)  # here at once; the others reload first
        self.link.announce(Tips(group_id, tips))

    def _flush_tips(self) -> None:
        self.hub.flush_tips()

    def going_away(self) -> None:
        """Every waiting message fails (10002), then every connection gets 1001."""
        self.hub.draining = True
        for room in self.rooms.values():
            room.settle_pending(Code.INTERNAL)
        self.hub.going_away()

    @property
    def node_id(self) -> str:
        """This process in its cluster ("" alone): fates are addressed to it."""
        return self.link.node_id

    async def close_collaborators(self) -> None:
        for room in self.rooms.values():
            room.close(Code.INTERNAL)
        await self.link.close()
        self.hooks.flush_members()  # the joins and exits of the tip interval, shutdown's own
        await self.webhooks.close()
        if self.history.store is not None:
            await self.history.store.close()
        await self.store.close()
