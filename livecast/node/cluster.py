"""This process as a member of a livecast cluster (docs/design.md, "The cluster").

``ClusterLink`` is the node's ``EventHandler`` for the broker
(backplane/broker.py) and runs the membership loop.  Every process has one:
alone, on the in-memory broker (``MemoryBroker``: the process is a cluster
of one, on the same code path), or on Redis (``RedisBroker``).

Invariants:
1. One owner per room: only the process holding a room's lease (with its
   fencing token) offers messages to the room's scheduler and publishes its
   batches; a send made on any other process is forwarded to the owner.  A
   new owner continues the room's seq from the broker's ``last_seq``.
2. Every forwarded send is answered exactly once: by its fate from the
   owner, or, if no fate comes within the longest wait plus ``FORWARD_GRACE``
   (the owner died or was deposed), with 10002 "retry".  Nothing is lost
   silently; a fate that comes after its send was answered is ignored.  One
   timer serves every forwarded send (the earliest deadline), not one each.
3. A tick's batch crosses Redis once (one publish by the owner); every process
   with members in the room is subscribed and writes the same bytes.
4. Room changes are stored first (node.py), then announced (``Tips`` to every
   process): each process reloads the room from the store before it pushes
   the tips to its members, so reads answer the same everywhere.
5. Online counts are summed over the processes' heartbeats; a dead process's
   members leave the count when its heartbeat expires (``HEARTBEAT_TTL``).
6. While Redis is away (a pub/sub connection down, or the last call to Redis
   failed), a send is answered 10002 "retry" at once (``available``), and
   forwarded sends still unanswered are answered 10002 as soon as it is
   noticed: their fates could not cross.  The broker reconnects and
   resubscribes by itself; the next successful sweep makes the process
   available again.
7. Join and quit tips are aggregated per tip interval on each process and
   announced once per room per interval (``MemberTips``); each process merges
   the others' into its own next flush (hub.py, invariant 3).
8. Leases cost one round trip per loop per backend server, whatever the
   number of rooms (``renew_leases``/``acquire_leases``), and are renewed
   every third of ``LEASE_TTL`` on the monotonic clock.  A loop that ran late
   (a starved process) keeps its rooms when nobody took them meanwhile (the
   fence is still its token); a room taken over is lost at once.
9. A tick's publish on a broker that publishes synchronously (in memory)
   costs no task, future or await: the batch is fanned out within the tick
   and its senders answered at once.
10. A group id not known here is looked up in the store before a join is
    answered 10010 (a room just created on another process); one lookup per
    id at a time, and a miss is remembered for ``MISS_TTL`` (a flood of joins
    to absent rooms costs one store read per id and interval).
11. Control messages (forwarded sends, fates, tips, kicks) leave through one
    outbox: what one loop iteration queues (a tick's fates, say) crosses the
    broker as one bundle per target process, all targets in one call
    (``Broker.control_many``), one call in flight at a time, so messages to
    one process keep their order.  A bundle that fails answers each of its
    forwarded sends 10002 (invariant 6); on a Redis Cluster only the bundles
    whose master failed (``BrokerError.failed``): the others went out and
    their fates will come.
12. No gap in a room's seq: each publish names the seq it follows
    (``follows``) and the broker accepts it only if that is the last seq
    published.  A batch that never crossed (Redis timed out, say) makes the
    next ones refused: the owner lets the room go (its waiting senders get
    10002), takes it again and numbers on from the broker's ``last_seq``;
    seqs that were never published are numbered again, published ones never.
13. A Delivered fate rides on its tick's batch when the sender's process is
    subscribed to the room (it has members there, the subscription confirmed):
    the forward says so (``ForwardedSend.rides``), the owner puts the fate in
    the batch's publish (broker.py, invariant 6) instead of a ``FateNotice``,
    and the sender's process answers it as the batch arrives.  It stays
    subscribed while such a send is unanswered, even when its last member
    leaves meanwhile (``riding``).  Dropped and Failed fates, and the fates of
    sends from processes not subscribed, go back as ``FateNotice``; a batch
    that was not published carried no fate, and its riders get 10002.  The
    owner's own WebSocket senders ride too (``own_rides``): the batch comes
    back to the owner through its subscription like to every process, so a
    reply answered at the publish's acknowledgement could overtake the
    sender's echo; answered from the batch, it follows it (docs/protocol.md).
    A published batch not back within ``OWN_RIDE_GRACE`` (a subscription lost
    meanwhile) has its own senders answered then.
14. Nothing announced is missed for good: after a gap in the subscriptions
    (a sweep that finds Redis back, or a pub/sub connection that came back:
    ``Broker.reconnects``), every room here is read from the store again, off
    the membership loop; a room the store no longer has was destroyed
    meanwhile and is dropped here too (unless the store's marker changed:
    Redis lost its data, and the rooms go on); the kick times are read again
    (a UserSig revoked meanwhile is refused here too), and so are the users'
    profiles (Node.reload_profiles); every history ring is dropped, as a
    batch may have been missed (node/history.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from livecast.backplane.broker import (
    ALL,
    Broadcast,
    Broker,
    BrokerError,
    Control,
    Destroy,
    FateNotice,
    ForwardedSend,
    Kick,
    MembersAnswer,
    MembersAsk,
    MemberTips,
    ProfileChanged,
    Tips,
    decode_fates,
    encode_fates,
)
from livecast.core.fate import (
    AWAY_UNSURE_INFO,
    UNSURE_INFO,
    Address,
    Delivered,
    Failed,
    Fate,
)
from livecast.core.records import group_record, restore_group
from livecast.core.scheduler import Priority, RoomScheduler
from livecast.errors import Code
from livecast.node.room import BroadcastOutgoing, Outgoing
from livecast.store.base import StoreError

if TYPE_CHECKING:
    from livecast.node.node import Node
    from livecast.store.base import GroupRecord

log = logging.getLogger("livecast.cluster")
T = TypeVar("T")

Held = tuple[str, Outgoing, Priority, Fate]  # a Delivered fate waiting for its publish
LEASE_TTL = 3.0         # seconds a room's lease lasts unless renewed
LOOP_INTERVAL = LEASE_TTL / 3  # the membership loop: leases, heartbeat, online counts
HEARTBEAT_TTL = 5.0     # a process silent this long is gone (its members leave the count)
FORWARD_GRACE = 3.0     # beyond the longest wait, a forwarded send is answered 10002
OWN_RIDE_GRACE = 2.0    # a published batch not back here by then: its own senders answered
RETRY_INFO = "the room's owner is unavailable: retry"
AWAY_INFO = "the cluster's Redis is unavailable: retry"
CLOSE_TIMEOUT = 2.0     # at shutdown, giving leases up waits this long at most (Redis away)
RETRY_INTERVAL = 0.25   # after a failed sweep (Redis away), the next one this much later
MISS_TTL = 1.0          # a group id found nowhere is not looked up again for this long
MEMBERS_WAIT = 1.0      # a members listing waits this long at most for the other processes
MAX_MISSES = 10_000     # group ids remembered as missing


def new_node_id() -> str:
    """Unique per process start (a restarted process is a new node)."""
    return f"{os.uname().nodename}-{os.getpid()}-{os.urandom(3).hex()}"


def outgoing_fields(msg: Outgoing) -> dict[str, Any]:
    fields = {"s": msg.sender, "n": msg.nick, "a": msg.avatar, "p": int(msg.priority),
              "r": msg.random, "b": msg.body, "c": msg.cloud_custom_data, "o": msg.operator,
              "i": msg.client_ip, "f": msg.platform, "bc": msg.before_callback,
              "ac": msg.after_callback}
    if isinstance(msg, BroadcastOutgoing):  # still marked on the owner's wire
        fields["bb"] = True
    return fields


def outgoing_of(fields: dict[str, Any], reply_to: Address) -> Outgoing:
    kind = BroadcastOutgoing if fields.get("bb") else Outgoing
    return kind(str(fields["s"]), str(fields["n"]), str(fields["a"]), Priority(fields["p"]),
                int(fields["r"]), list(fields["b"]), str(fields["c"]), reply_to,
                operator=str(fields["o"]), client_ip=str(fields["i"]),
                platform=str(fields["f"]), before_callback=bool(fields["bc"]),
                after_callback=bool(fields["ac"]))


def one_per_key(tasks: dict[str, asyncio.Task[T]], key: str,
                start: Callable[[str], Coroutine[Any, Any, T]]) -> asyncio.Task[T]:
    """The task running ``start(key)``: the one in ``tasks`` while it runs,
    else a new one, kept there until it ends (one at a time per key)."""
    task = tasks.get(key)
    if task is None:
        task = tasks[key] = asyncio.create_task(start(key))
        task.add_done_callback(lambda _t: tasks.pop(key, None))
    return task


def sweep_delay(now: float, renewed_at: float, failed: bool) -> float:
    """Seconds until the membership loop's next sweep: a third of the lease's
    life after the last one that renewed, or ``RETRY_INTERVAL`` after a failed
    one (a Redis that refuses at once is not asked in a tight loop, nor its
    failure logged in one)."""
    if failed:
        return RETRY_INTERVAL
    return max(0.0, renewed_at + LOOP_INTERVAL - now)


class ClusterLink:
    def __init__(self, node: Node, broker: Broker) -> None:
        self.node = node
        self.broker = broker
        self.node_id = broker.node_id
        self.tokens: dict[str, int] = {}      # rooms this process owns -> fencing token
        # rooms this process owns -> the seq its next batch follows (-1: any, invariant 12)
        self.follows: dict[str, int] = {}
        self.owners: dict[str, str] = {}      # other rooms -> their owner, as last seen
        self.remote_online: dict[str, int] = {}  # room -> members on the other processes
        self.peers: set[str] = set()  # the other live processes, as the last heartbeat showed
        # members listings waiting for the other processes: ask -> (expected, answers, done)
        self._asks: dict[int, tuple[set[str], dict[str, list[list[Any]]],
                                    asyncio.Future[None]]] = {}
        self._ask_ids = itertools.count(1)
        # rooms and users whose read after a change heard failed: read at the next sweep
        self.reread: set[str] = set()
        self.reread_profiles: set[str] = set()
        # forwarded sends still unanswered -> (deadline (loop time), room, owner
        # sent to, whether its fate rides on the batch); one timer for all (invariant 2)
        self.forwarded: dict[Address, tuple[float, str, str, bool]] = {}
        self._expiry: asyncio.TimerHandle | None = None
        # the owner's side: forwarded sends whose Delivered fate rides the batch (inv. 13)
        self.riders: set[Address] = set()
        # this process's own senders whose Delivered fate rides the batch back
        # here, answered as it arrives, after their echo (invariant 13); a
        # list each, as one connection may reuse a request id
        self.own_rides: dict[Address, list[Delivered]] = {}
        self.late_rides = 0  # own riders answered by OWN_RIDE_GRACE, not their batch
        self.following: set[str] = set()  # rooms with members here (or lingering), subscribed
        self.riding: dict[str, int] = {}  # room -> forwarded sends whose fate rides its batch
        self._lingering: set[str] = set()  # no member here, subscribed until riding is 0
        self._watch_gen: dict[str, int] = {}
        self._gen = 0
        self.redis_ok = True  # the last call to Redis succeeded
        self._reconnects = 0  # the broker's count of subscriptions back after a loss
        self._resync_again = False  # rooms to be read from the store again (invariant 14)
        self._resyncing = False
        self._marker: str | None = None  # the store's identity (Store.marker), once read
        self.resyncs = 0  # rooms read again from the store (invariant 14), for tests
        # a batch goes straight to the hub's fan-out (no call in between: every tick)
        self.on_batch: Callable[[str, bytes, bytes | None], None] = node.hub.fan
        self.renewed_at = time.monotonic()  # the start of the last lease round that answered
        self._misses: OrderedDict[str, float] = OrderedDict()  # group id -> until (monotonic)
        self._lookups: dict[str, asyncio.Task[bool]] = {}
        self._taking: dict[str, asyncio.Future[None]] = {}  # rooms whose token is being taken
        self._finding: dict[str, asyncio.Task[None]] = {}  # one owner lookup per room
        self._loop_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._outbox: dict[str, list[Control]] = {}  # target -> messages (invariant 11)
        self._flushing = False

    # ---------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        await self.broker.start(self)
        with contextlib.suppress(StoreError):  # else taken at the first resync
            self._marker = await self.node.store.marker()
        await self.sweep()
        self._loop_task = asyncio.create_task(self._run())

    async def close(self) -> None:
        for finding in list(self._finding.values()):
            finding.cancel()  # no lease is taken after the ones held are given up
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        try:  # bounded: Redis may be gone (the leases then expire by themselves)
            async with asyncio.timeout(CLOSE_TIMEOUT):
                for gid, token in list(self.tokens.items()):
                    with contextlib.suppress(BrokerError):
                        await self.broker.release_lease(gid, self.node_id, token)
        except TimeoutError:
            log.warning("cluster: leases not given up within %.0f s", CLOSE_TIMEOUT)
        if self._expiry is not None:
            self._expiry.cancel()
        for task in list(self._tasks):
            task.cancel()
        await self.broker.close()

    def spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("cluster task failed: %r", task.exception())

    async def _run(self) -> None:
        failed = False
        while True:  # every third of the lease's life, from the last round's start
            await asyncio.sleep(sweep_delay(time.monotonic(), self.renewed_at, failed))
            late = time.monotonic() - self.renewed_at
            if late > LEASE_TTL and not failed:
                log.warning("cluster: the membership loop ran %.1f s late: leases kept "
                            "unless taken over", late - LOOP_INTERVAL)
            failed = True
            try:
                await self.sweep()
                failed = False
            except (BrokerError, StoreError) as err:
                (log.warning if self.redis_ok else log.debug)("cluster sweep: %s", err)
                self.redis_away()
            except Exception:  # the loop outlives one bad sweep
                log.exception("cluster sweep failed")

    async def sweep(self) -> None:
        """Leases (renew the held, take the ownerless), heartbeat, online counts."""
        started = time.monotonic()
        await self._leases()
        self.renewed_at = started
        hub = self.node.hub
        online = {gid: len(room.members) for gid, room in hub.rooms.items() if room.members}
        beats = await self.broker.heartbeat(
            self.node_id, {"online": online, "owns": sorted(self.tokens)}, HEARTBEAT_TTL)
        remote: dict[str, int] = {}
        for nid, info in beats.items():
            if nid == self.node_id:
                continue
            for gid, n in dict(info.get("online", {})).items():
                remote[gid] = remote.get(gid, 0) + int(n)
        self.remote_online = remote
        self.peers = set(beats) - {self.node_id}
        back = self.broker.reconnects()
        if not self.redis_ok or back != self._reconnects:  # announcements may be missed
            self._reconnects = back
            self._resync_again = True
        if self._resync_again and not self._resyncing:
            self.spawn(self._resync())
        elif self.reread or self.reread_profiles:
            self.spawn(self._reread())
        if not self.redis_ok:
            log.info("cluster: Redis answers again")
        self.redis_ok = True

    async def _resync(self) -> None:
        """After a gap in the subscriptions (Redis away, a pub/sub connection
        lost and back) a change announced meanwhile (a ban, a mute, a profile, a
        destroy) may have been missed: every room here is read from the store
        again, and a room no longer stored was destroyed (invariant 14); a
        batch may have been missed too, so every history ring is dropped, to
        be read again by the next join that needs it.  Off
        the membership loop, so that leases are renewed meanwhile; once at a
        time, again if another gap came while it ran."""
        self._resyncing = True
        try:
            while self._resync_again:
                self._resync_again = False
                self.node.history.reset()  # batches may have been missed too: read again
                self.node.hub.heard_every_login()  # their own multiLogin kicks may be lost
                try:
                    await self._resync_rooms()
                    kicks = await self.node.store.kick_times()
                    await self.node.reload_profiles()
                except Exception as err:  # StoreError, or a bug: tried again, never lost
                    log.warning("cluster resync: %s", err)
                    self._resync_again = True  # the next sweep starts it again
                    return
                for user, at in kicks.items():  # record_kick keeps the later time
                    self.node.kicks.record_kick(user, at)
        finally:
            self._resyncing = False

    async def _resync_rooms(self) -> None:
        """Each room as stored now, under its lock (no change made here meanwhile
        is overwritten by an older read); a room the store no longer has is
        dropped, unless the store lost its data (its marker changed: a Redis
        restarted without AOF), where the rooms go on here."""
        node = self.node
        lost = await self._lost_data()
        self.resyncs += 1
        for gid in list(node.rooms):
            async with node._lock(gid):
                record = await node.store.load_group(gid)
                if gid not in node.rooms:
                    continue  # destroyed here meanwhile
                if record is not None:
                    self._restore(gid, record)
                elif not lost:
                    log.info("room %s: destroyed while a subscription was down", gid)
                    self._forget_room(gid)

    def available(self) -> bool:
        """False while Redis is known to be away (invariant 6): no round trip."""
        return self.redis_ok and self.broker.connected()

    def redis_away(self) -> None:
        """A call to Redis failed: sends are refused at once until a sweep succeeds,
        and forwarded sends waiting for a fate are answered 10002 now."""
        self.redis_ok = False
        for address in list(self.forwarded):
            self._unanswered(address, AWAY_UNSURE_INFO)

    async def sweep_room(self, gid: str) -> None:
        """Take a new room's lease at once (its creator owns it when free)."""
        try:
            await self._lease(gid)
        except BrokerError as err:
            log.warning("lease of %s: %s", gid, err)

    async def _leases(self) -> None:
        """Every room's lease in two round trips at most (invariant 8): renew
        those held here, then try to take the others."""
        rooms = list(self.node.rooms)
        held = {gid: self.tokens[gid] for gid in rooms if gid in self.tokens}
        if held:
            renewed = await self.broker.renew_leases(self.node_id, held, LEASE_TTL)
            for gid, token in held.items():
                if gid not in renewed and self.tokens.get(gid) == token:
                    self.lost(gid)
        free = [gid for gid in rooms if gid not in self.tokens]
        if free:
            got = await self.broker.acquire_leases(self.node_id, free, LEASE_TTL)
            for gid, answer in got.items():
                await self._answered(gid, answer)

    async def _lease(self, gid: str) -> None:
        token = self.tokens.get(gid)
        if token is not None:
            if await self.broker.renew_lease(gid, self.node_id, token, LEASE_TTL):
                return
            self.lost(gid)
        token = await self.broker.acquire_lease(gid, self.node_id, LEASE_TTL)
        await self._answered(gid, token if token is not None
                             else await self.broker.owner_of(gid))

    async def _answered(self, gid: str, answer: int | str | None) -> None:
        """An acquire's answer: our token, or the node holding the lease.  A
        token already ours changes nothing, and one being taken by another
        call is waited for: the room's scheduler is made once per token (a
        second one would number from a ``last_seq`` read before the first's
        publish went out)."""
        if not isinstance(answer, int):
            if answer is not None:
                old = self.owners.get(gid)
                self.owners[gid] = answer
                if old != answer:
                    self._owner_changed(gid, old)
            return
        taking = self._taking.get(gid)
        if taking is not None:
            await asyncio.shield(taking)
            return
        if self.tokens.get(gid) == answer:
            return
        done = self._taking[gid] = asyncio.get_running_loop().create_future()
        try:
            await self._take_room(gid, answer)
        finally:
            del self._taking[gid]
            done.set_result(None)

    async def _take_room(self, gid: str, token: int) -> None:
        room = self.node.rooms.get(gid)
        if room is None:
            await self.broker.release_lease(gid, self.node_id, token)
            return
        last = await self.broker.last_seq(gid)
        s = self.node.settings
        rate = s.room_rate if room.group.rate is None else room.group.rate
        burst = s.room_burst if room.group.burst is None else room.group.burst
        follows = last
        if room.sched.pending == 0:  # continue the room's seq: no reuse, no skip
            # seqs above ``last`` were never published (invariant 12) and are
            # numbered again; a Redis that lost its data (``last`` 0) does not
            # take the room's seq back: it goes on upwards from the last seq
            # this process knows (its own, or seen in the room's batches)
            seen = max(room.sched.next_seq - 1, self.node.history.last_seq(gid))
            next_seq = last + 1 if last else seen + 1
            follows = last if last else -1
            # the rate holds for the room as a whole (rooms.md), B + R*T across
            # an owner change too: taken from another process, which may have
            # spent its burst just now, the bucket starts empty; taken again
            # here, it keeps what it held; a room new here starts full
            now = self.node.timers.time()
            previous = self.owners.get(gid)
            tokens = 0.0 if previous not in (None, self.node_id) else room.sched.tokens_at(now)
            room.sched = RoomScheduler(rate, burst, now, s.max_wait,
                                       next_seq=next_seq, tokens=tokens)
        elif room.sched.next_seq - 1 != last:
            follows = room.sched.next_seq - 1  # refused, then taken again in step
        self.follows[gid] = follows
        self.tokens[gid] = token
        self._owner_changed(gid, self.owners.pop(gid, None))
        log.info("room %s: owned here (token %d, seq from %d)", gid, token, last + 1)

    def lost(self, gid: str) -> None:
        """The lease is gone: waiting messages fail with 10002 (retry), nothing is emitted."""
        self.tokens.pop(gid, None)
        self.follows.pop(gid, None)
        room = self.node.rooms.get(gid)
        if room is not None:
            room.settle_pending(Code.INTERNAL, RETRY_INFO)
        log.warning("room %s: lease lost", gid)

    # ---------------------------------------------------------------- the node's side
    def owns(self, gid: str) -> bool:
        return gid in self.tokens

    def forward(self, gid: str, msg: Outgoing) -> None:
        """A send for a room owned elsewhere: to its owner; its fate comes back
        (on the room's batch when this process follows the room: invariant 13)."""
        address = msg.reply_to
        owner = self.owners.get(gid)
        rides = False
        if address is not None:
            rides = gid in self.following
            self._track(address, gid, owner or "", rides)
        if owner is not None:
            self.queue(owner, ForwardedSend(
                gid, address or Address(node=self.node_id), outgoing_fields(msg), rides))
        else:
            self.spawn(self._find_owner(gid, msg, rides))

    def _track(self, address: Address, gid: str, owner: str, rides: bool) -> None:
        """A forwarded send waits for its fate until its deadline (invariant 2)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(self.node.settings.max_wait) + FORWARD_GRACE
        if address in self.forwarded:  # the same address again: one entry, one count
            self._take(address)
        self.forwarded[address] = (deadline, gid, owner, rides)
        if rides:
            self.riding[gid] = self.riding.get(gid, 0) + 1
        expiry = self._expiry
        if expiry is None or deadline < expiry.when():
            if expiry is not None:
                expiry.cancel()
            self._expiry = loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        """The forwarded sends past their deadline are answered 10002; the timer
        is set again for the earliest deadline left."""
        self._expiry = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        for address in [a for a, entry in self.forwarded.items() if entry[0] <= now]:
            self._unanswered(address)
        if self.forwarded:
            first = min(entry[0] for entry in self.forwarded.values())
            self._expiry = loop.call_at(first, self._expire)

    def _take(self, address: Address) -> tuple[float, str, str, bool] | None:
        """A forwarded send answered now: no longer waited for (None: it was
        answered already, or was never forwarded from here)."""
        entry = self.forwarded.pop(address, None)
        if entry is not None and entry[3]:
            gid = entry[1]
            n = self.riding[gid] - 1
            if n:
                self.riding[gid] = n
            else:
                del self.riding[gid]
                if gid in self._lingering:  # its last member left meanwhile
                    self._lingering.discard(gid)
                    self._unfollow(gid)
        return entry

    async def _find_owner(self, gid: str, msg: Outgoing, rides: bool = False) -> None:
        """No owner known here yet: the room's lease holder, or this process
        (one lookup per room at a time, whatever the sends waiting on it)."""
        finding = one_per_key(self._finding, gid, self._lease_quietly)
        try:
            await asyncio.shield(finding)
        except asyncio.CancelledError:
            if not finding.cancelled():
                raise  # this send's task was cancelled, not the lookup
            return  # shutting down: every connection is closed
        address = msg.reply_to
        if address is not None and address not in self.forwarded:
            return  # answered meanwhile (10002: Redis away, or its deadline): not sent
        if self.owns(gid) and gid in self.node.rooms:
            if address is not None:  # settled here, not waited for
                self._take(address)
            self.node.submit(gid, msg)
        elif gid in self.owners:
            if address is not None and address in self.forwarded:
                deadline, _gid, _none, rides = self.forwarded[address]
                self.forwarded[address] = (deadline, gid, self.owners[gid], rides)
            self.queue(self.owners[gid], ForwardedSend(
                gid, address or Address(node=self.node_id), outgoing_fields(msg), rides))
        elif address is not None:
            self._unanswered(address, RETRY_INFO)  # never forwarded: not delivered

    async def _lease_quietly(self, gid: str) -> None:
        try:
            await self._lease(gid)
        except BrokerError as err:
            log.warning("lease of %s: %s", gid, err)

    def _owner_changed(self, gid: str, old: str | None) -> None:
        """Sends forwarded to a room's former owner will not be answered by it:
        answered now with 10002 (retry), so the client retries at the new one."""
        if old is None:
            return
        for address, (_deadline, room, owner, _rides) in list(self.forwarded.items()):
            if room == gid and owner == old:
                self._unanswered(address)

    def queue(self, target: str, message: Control) -> None:
        """To ``target`` (a node id or ``ALL``), with whatever else this loop
        iteration queues (invariant 11)."""
        outbox = self._outbox
        if not outbox and not self._flushing:
            self.spawn(self._flush())
        outbox.setdefault(target, []).append(message)

    async def _flush(self) -> None:
        self._flushing = True
        try:
            while self._outbox:
                bundles, self._outbox = self._outbox, {}
                try:
                    await self.broker.control_many(bundles)
                except Exception as err:  # BrokerError, or a client library's own surprise
                    if not isinstance(err, BrokerError):
                        log.exception("control to %s failed", ", ".join(bundles))
                    log.warning("control to %s: %s", ", ".join(bundles), err)
                    failed = err.failed if isinstance(err, BrokerError) else None
                    for target, messages in bundles.items():
                        if failed is not None and target not in failed:
                            continue  # it went out: its fates will come
                        for message in messages:
                            if isinstance(message, ForwardedSend):
                                self._unanswered(message.reply_to, AWAY_UNSURE_INFO)
                    if failed is None or failed.issuperset(bundles):
                        self.redis_away()  # else one master of a cluster failed, not Redis
                    elif ALL in failed and ALL in bundles:  # its own multiLogin kicks
                        self.resync_later()  # never come back: its sessions count as heard
        finally:
            self._flushing = False

    def _unanswered(self, address: Address, info: str = UNSURE_INFO) -> None:
        if self._take(address) is not None:
            self.node.answer_local(address, Failed(Code.INTERNAL, info))

    def fate_elsewhere(self, address: Address, fate: Fate) -> None:
        if self.riders:
            self.riders.discard(address)  # answered here: it rides no batch
        self.queue(address.node, FateNotice(address, fate))

    def publish(self, gid: str, full: bytes, lite: bytes | None,
                seq_end: int) -> list[Held] | None:
        """One tick's batch, once across the broker.  None: published at once
        (invariant 9), its fates are answered as they come.  Else the list
        where its messages' Delivered fates are to be held: answered only once
        the publish is accepted under this process's lease (else they fail
        with 10002 "retry": nothing acknowledged is lost)."""
        token = self.tokens.get(gid)
        held: list[Held] = []
        if token is not None:
            follows = self.follows
            prev = follows.get(gid, -1)
            follows[gid] = seq_end
            done = self.broker.publish_now(gid, full, lite, seq_end, token, prev)
            if done:
                return None
            if done is None:
                self.spawn(self._publish(gid, full, lite, seq_end, token, held, prev))
                return held
            if self.tokens.get(gid) == token:  # deposed
                self.lost(gid)
        asyncio.get_running_loop().call_soon(self._answer_held, held, False)
        return held

    async def _publish(self, gid: str, full: bytes, lite: bytes | None, seq_end: int,
                       token: int, held: list[Held], prev: int) -> None:
        published = False
        unsure = False  # the publish may have reached Redis (a timeout, a lost connection)
        rode: set[Address] = set()
        try:
            history = self.node.history
            stream = history.riding(gid, full) if self.broker.streams else None
            if stream is None:
                await history.write(gid, token, full)  # the store, then the publish
            fates, rode = self._riding(held)  # the tick's settles are all in ``held`` now
            published = await self.broker.publish(gid, full, lite, seq_end, token, prev, fates,
                                                  stream)
            if not published and self.tokens.get(gid) == token:  # deposed
                self.lost(gid)
        except BrokerError as err:
            log.warning("publish of %s: %s", gid, err)
            unsure = err.maybe_sent
            self.redis_away()
        finally:
            self._answer_held(held, published, rode, AWAY_UNSURE_INFO if unsure else RETRY_INFO)

    def _riding(self, held: list[Held]) -> tuple[bytes, set[Address]]:
        """The held Delivered fates of forwarded sends that ride on the batch
        (invariant 13), encoded, and their addresses."""
        riders, own, following = self.riders, self.node_id, self.following
        by_node: dict[str, list[tuple[Address, Delivered]]] = {}
        rode: set[Address] = set()
        for gid, msg, _priority, fate in held:
            address = msg.reply_to
            if address is None or not isinstance(fate, Delivered):
                continue
            if address in riders:
                riders.discard(address)
            elif address.node == own and address.request is not None and gid in following:
                self.own_rides.setdefault(address, []).append(fate)  # after its echo
            else:
                continue
            by_node.setdefault(address.node, []).append((address, fate))
            rode.add(address)
        return encode_fates(by_node), rode

    def _answer_held(self, held: list[Held], published: bool,
                     rode: set[Address] | frozenset[Address] = frozenset(),
                     info: str = RETRY_INFO) -> None:
        """Published: each answered (those whose fate rode on the batch are
        answered by it: counted and reported only).  Else each fails 10002
        with ``info``: RETRY_INFO when the publish was refused (nothing
        delivered), AWAY_UNSURE_INFO when it failed on its way (Redis may
        have run it: "it may have been delivered")."""
        mine: list[tuple[Address, Delivered]] = []
        for gid, msg, priority, fate in held:
            if not published:
                if msg.reply_to in rode:
                    self._ridden(msg.reply_to, fate)  # type: ignore[arg-type]
                self.node.settle_now(gid, msg, priority, Failed(Code.INTERNAL, info))
                continue
            answered = bool(rode) and msg.reply_to in rode
            if answered and msg.reply_to.node == self.node_id:  # type: ignore[union-attr]
                mine.append((msg.reply_to, fate))  # type: ignore[arg-type]
            self.node.settle_now(gid, msg, priority, fate, answered=answered)
        if mine:  # on their way back in the batch: answered then, or after the grace
            asyncio.get_running_loop().call_later(OWN_RIDE_GRACE, self._unridden, mine)

    def _ridden(self, address: Address, fate: Fate) -> bool:
        """Take one own rider's fate off ``own_rides``: True if it was there
        (not answered yet)."""
        fates = self.own_rides.get(address)
        if not fates or fate not in fates:
            return False
        fates.remove(fate)
        if not fates:
            del self.own_rides[address]
        return True

    def _unridden(self, riders: list[tuple[Address, Delivered]]) -> None:
        """Own senders whose batch never came back here (a subscription lost
        meanwhile): answered now, with the fate they rode on."""
        for address, fate in riders:
            if self._ridden(address, fate):
                self.late_rides += 1
                self.node.answer_local(address, fate)

    def announce(self, message: Any) -> None:
        """Tips, kicks, destroys: to every process, this one included."""
        self.queue(ALL, message)

    def announce_members(self, gid: str, joins: dict[str, Any] | None,
                         quits: dict[str, Any] | None) -> None:
        """This process's joins and quits of one tip interval, for the others."""
        self.announce(MemberTips(gid, joins, quits))

    def watch(self, gid: str, opened: bool) -> None:
        """The first local member of a room subscribes this process; the last
        leaves, unless forwarded sends still wait for fates on its batches
        (invariant 13): then it leaves when the last of them is answered."""
        self._gen += 1
        self._watch_gen[gid] = self._gen
        if opened:
            if gid in self._lingering:  # still subscribed, for its riders
                self._lingering.discard(gid)
                return
            self.spawn(self._follow(gid, self._gen))
            return
        if self.riding.get(gid):
            self._lingering.add(gid)
            return
        self._unfollow(gid)

    async def _follow(self, gid: str, gen: int) -> None:
        await self.broker.subscribe(gid)
        if self._watch_gen.get(gid) == gen:  # no unsubscribe asked meanwhile
            self.following.add(gid)

    def _unfollow(self, gid: str) -> None:
        self.following.discard(gid)
        self._watch_gen.pop(gid, None)
        self.spawn(self.broker.unsubscribe(gid))

    def online(self, gid: str) -> int:
        return self.remote_online.get(gid, 0)

    async def members(self, gid: str) -> list[tuple[str, int, str, str, str]]:
        """The other processes' logged-in members of the room, as (node id,
        connection id, user, nick, avatar): one ``MembersAsk`` to every
        process, answered by each live one (as the heartbeat registry shows
        them now), waited for ``MEMBERS_WAIT`` s at most (one that answers later is left
        out, and logged).  The REST layer keeps a listing for its pages
        (``admin/state.py``), so paging through a big room gathers it once."""
        try:  # the live processes now (one started since the last heartbeat included)
            expected = set(await self.broker.nodes()) - {self.node_id}
        except BrokerError:
            expected = set(self.peers)
        if not expected:
            return []
        ask = next(self._ask_ids)
        done = asyncio.get_running_loop().create_future()
        answers: dict[str, list[list[Any]]] = {}
        self._asks[ask] = (expected, answers, done)
        try:
            self.queue(ALL, MembersAsk(gid, ask))
            await asyncio.wait_for(asyncio.shield(done), MEMBERS_WAIT)
        except TimeoutError:
            log.warning("room %s: members of %d processes not listed (no answer in %.1f s)",
                        gid, len(expected - answers.keys()), MEMBERS_WAIT)
        finally:
            del self._asks[ask]
        return [(nid, int(m[0]), m[1], m[2], m[3])
                for nid, listed in answers.items() for m in listed]

    def on_members_ask(self, origin: str, message: MembersAsk) -> None:
        if origin == self.node_id:
            return
        # answered even when none are left here: the asker may be waiting for it
        self.queue(origin, MembersAnswer(message.ask,
                                         self.node.hub.logged_in_members(message.group_id)))

    def on_members_answer(self, origin: str, message: MembersAnswer) -> None:
        waiting = self._asks.get(message.ask)
        if waiting is None:
            return  # answered too late: the listing is made
        expected, answers, done = waiting
        answers[origin] = message.members
        if expected <= answers.keys() and not done.done():
            done.set_result(None)

    # ---------------------------------------------------------------- EventHandler
    # on_batch: the hub's ``fan`` itself (set in __init__)

    def on_forwarded_send(self, origin: str, message: ForwardedSend) -> None:
        msg = outgoing_of(message.message, message.reply_to)
        if not self.owns(message.group_id) or message.group_id not in self.node.rooms:
            self.node.answer(msg, Failed(Code.INTERNAL, RETRY_INFO))
            return
        if message.rides:
            self.riders.add(message.reply_to)
        self.node.submit(message.group_id, msg)

    def on_fate(self, origin: str, message: FateNotice) -> None:
        if self._take(message.address) is not None:  # else answered already (invariant 2)
            self.node.answer_local(message.address, message.fate)

    def on_batch_fates(self, group_id: str, fates: bytes) -> None:
        """The Delivered fates a batch carries; those of sends forwarded from here
        are answered (invariant 13)."""
        try:
            mine = decode_fates(fates, self.node_id)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            log.warning("skipped the malformed fates of a batch of %s (%s)", group_id, exc)
            return
        for address, fate in mine:
            if self._ridden(address, fate) or self._take(address) is not None:
                self.node.answer_local(address, fate, group_id)  # after its echo

    def on_kick(self, origin: str, message: Kick) -> None:
        if message.reason == "multiLogin" and message.session:  # this process's own too
            mine = message.session if origin == self.node_id else None
            self.node.kick_sessions(self.node.hub.heard_login(message.user, mine),
                                    message.reason)
            return
        if origin == self.node_id:
            return  # done here already
        room = self.node.rooms.get(message.group_id) if message.group_id else None
        if message.reason == "banned" and room is not None and message.until:
            # in force at once: a join here before the room is read again is refused
            room.group.heard_ban(message.user, message.until, self.node.clock())
        removed = self.node.kick_user(message.user, message.reason, message.group_id)
        if removed and message.reason == "banned" and message.group_id:  # a ban, reported here
            self.node.hooks.kicked(message.group_id, [message.user], message.operator,
                                   message.client_ip)
        if message.reason == "adminKick":  # its UserSigs are revoked here too
            self.spawn(self._kick_time(message.user))

    async def _kick_time(self, user: str) -> None:
        at = await self.node.store.kick_time(user)
        if at is not None:
            self.node.kicks.record_kick(user, at)

    def on_profile(self, origin: str, message: ProfileChanged) -> None:
        if origin != self.node_id:  # set where it was made (Node.change_profile)
            hub = self.node.hub
            if message.user in hub.sessions:  # its messages carry it from now on
                hub.set_profile(message.user, message.nick, message.avatar)
            self.spawn(self.node.reload_profile(message.user))  # as stored: the newest

    def on_tips(self, origin: str, message: Tips) -> None:
        if origin != self.node_id:  # pushed at once where it was made (node.push_tips)
            room = self.node.rooms.get(message.group_id)
            if room is not None:  # a mute in force at once, before the room is read again
                room.group.heard_tips(message.tips, self.node.clock())
            self.spawn(self._reload_then_push(message))

    async def _reload_then_push(self, message: Tips) -> None:
        try:
            await self.reload(message.group_id)
        except StoreError as err:  # what was heard stays until it is read again
            log.warning("room %s not read again after a change: %s", message.group_id, err)
            self.reread.add(message.group_id)
        self.node.hub.push_tips(message.group_id, message.tips)

    def resync_later(self) -> None:
        """A gap in what every process heard: the next sweep reads every room,
        profile and kick again (``_resync``)."""
        self._resync_again = True

    async def _reread(self) -> None:
        """The rooms and profiles whose read after a change heard failed, read
        again (by each sweep until it succeeds), so nothing heard stays wrong."""
        rooms, self.reread = self.reread, set()
        users, self.reread_profiles = self.reread_profiles, set()
        for gid in rooms:
            try:
                await self.reload(gid)
            except StoreError:
                self.reread.add(gid)
        for user in users:
            await self.node.reload_profile(user)  # adds the user again if it fails

    async def reload(self, gid: str) -> None:
        """The room as stored now (created, changed elsewhere), read under the
        room's lock: a change made here meanwhile is not overwritten by an
        older read."""
        node = self.node  # a room not known here: nothing to overwrite, no lock made for it
        async with node._lock(gid) if gid in node.rooms else contextlib.nullcontext():
            record = await node.store.load_group(gid)
            if record is not None:
                self._restore(gid, record)

    async def refresh(self, gid: str) -> bool:
        """Under the room's lock, before a change made here: the room as stored
        now, so that the change applies to what another process changed
        before it, announced or not yet; False if it is no longer stored
        (destroyed elsewhere: dropped here)."""
        store = self.node.store
        record = await store.load_group(gid)
        if record is None and await self._lost_data():
            record = await store.load_group(gid)  # stored again, unless destroyed since
        if record is None:
            log.info("room %s: destroyed elsewhere", gid)
            self._forget_room(gid)
            return False
        self._restore(gid, record)
        return True

    async def _lost_data(self) -> bool:
        """Whether the store lost its data since last asked (its marker changed:
        a Redis restarted without AOF).  Then the rooms of this process go on
        (invariant 14): each is stored again at once, as created (a room
        another process stored again first is left as it is), and from then
        on a room the store does not have was destroyed."""
        store = self.node.store
        marker = await store.marker()
        lost = self._marker is not None and marker != self._marker
        self._marker = marker
        if lost:
            rooms = list(self.node.rooms.values())
            log.warning("cluster: the store lost its data (a Redis restarted without AOF?): "
                        "the %d rooms here go on and are stored again", len(rooms))
            for room in rooms:
                await store.put_group(group_record(room.group), create=True)
        return lost

    def _restore(self, gid: str, record: GroupRecord) -> None:
        group = restore_group(record)
        room = self.node.rooms.get(gid)
        if room is None:
            self.node.adopt(group)
            return
        # the newer of the stored time and this process's own (the owner's is
        # newer than the last stored change; another's may be older, or 0)
        group.last_msg_time = max(record.last_msg_time, room.group.last_msg_time)
        group.attrs = copy.deepcopy(group.attrs)
        group.attrs.keep_limit(room.group.attrs)  # members' writes spent here go on counting
        room.group = group
        s = self.node.settings
        rate = s.room_rate if group.rate is None else group.rate
        burst = s.room_burst if group.burst is None else group.burst
        if (rate, burst) != (room.sched.rate, room.sched.burst):
            room.sched.configure(rate, burst, self.node.timers.time())

    async def find(self, gid: str, fresh: bool = False) -> bool:
        """True once the room is known here, loaded from the store if another
        process just created it (invariant 10).  ``fresh``: an id found
        nowhere lately is looked up again (an authenticated REST call, which
        may come right after the room's creation elsewhere); none is while
        Redis is away."""
        if gid in self.node.rooms:
            return True
        if not self.redis_ok:
            return False
        until = self._misses.get(gid)
        if until is not None:
            if until > time.monotonic() and not fresh:
                return False
            del self._misses[gid]
        return await asyncio.shield(one_per_key(self._lookups, gid, self._look_up))

    async def _look_up(self, gid: str) -> bool:
        try:
            await self.reload(gid)
        except StoreError as err:
            log.warning("looking %s up: %s", gid, err)
            if gid not in self.node.rooms:  # not asked again at once: the store is slow or away
                self._missed(gid)
            return gid in self.node.rooms
        if gid in self.node.rooms:
            return True
        self._missed(gid)
        return False

    def _missed(self, gid: str) -> None:
        """``gid`` is not looked up again for ``MISS_TTL`` s (the oldest
        forgotten past ``MAX_MISSES``)."""
        self._misses[gid] = time.monotonic() + MISS_TTL
        while len(self._misses) > MAX_MISSES:
            self._misses.popitem(last=False)

    def on_member_tips(self, origin: str, message: MemberTips) -> None:
        if origin != self.node_id:  # this process's own are in its flush already
            self.node.hub.merge_tips(message.group_id, message.joins, message.quits)

    def on_destroy(self, origin: str, message: Destroy) -> None:
        if origin != self.node_id:  # the room's pending joins here go out now, not after it
            self.node.hooks.flush_members()
        # where it was destroyed, dropped then (a room made again since stays)
        self._forget_room(message.group_id, drop=origin != self.node_id)

    def _forget_room(self, gid: str, drop: bool = True) -> None:
        if drop:
            self.node.drop_room(gid)
        self.tokens.pop(gid, None)
        self.owners.pop(gid, None)
        self.follows.pop(gid, None)

    def on_broadcast(self, origin: str, message: Broadcast) -> None:
        return None  # broadcasts are offered by the room owners (send_broadcast_msg)

