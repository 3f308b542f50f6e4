"""``livecast counter``: the like counter (docs/counter.md).

A Tencent-format webhook receiver (docs/webhooks.md) and a
write-back loop (AppDefinedData or group counters, docs/rest.md).

Invariants:
- The receiver never awaits the REST API: a callback is checked, counted in
  the pure ``LikeTally`` and answered at once, so a slow or dead REST
  endpoint never delays a callback.
- Every authenticated callback gets HTTP 200 with the OK envelope, so the
  counter never blocks or alters a message; other commands than
  ``Group.CallbackBeforeSendMsg`` and malformed bodies are acknowledged and
  not counted.
- A callback with a wrong ``SdkAppid``, or, with a token configured, a
  missing or wrong ``Sign``/``RequestTime``, gets HTTP 401: the sender sees a
  failed webhook and applies its failure policy (deliver, by default) rather
  than a rejection, so a misconfigured token never turns into refused
  messages; nothing is counted.
- Writes carry totals (``LikeTally`` invariant 1); a failed write is retried
  at the room's next flush; a room whose group is gone (10010, 10015) is
  forgotten.  At shutdown every pending room is written once more.
- Each callback is counted once: a resent copy (same ``like_key``) is
  acknowledged and not counted again (``RecentKeys`` in memory; with Redis,
  ``DurableTally``, which also survives a restart).  With Redis a callback is
  answered only once its like is in Redis; when Redis fails it gets HTTP 503,
  so livecast sends it again later (docs/webhooks.md, "Likes are never skipped").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import asdict, dataclass

import aiohttp
import orjson
from aiohttp import web

from livecast.core.likes import Like, LikeTally, RecentKeys, like_key, recognise
from livecast.core.signing import tencent_sign_ok
from livecast.counter.durable import DurableError, DurableTally
from livecast.counter.rest import TRANSPORT_ERROR, RestClient, Totals, TotalStore, code_of
from livecast.counter.settings import CounterSettings
from livecast.errors import Code
from livecast.runner import UNREADABLE_BODY, install_uvloop, serve_app

log = logging.getLogger("livecast.counter")

BEFORE_SEND = "Group.CallbackBeforeSendMsg"
AFTER_DESTROYED = "Group.CallbackAfterGroupDestroyed"
ACK = orjson.dumps({"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""})
MAX_BODY = 64 * 1024  # a message is at most 12 KB (docs/protocol.md); the rest is envelope
MIN_PAUSE = 0.01  # the shortest pause between two looks, seconds
SWEEP = 60.0  # how often it forgets idle rooms, seconds
GONE = frozenset({Code.GROUP_NOT_FOUND, Code.INVALID_GROUP_ID})


@dataclass(slots=True)
class Stats:
    callbacks: int = 0
    likes: int = 0
    refused: int = 0
    malformed: int = 0
    writes: int = 0
    write_failures: int = 0
    duplicates: int = 0
    unavailable: int = 0


class Counter:
    """The receiver's decisions and the write-back of one counter process.

    Also the in-process counter of ``livecast serve`` (``livecast.node.likes``):
    there it counts recognised messages (``count``) and its store is the node."""

    def __init__(self, settings: CounterSettings, clock: Callable[[], float] = time.time,
                 rand: Callable[[], float] | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.rule = settings.rule
        self.tally = LikeTally(rand or random.Random().random, settings.min_s, settings.max_s)
        self.stats = Stats()
        self.store: Totals | None = None  # set while the app runs (``_rest_ctx``)
        self.durable: DurableTally | None = None  # with a Redis URL, while the app runs
        self.recent = RecentKeys()
        self._tasks: set[asyncio.Task[None]] = set()
        self._failing = False
        self._wake = asyncio.Event()  # a room became due before the loop's planned wake
        self._asleep_until: float | None = None  # while the loop sleeps: when it wakes

    # ------------------------------------------------------------ receiver
    def refusal(self, query: Mapping[str, str]) -> str:
        """Why a callback's query string is refused ("" when it is accepted)."""
        s = self.settings
        if query.get("SdkAppid") != str(s.sdkappid):
            return "SdkAppid does not match"
        token = s.callback_token.value
        if not token:
            return ""
        window = s.sign_window or None
        ok = tencent_sign_ok(token, query.get("Sign", ""), query.get("RequestTime", ""),
                             self.clock(), window)
        return "" if ok else "Sign or RequestTime is missing or wrong"

    def receive(self, command: str, raw: bytes) -> int:
        """Count the likes of one accepted callback (in memory); returns how many.
        A destroyed room's likes are forgotten (``destroyed``)."""
        gone = self._gone_of(command, raw)
        if gone is not None:
            self.destroyed(gone)
            return 0
        found = self._like_of(command, raw)
        if found is None:
            return 0
        like, key = found
        if not self.recent.first(key):
            self.stats.duplicates += 1
            return 0
        return self.count(like)

    async def receive_durable(self, command: str, raw: bytes) -> int:
        """``receive`` with the count made in Redis first (raises ``DurableError``)."""
        durable = self.durable
        if durable is None:
            return self.receive(command, raw)
        gone = self._gone_of(command, raw)
        if gone is not None:  # forgotten in Redis (first: it may fail) before the next like
            await durable.forget(gone)
            self.tally.forget(gone)
            return 0
        found = self._like_of(command, raw)
        if found is None:
            return 0
        like, key = found
        fresh, counted = await durable.count(key, like.group_id, like.count)
        if not fresh:
            self.stats.duplicates += 1
            self._catch_up(like.group_id, counted)
            return 0
        self.recent.first(key)
        self.stats.likes += like.count
        self._catch_up(like.group_id, counted)  # Redis is the count: memory follows it
        return like.count

    def _catch_up(self, group_id: str, counted: int) -> None:
        """Memory follows Redis's count for the room (one counter per app:
        docs/counter.md), never below it: a like counted there while its
        reply was lost (the replay found it seen) is counted here too, and
        replies that come back out of order count nothing twice."""
        behind = counted - self.tally.counted(group_id)
        if behind > 0:
            self.tally.add(group_id, behind, self.clock())
            self._nudge()

    @staticmethod
    def _gone_of(command: str, raw: bytes) -> str | None:
        """The group id of a ``Group.CallbackAfterGroupDestroyed``, else None."""
        if command != AFTER_DESTROYED or len(raw) > MAX_BODY:
            return None
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        gid = body.get("GroupId") if isinstance(body, dict) else None
        return gid if isinstance(gid, str) and gid else None

    def destroyed(self, group_id: str) -> None:
        """The room is gone: its likes are forgotten, here and in Redis, so a
        room made again with its id starts from its own value, not the old
        total."""
        self.tally.forget(group_id)
        self._forget_durable(group_id, None)

    def _like_of(self, command: str, raw: bytes) -> tuple[Like, str] | None:
        self.stats.callbacks += 1
        if command != BEFORE_SEND:
            return None
        try:
            body = orjson.loads(raw) if len(raw) <= MAX_BODY else None
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            self.stats.malformed += 1
            return None
        like = recognise(body, self.rule)
        return None if like is None else (like, like_key(body))

    async def restore(self) -> int:
        """Read the durable tallies back (at start); returns the rooms restored."""
        if self.durable is None:
            return 0
        rooms = await self.durable.load()
        now = self.clock()
        for group_id, (counted, base) in rooms.items():
            self.tally.restore(group_id, counted, base, now)
        return len(rooms)

    def count(self, like: Like) -> int:
        """Add a recognised like to its room's total; returns how many it holds."""
        if like.group_id not in self.tally:
            log.debug("room first seen: %s", like.group_id)
        self.tally.add(like.group_id, like.count, self.clock())
        self.stats.likes += like.count
        self._nudge()
        return like.count

    def _nudge(self) -> None:
        """Wake the sleeping loop if a room is now due before it would wake."""
        due = self.tally.next_due()
        if due is not None and self._asleep_until is not None and due < self._asleep_until:
            self._wake.set()

    # ----------------------------------------------------------- write-back
    async def flush_due(self, now: float | None = None) -> int:
        """Write every room due at ``now`` (default: the clock); returns rooms taken."""
        now = self.clock() if now is None else now
        return await self._flush(self.tally.take_due(now), now)

    async def flush_now(self) -> int:
        """Write every room with unwritten likes, due or not; returns rooms taken."""
        return await self._flush(self.tally.take_all(), self.clock())

    async def _flush(self, rooms: list[str], now: float) -> int:
        """Flush ``rooms`` with at most ``concurrency`` REST calls in flight."""
        todo = iter(rooms)

        async def worker() -> None:
            for group_id in todo:  # one shared iterator: each room is taken once
                await self._flush_room(group_id, now)

        try:
            async with asyncio.TaskGroup() as tg:
                for _ in range(min(len(rooms), self.settings.concurrency)):
                    tg.create_task(worker())
        finally:  # rooms never started (cancelled, or a worker failed) stay due
            for group_id in todo:
                self._settle(group_id, TRANSPORT_ERROR, "not written", 0,
                             max(now, self.clock()))
        return len(rooms)

    async def _flush_room(self, group_id: str, now: float) -> None:
        entry = self.tally.entry(group_id)
        code, info, total = TRANSPORT_ERROR, "cancelled", 0
        try:
            code, info, total = await self._write(group_id, entry)
        finally:
            if self.tally.entry(group_id) is entry:  # else destroyed meanwhile: forgotten
                self._settle(group_id, code, info, total, max(now, self.clock()))

    async def _write(self, group_id: str, entry: object) -> tuple[int, str, int]:
        """Read the room's base on first sight, then write its total (nothing
        once the room was destroyed meanwhile: ``entry`` is no longer its)."""
        store = self.store
        if store is None:
            return TRANSPORT_ERROR, "the REST client is not running", 0
        if self.tally.needs_base(group_id):
            read = await store.read(group_id)
            if read.code:
                return read.code, read.info, 0
            base = read.value
            if self.durable is not None and self.tally.entry(group_id) is entry:
                try:
                    base = await self.durable.set_base(group_id, base)
                except DurableError as exc:
                    return TRANSPORT_ERROR, f"Redis: {exc}", 0
            if self.tally.entry(group_id) is not entry:
                return TRANSPORT_ERROR, "destroyed meanwhile", 0
            self.tally.set_base(group_id, base)
        total = self.tally.total(group_id)
        reply = await store.write(group_id, total)
        return code_of(reply), str(reply.get("ErrorInfo", "")), total

    def _settle(self, group_id: str, code: int, info: str, total: int, now: float) -> None:
        if code == 0:
            self.tally.written(group_id, total, now)
            self._nudge()  # likes that came during the write make the room due again
            self.stats.writes += 1
            if self._failing:
                self._failing = False
                log.info("writes succeed again")
            return
        self.stats.write_failures += 1
        if code in GONE:
            log.info("room %s is gone (%d %s); its likes are forgotten", group_id, code, info)
            self.destroyed(group_id)
            return
        self.tally.failed(group_id, now)
        self._nudge()
        if not self._failing:
            self._failing = True
            log.warning("write of room %s failed (%d %s); retrying", group_id, code, info)

    async def run(self) -> None:
        """The loop: flush due rooms; once a minute, forget idle ones.  Between
        two flushes it sleeps until the next room is due (or the next minute),
        woken early when a like makes a room due sooner: no polling."""
        sweep = self.clock() + SWEEP
        while True:
            try:
                await self.flush_due()
            except Exception:
                log.exception("flush failed")
            if self.clock() >= sweep:
                sweep = self.clock() + SWEEP
                counted = self.tally.counts()
                for gid in self.tally.forget_idle(self.clock(), self.settings.idle_s):
                    self._forget_durable(gid, counted[gid])
            await self._sleep(self._pause(sweep))

    def _forget_durable(self, group_id: str, counted: int | None) -> None:
        """Drop a forgotten room from Redis too (in the background; a failure is logged)."""
        if self.durable is None:
            return
        task = asyncio.create_task(self._forget_one(self.durable, group_id, counted))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _forget_one(durable: DurableTally, group_id: str, counted: int | None) -> None:
        try:
            await durable.forget(group_id, counted)
        except DurableError as exc:
            log.warning("room %s: not forgotten in Redis (%s)", group_id, exc)

    def _pause(self, sweep: float) -> float:
        """Until the next room is due, or the next sweep if that is sooner."""
        due = self.tally.next_due()
        wait = sweep - self.clock() if due is None else min(sweep, due) - self.clock()
        return max(MIN_PAUSE, wait)

    async def _sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or until ``_nudge`` wakes the loop."""
        self._asleep_until = self.clock() + seconds
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._wake.wait()
        finally:
            self._asleep_until = None
            self._wake.clear()

    async def final_flush(self) -> None:
        """At shutdown: write what is pending once more, within two REST timeouts."""
        try:
            async with asyncio.timeout(2 * self.settings.timeout + 1):
                await self.flush_now()
        except TimeoutError:
            log.warning("shutdown: %d rooms not written", len(self.tally.pending()))

    def health(self) -> dict[str, object]:
        return {"status": "ok", "rooms": len(self.tally), "pending": len(self.tally.pending()),
                **asdict(self.stats)}


COUNTER = web.AppKey("counter", Counter)


async def callback(request: web.Request) -> web.Response:
    counter = request.app[COUNTER]
    reason = counter.refusal(request.query)
    if reason:
        counter.stats.refused += 1
        body = {"ActionStatus": "FAIL", "ErrorCode": 1, "ErrorInfo": reason}
        return web.Response(body=orjson.dumps(body), status=401, content_type="application/json")
    try:
        await counter.receive_durable(request.query.get("CallbackCommand", ""),
                                      await _body(request))
    except DurableError as exc:  # not counted: livecast sends the callback again later
        counter.stats.unavailable += 1
        log.warning("callback not counted, Redis failed: %s", exc)
        body = {"ActionStatus": "FAIL", "ErrorCode": 1, "ErrorInfo": "like store unavailable"}
        return web.Response(body=orjson.dumps(body), status=503, content_type="application/json")
    return web.Response(body=ACK, content_type="application/json")


async def _body(request: web.Request) -> bytes:
    """The whole body; past ``MAX_BODY`` (the app's ``client_max_size``) or not
    readable as sent (its Content-Encoding), b"" (malformed)."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        return b""
    except UNREADABLE_BODY:
        return b""


async def healthz(request: web.Request) -> web.Response:
    return web.json_response(request.app[COUNTER].health())


def _rest_ctx(run_loop: bool) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        counter = app[COUNTER]
        s = counter.settings
        timeout = aiohttp.ClientTimeout(total=s.timeout)
        connector = aiohttp.TCPConnector(limit=s.concurrency)
        if s.redis_url:
            counter.durable = DurableTally.open(s.redis_url)
            try:
                log.info("like tallies in Redis: %d rooms restored", await counter.restore())
            except DurableError:
                await counter.durable.close()
                counter.durable = None
                raise
        try:
            async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
                counter.store = TotalStore(RestClient(s, session, counter.clock), s.target, s.key)
                loop = asyncio.create_task(counter.run()) if run_loop else None
                yield
                if loop is not None:
                    loop.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await loop
                await counter.final_flush()
                counter.store = None
        finally:
            if counter.durable is not None:
                await asyncio.gather(*counter._tasks, return_exceptions=True)
                await counter.durable.close()
                counter.durable = None
    return ctx


def make_app(settings: CounterSettings, *, clock: Callable[[], float] = time.time,
             rand: Callable[[], float] | None = None, run_loop: bool = True) -> web.Application:
    """The counter's aiohttp app; ``run_loop=False`` leaves flushing to the caller."""
    app = web.Application(client_max_size=MAX_BODY)
    app[COUNTER] = Counter(settings, clock, rand)
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/{path:.*}", callback)
    app.cleanup_ctx.append(_rest_ctx(run_loop))
    return app


def banner(s: CounterSettings) -> str:
    where = "AppDefinedData" if s.target == "app_defined_data" else "group counter"
    lines = [f"livecast counter listening on http://{s.host}:{s.port}",
             f"  writes {where} {s.key!r} every {s.min_s:g}-{s.max_s:g} s via {s.api}"
             f" as {s.admin}"]
    if s.redis_url:
        lines.append("  tallies kept in Redis (a restart loses no like)")
    if not s.callback_token.value:
        lines.append("  no LIVECAST_CALLBACK_TOKEN: callbacks are not authenticated")
    if s.dev_key:
        lines.append("  using the development key (set LIVECAST_SECRET_KEY)")
    return "\n".join(lines)


def run(settings: CounterSettings) -> None:
    """Serve until SIGINT/SIGTERM, then write what is pending."""
    install_uvloop()
    asyncio.run(serve_app(make_app(settings), settings.host, settings.port, banner(settings)))
