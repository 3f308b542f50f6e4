"""The Redis broker: the ``Broker`` over one redis-server or a Redis Cluster,
with redis-py's asyncio client (docs/design.md, "The cluster broker").

URLs as for the Redis store (``livecast.store.redis.connect``): ``redis://``
for one server, ``redis+cluster://host:port[,host:port...]`` for a cluster.

Keys and channels (``lc`` is the prefix; ``<gid>`` the group id, ``<node>`` a node id):
- ``lc:{g:<gid>}:fence``   integer: the room's latest fencing token (never expires)
- ``lc:{g:<gid>}:lease``   string "<token> <node>", expiring with the lease
- ``lc:{g:<gid>}:seq``     integer: the room's last published seq
- ``lc:{g:<gid>}:batch``   channel: the room's tick batches (``broker.pack_batch``)
- ``lc:{g:<gid>}:history`` stream: the room's history, appended by the publish
  (broker.py, invariant 7), read by ``node.history.RedisHistoryStore``
- ``lc:{g:<gid>}:hepoch``  integer: that stream's epoch
- ``lc:{n:<node>}:ctl``    channel: control messages for one node
- ``lc:{nodes}:ctl``       channel: control messages for every node
- ``lc:{nodes}:info``      hash: node -> its last heartbeat's info (JSON)
- ``lc:{nodes}:until``     sorted set: node -> expiry (ms, Redis's own clock)

Invariants (beyond broker.py's):
1. A room's keys and channel share the store's hash tag ``{g:<gid>}``: one
   slot, so one Lua script checks the fence, records the seq and publishes.
   On a cluster the channels are shard channels (SPUBLISH/SSUBSCRIBE) and each
   master's shard channels are read on one connection to that master.
2. ``publish`` is ONE EVALSHA: one round trip per room per tick, the batch
   crossing Redis once whatever the number of members and processes, and
   the history stream's append (when given) in the same script.  On one
   server it goes on a connection of its own (``redis_wire.Publisher``), with
   no redis-py call; a script the server does not hold (after a restart) is sent whole
   once (EVAL), which loads it again.
3. Expiry (leases by PX, heartbeats by ``TIME``) is decided by Redis's clock,
   never by a process's.
4. Subscriptions survive Redis restarts by themselves (redis_pubsub.Shard);
   ``ready`` is false while any pub/sub connection or the command connection
   is down.  Fencing is as durable as Redis: run it with AOF, or a restart that
   loses the fence lets tokens start again at 1.
5. On one server, control messages leave on a connection of their own,
   which Redis does not answer (a reply-less ``redis_wire.Publisher``: one
   write per bundle, no reply to wake the process, no redis-py call per
   message); nothing waits on them, and a forwarded send whose fate does not
   come is answered by its deadline (node/cluster.py) or when the process
   finds Redis away.  On a Redis Cluster each is an SPUBLISH through
   redis-py, to the master of its channel's slot.
6. A command is sent once: the redis-py client retries nothing (``NO_RETRY``;
   a cluster's MOVED and ASK are still followed).  A retry after a reply
   that came late would run a publish or a control message twice (a
   forwarded send delivered twice, a batch refused as out of order after it
   went out); a call that fails is answered by its caller instead (a send
   10002, a sweep tried again).
7. A Redis Cluster's slot that moves (resharding, a master failed over to
   its replica) takes its channels along: on a shard's sign of it
   (redis_pubsub, invariant 5) the slot map is read again and every channel
   whose slot has a new master is forgotten by the old shard and subscribed
   on the new one; a shard left with no channel is closed (a dead master
   no longer holds ``connected`` false).  Commands follow MOVED by
   themselves (redis-py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import hiredis
import orjson
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import RedisClusterException, RedisError, ResponseError

from livecast.backplane.broker import (
    ALL,
    BrokerError,
    Control,
    EventHandler,
    KeyedLocks,
    RoomRefs,
    StreamAppend,
    deliver,
    encode_control,
    encode_controls,
    hand_batch,
    pack_batch,
    unpack_batch,
)
from livecast.backplane.redis_pubsub import Shard
from livecast.backplane.redis_wire import ERRORS as WIRE_ERRORS
from livecast.backplane.redis_wire import Endpoint, NotSent, Publisher, command
from livecast.store.redis import connect

__all__ = ["RedisBroker"]

log = logging.getLogger(__name__)

NO_RETRY = Retry(NoBackoff(), 0)  # invariant 6
_ERRORS = (RedisError, RedisClusterException, OSError, asyncio.TimeoutError)
COMMAND_TIMEOUT = 2.0

# KEYS fence, seq, channel[, stream, stream epoch]; ARGV token, seq_end, packed batch,
# PUBLISH|SPUBLISH, prev (-1: any) -- the batch must follow the last one published
# (no gap: broker.py) -- [, history payload, maxlen, ttl ms, epoch if none yet]
_PUBLISH = """
if tonumber(redis.call('GET', KEYS[1]) or '0') ~= tonumber(ARGV[1]) then return 0 end
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local seq = tonumber(ARGV[2])
if seq < last then return 0 end
local prev = tonumber(ARGV[5])
if prev >= 0 and prev ~= last then return 0 end
if KEYS[4] then
  redis.call('SET', KEYS[5], ARGV[9], 'NX')
  redis.call('XADD', KEYS[4], 'MAXLEN', ARGV[7], '*', 'p', ARGV[6])
  redis.call('PEXPIRE', KEYS[4], ARGV[8])
end
if seq > last then redis.call('SET', KEYS[2], ARGV[2]) end
redis.call(ARGV[4], KEYS[3], ARGV[3])
return 1
"""

# KEYS lease, fence; ARGV node, ttl ms -> the token, or the node holding it
_ACQUIRE = """
local held = redis.call('GET', KEYS[1])
if held then
  local space = string.find(held, ' ', 1, true)
  if string.sub(held, space + 1) ~= ARGV[1] then return string.sub(held, space + 1) end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(string.sub(held, 1, space - 1))
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. ' ' .. ARGV[1], 'PX', ARGV[2])
return token
"""

# KEYS lease, fence; ARGV "<token> <node>", ttl ms (0: release), token.  An expired
# lease whose fence is still the token (nobody took it since) is taken again.
_RENEW = """
local held = redis.call('GET', KEYS[1])
if held ~= ARGV[1] then
  if held or ARGV[2] == '0' or redis.call('GET', KEYS[2]) ~= ARGV[3] then return 0 end
end
if ARGV[2] == '0' then redis.call('DEL', KEYS[1]) else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
return 1
"""

_PRUNE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, node in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  redis.call('HDEL', KEYS[1], node)
  redis.call('ZREM', KEYS[2], node)
end
"""
# KEYS info, until; ARGV node, info JSON, ttl ms
_HEARTBEAT = _PRUNE + """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
return redis.call('HGETALL', KEYS[1])
"""
_NODES = _PRUNE + "return redis.call('HGETALL', KEYS[1])\n"
_SCRIPTS = {"publish": _PUBLISH, "acquire": _ACQUIRE, "renew": _RENEW,
            "heartbeat": _HEARTBEAT, "nodes": _NODES}


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _name(host: str, port: int) -> str:
    """A shard's name: its master's address, or "redis" for the one server."""
    return f"{host}:{port}" if host else "redis"

class RedisBroker:
    """The Broker protocol on Redis (module invariants)."""

    def __init__(self, url: str, node_id: str, *, prefix: str = "lc") -> None:
        try:
            self._client = connect(url, decode_responses=False, socket_timeout=COMMAND_TIMEOUT,
                                   socket_connect_timeout=COMMAND_TIMEOUT, retry=NO_RETRY)
        except (ValueError, *_ERRORS) as exc:
            raise BrokerError(f"bad Redis URL: {exc}") from exc
        self._url = urlsplit(url)
        self.cluster = isinstance(self._client, RedisCluster)
        self.node_id = node_id
        self.prefix = prefix
        self.refs = RoomRefs()
        self.streams = True  # broker.py, invariant 7
        self._handler: EventHandler | None = None
        self._started = False
        self._shards: dict[str, Shard] = {}
        self._where: dict[bytes, str] = {}  # channel -> the shard it was put on
        self._remapping: asyncio.Task[None] | None = None
        self._remap_again = False
        self._gaps = 0  # subscription gaps not counted by the shards there are now
        self._rooms: dict[bytes, str] = {}  # batch channel -> group id
        self._control = {self._name(f"{{n:{node_id}}}:ctl"), self._name("{nodes}:ctl")}
        self._publish_cmd = "SPUBLISH" if self.cluster else "PUBLISH"
        self._scripts = {name: self._client.register_script(lua)
                         for name, lua in _SCRIPTS.items()}
        self._order = KeyedLocks()  # one room's batches in call order
        # one server: the tick's script (invariant 2), and the control messages
        # on a connection of their own, with no reply (invariant 5)
        self._publisher = None if self.cluster else Publisher(self._endpoint("", 0))
        self._controls = (None if self.cluster
                          else Publisher(self._endpoint("", 0), replies=False))

    def _name(self, rest: str) -> bytes:
        return f"{self.prefix}:{rest}".encode()

    def _room(self, group_id: str, part: str) -> bytes:
        return self._name(f"{{g:{group_id}}}:{part}")

    async def _call(self, what: str, script: str, keys: list[bytes], args: list[Any]) -> Any:
        try:
            return await self._scripts[script](keys=keys, args=args)
        except _ERRORS as exc:  # an error reply: not run; else it may have been
            raise BrokerError(f"{what}: {exc}",
                              maybe_sent=not isinstance(exc, ResponseError)) from exc

    # ----------------------------------------------------------- lifecycle
    async def start(self, handler: EventHandler) -> None:
        self._handler = handler
        self._started = True
        if isinstance(self._client, RedisCluster):
            try:
                await self._client.initialize()
            except _ERRORS as exc:
                raise BrokerError(f"cannot reach the Redis Cluster: {exc}") from exc
        for channel in self._control:
            shard = self._shard(channel)
            shard.channels[channel] = None
        for shard in self._shards.values():
            shard.start()

    def _shard(self, channel: bytes) -> Shard:
        """The reader of ``channel``: the one server, or the master of its slot
        (as the slot map says now; ``_where`` keeps where it was put)."""
        host, port = self._master(channel)
        name = _name(host, port)
        self._where[channel] = name
        shard = self._shards.get(name)
        if shard is None:
            shard = Shard(name, self._endpoint(host, port), self.cluster, self._message,
                          self._moved if self.cluster else None)
            self._shards[name] = shard
            if self._started:
                shard.start()
        return shard

    def _moved(self) -> None:
        """A shard saw a sign of a slot served elsewhere (redis_pubsub, invariant
        5): the channels are mapped again, once at a time, and again if another
        sign came meanwhile (invariant 7)."""
        self._remap_again = True
        if self._remapping is None and self._handler is not None:
            self._remapping = asyncio.get_running_loop().create_task(self._remaps())

    async def _remaps(self) -> None:
        try:
            while self._remap_again:
                self._remap_again = False
                try:
                    await self._remap()
                except Exception:  # a slot with no master yet, say: the next sign tries again
                    log.warning("Redis Cluster: channels not mapped again", exc_info=True)
        finally:
            self._remapping = None

    async def _remap(self) -> None:
        assert isinstance(self._client, RedisCluster)
        try:
            await self._client.nodes_manager.initialize()
        except _ERRORS as exc:
            log.warning("Redis Cluster: the slot map could not be read: %s", exc)
            return  # the shard's next sign asks again
        moved: list[bytes] = []
        for name, shard in list(self._shards.items()):
            for channel in [ch for ch in shard.channels if _name(*self._master(ch)) != name]:
                shard.forget(channel)
                self._shard(channel).channels[channel] = None  # wanted there from now on
                moved.append(channel)
        if moved:
            self._gaps += 1  # what was published to them meanwhile was missed
            log.info("Redis Cluster: %d channels moved to their slots' new masters",
                     len(moved))
        await asyncio.gather(*(self._shard(channel).add(channel) for channel in moved))
        for name, shard in list(self._shards.items()):
            if not shard.channels:  # a master that serves none of ours any more
                del self._shards[name]
                self._gaps += max(0, shard.connects - 1)  # the count never goes down
                await shard.close()

    def _master(self, channel: bytes) -> tuple[str, int]:
        """The master of ``channel``'s slot as the slot map says now (one server: "")."""
        if not isinstance(self._client, RedisCluster):
            return "", 0
        node = self._client.nodes_manager.get_node_from_slot(key_slot(channel))
        return str(node.host), int(node.port)

    def _endpoint(self, host: str, port: int) -> Endpoint:
        """The one server of the URL, or a cluster's master (the URL's credentials)."""
        if not host:
            return Endpoint.from_url(self._url.geturl())
        return Endpoint(host, port, username=self._url.username, password=self._url.password,
                        tls=self._url.scheme.startswith("rediss"))

    def connected(self) -> bool:
        return bool(self._shards) and all(shard.up for shard in self._shards.values())

    def reconnects(self) -> int:
        return self._gaps + sum(max(0, shard.connects - 1) for shard in self._shards.values())

    async def ready(self) -> bool:
        if not self._shards or not all(shard.up for shard in self._shards.values()):
            return False
        try:
            return bool(await self._client.ping())
        except _ERRORS:
            return False

    async def close(self) -> None:
        self._handler = None
        if self._remapping is not None:
            self._remapping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._remapping
        for shard in self._shards.values():
            await shard.close()
        self._shards.clear()
        for publisher in (self._publisher, self._controls):
            if publisher is not None:
                publisher.close()
        await self._client.aclose()

    # ----------------------------------------------------------- batches
    async def publish(self, group_id: str, full: bytes, lite: bytes | None, seq_end: int,
                      token: int, prev: int = -1, fates: bytes = b"",
                      stream: StreamAppend | None = None) -> bool:
        keys = [self._room(group_id, "fence"), self._room(group_id, "seq"),
                self._room(group_id, "batch")]
        args: list[Any] = [token, seq_end, pack_batch(full, lite, fates), self._publish_cmd, prev]
        if stream is not None:
            keys += [self._room(group_id, "history"), self._room(group_id, "hepoch")]
            args += [stream.payload, stream.maxlen, stream.ttl_ms, stream.epoch]
        what = f"publish to {group_id}"
        async with self._order.hold(group_id):  # in call order (broker.py, invariant 3)
            if self._publisher is None:
                return bool(await self._call(what, "publish", keys, args))
            return bool(await self._script_on_wire(what, "publish", keys, args))

    async def _script_on_wire(self, what: str, name: str, keys: list[bytes],
                              args: list[Any]) -> Any:
        """One server: a script on the publisher's connection (invariant 2)."""
        reply = await self._on_wire(
            what, command(b"EVALSHA", self._scripts[name].sha, len(keys), *keys, *args))
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
            reply = await self._on_wire(
                what, command(b"EVAL", _SCRIPTS[name], len(keys), *keys, *args))
        if isinstance(reply, hiredis.ReplyError):
            raise BrokerError(f"{what}: {reply}")
        return reply

    async def _on_wire(self, what: str, cmd: bytes) -> Any:
        """One server: a command on the publisher's connection (invariant 2);
        a refused one's reply is a ``hiredis.ReplyError``."""
        assert self._publisher is not None
        try:
            (reply,) = await self._publisher.call_many([cmd])
        except WIRE_ERRORS as exc:  # sent unless no connection could be made
            raise BrokerError(f"{what}: {exc}", maybe_sent=not isinstance(exc, NotSent)) from exc
        return reply

    def publish_now(self, group_id: str, full: bytes, lite: bytes | None, seq_end: int,
                    token: int, prev: int = -1) -> None:
        return None  # a round trip to Redis: ``publish`` is awaited

    async def subscribe(self, group_id: str) -> None:
        await self.refs.add(group_id, self._subscribe)

    async def unsubscribe(self, group_id: str) -> None:
        await self.refs.remove(group_id, self._unsubscribe)

    async def _subscribe(self, group_id: str) -> None:
        channel = self._room(group_id, "batch")
        self._rooms[channel] = group_id
        await self._shard(channel).add(channel)

    async def _unsubscribe(self, group_id: str) -> None:
        channel = self._room(group_id, "batch")
        self._rooms.pop(channel, None)
        shard = self._shards.get(self._where.pop(channel, ""))
        if shard is not None:  # where it was put, wherever its slot is now
            await shard.remove(channel)

    def _message(self, channel: bytes, data: bytes) -> None:
        handler = self._handler
        if handler is None:
            return
        if channel in self._control:
            deliver(handler, data)
            return
        group_id = self._rooms.get(channel)
        if group_id is None or group_id not in self.refs:
            return  # unsubscribed meanwhile (broker.py, invariant 1)
        try:
            full, lite, fates = unpack_batch(data)
        except ValueError:
            log.warning("skipped a malformed batch on %r", channel)
            return
        hand_batch(handler, group_id, full, lite, fates)

    # ----------------------------------------------------------- control
    def _control_channel(self, target: str) -> bytes:
        return self._name("{nodes}:ctl") if target == ALL else self._name(f"{{n:{target}}}:ctl")

    async def control_many(self, batches: Mapping[str, Sequence[Control]]) -> None:
        """One PUBLISH per target (a bundle), all in one pipelined round trip on
        one server (invariant 5 of broker.py); on a cluster, one SPUBLISH per
        target, all at once (each channel's slot has its own master)."""
        await self._send_controls([(target, encode_controls(self.node_id, messages))
                                   for target, messages in batches.items() if messages])

    async def control(self, target: str, message: Control) -> None:
        await self._send_controls([(target, encode_control(self.node_id, message))])

    async def _send_controls(self, sends: Sequence[tuple[str, bytes]]) -> None:
        """Encoded control messages, each to its target's channel (invariant 5).
        On a cluster the targets' masters are asked at once, so that a slow one
        holds up no other; ``BrokerError.failed`` names the targets not sent."""
        if self._controls is None:
            if len(sends) == 1:  # the usual bundle: one target, no task for it
                await self._spublish_control(*sends[0])
                return
            results = await asyncio.gather(
                *(self._spublish_control(t, data) for t, data in sends), return_exceptions=True)
            failed = [(t, r) for (t, _), r in zip(sends, results, strict=True)
                      if isinstance(r, BaseException)]
            for _target, error in failed:
                if not isinstance(error, BrokerError):
                    raise error  # not Redis's: a bug, as a sequential call would raise it
            if failed:
                raise BrokerError("; ".join(str(e) for _t, e in failed),
                                  failed=frozenset(t for t, _e in failed))
            return
        try:
            await self._controls.send_many(
                [command(b"PUBLISH", self._control_channel(t), data) for t, data in sends])
        except WIRE_ERRORS as exc:
            raise BrokerError(f"control to {', '.join(t for t, _ in sends)}: {exc}") from exc

    async def _spublish_control(self, target: str, data: bytes) -> None:
        """A Redis Cluster: SPUBLISH, to the master of the channel's slot."""
        channel = self._control_channel(target)
        try:
            await self._client.spublish(channel, data)
        except _ERRORS as exc:
            raise BrokerError(f"control to {target}: {exc}") from exc

    # ----------------------------------------------------------- leases
    def _lease_keys(self, group_id: str) -> list[bytes]:
        return [self._room(group_id, "lease"), self._room(group_id, "fence")]

    async def acquire_lease(self, group_id: str, node_id: str, ttl: float) -> int | None:
        got = await self._call(f"lease of {group_id}", "acquire", self._lease_keys(group_id),
                               [node_id, _ms(ttl)])
        return got if isinstance(got, int) else None

    async def renew_lease(self, group_id: str, node_id: str, token: int, ttl: float) -> bool:
        return bool(await self._call(f"lease of {group_id}", "renew", self._lease_keys(group_id),
                                     [f"{token} {node_id}", _ms(ttl), token]))

    async def release_lease(self, group_id: str, node_id: str, token: int) -> bool:
        return bool(await self._call(f"lease of {group_id}", "renew", self._lease_keys(group_id),
                                     [f"{token} {node_id}", 0, token]))

    async def renew_leases(self, node_id: str, held: Mapping[str, int],
                           ttl: float) -> set[str]:
        calls = [(self._lease_keys(gid), [f"{token} {node_id}", _ms(ttl), token])
                 for gid, token in held.items()]
        answers = await self._pipelined("renew", _RENEW, calls)
        return {gid for gid, ok in zip(held, answers, strict=True) if ok}

    async def acquire_leases(self, node_id: str, group_ids: Sequence[str],
                             ttl: float) -> dict[str, int | str | None]:
        calls = [(self._lease_keys(gid), [node_id, _ms(ttl)]) for gid in group_ids]
        answers = await self._pipelined("acquire", _ACQUIRE, calls)
        return {gid: got if isinstance(got, int) else None if got is None else _text(got)
                for gid, got in zip(group_ids, answers, strict=True)}

    async def _pipelined(self, what: str, lua: str,
                         calls: list[tuple[list[bytes], list[Any]]]) -> list[Any]:
        """One script over many rooms: one pipeline, so one round trip per server
        (a Redis Cluster's pipeline groups the rooms by the master of their slot;
        each room's keys share one slot, so each call stays on one server)."""
        if not calls:
            return []
        try:
            pipe = self._client.pipeline(transaction=False)
            for keys, args in calls:
                pipe.eval(lua, len(keys), *keys, *args)
            answers = await pipe.execute(raise_on_error=False)
        except _ERRORS as exc:
            raise BrokerError(f"{what} of {len(calls)} leases: {exc}") from exc
        failed = [a for a in answers if isinstance(a, Exception)]
        if failed:
            raise BrokerError(f"{what} of {len(calls)} leases: {failed[0]}")
        return list(answers)

    async def owner_of(self, group_id: str) -> str | None:
        held = await self._get(self._room(group_id, "lease"))
        return None if held is None else held.partition(b" ")[2].decode()

    async def last_seq(self, group_id: str) -> int:
        return int(await self._get(self._room(group_id, "seq")) or 0)

    async def _get(self, key: bytes) -> bytes | None:
        try:
            value = await self._client.get(key)
        except _ERRORS as exc:
            raise BrokerError(f"get {key!r}: {exc}") from exc
        if value is None:
            return None
        return value if isinstance(value, bytes) else str(value).encode()

    # ----------------------------------------------------------- liveness
    def _registry(self) -> list[bytes]:
        return [self._name("{nodes}:info"), self._name("{nodes}:until")]

    async def heartbeat(self, node_id: str, info: Mapping[str, Any],
                        ttl: float) -> dict[str, dict[str, Any]]:
        return _beats(await self._call("heartbeat", "heartbeat", self._registry(),
                                       [node_id, orjson.dumps(dict(info)), _ms(ttl)]))

    async def nodes(self) -> dict[str, dict[str, Any]]:
        return _beats(await self._call("nodes", "nodes", self._registry(), []))


def _beats(flat: list[bytes]) -> dict[str, dict[str, Any]]:
    """The registry's ``HGETALL``: node id, info JSON, node id, ..."""
    pairs = zip(flat[::2], flat[1::2], strict=True)
    return {_text(node): orjson.loads(info) for node, info in pairs}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
