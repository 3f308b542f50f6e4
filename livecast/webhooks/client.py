"""The webhook client: livecast's calls to the business backend
(docs/webhooks.md).  Bodies, query strings and reply parsing are pure
(``livecast.core.callbacks``); this module does the I/O.

Invariants (a slow or dead backend never stalls a room, a node, or other
rooms' webhooks):
- one ``aiohttp.ClientSession`` per node, its pool bounded by
  ``callback_concurrency`` connections, and at most that many callbacks in
  flight (a semaphore, acquired inside the timeout);
- a before-* call (``before_send`` / ``before_join``) never takes longer than
  ``callback_timeout`` in total, and always returns a ``Verdict``: the
  backend's, or the failure policy's (allow, or 80003 when fail-closed);
- after-events (``post``) never block: encoded at once and put on a bounded
  queue served by ``concurrency // 2`` worker tasks (``concurrency`` is at
  least 2), so after-events never hold every slot; a full queue drops the
  event and counts it;
- a circuit breaker (``livecast.core.breaker``) opens after
  ``callback_breaker`` consecutive failures: while open, before-* calls get
  the failure verdict at once and after-events are dropped, both counted in
  ``livecast_callbacks_dropped_total``; one probe per cooldown tests the
  backend again.  Before-* calls and after-events have a breaker each: a
  backend slow to answer after-events (whose replies are ignored) opens no
  breaker the before-* verdicts depend on.  A breaker counts a timeout, a
  transport error or an HTTP status >= 500 as a failure; any other HTTP
  answer shows the backend alive;
- redirects are never followed: a 3xx answer is the backend's answer, a
  status other than 200, so a failed callback like any other (the failure
  policy's verdict; for the breaker the backend is alive).  Following one
  would send the body and a valid signature to wherever the ``Location``
  points (307, 308), or take the verdict from a bodiless GET (301-303);
- metrics: ``sent`` counts calls that passed the breaker (attempted);
  ``failed`` counts sent calls that failed (after-events: transport, timeout
  or a non-200 status; before-*: also an unusable reply); ``timeout`` is the
  part of ``failed`` that timed out; ``dropped`` counts calls never sent.
- held before-sends (docs/webhooks.md, "Likes are never skipped"): a
  before-send asked with ``hold=True`` (a like) that the backend did not
  answer with HTTP 200 -- breaker open, timeout, transport error, 5xx -- while
  the policy let the message through, is kept (at most ``callback_queue``, the
  oldest dropped and counted) and sent again, marked ``"Replayed": 1``, by one
  task, in order, until the backend answers 200; its verdict is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from yarl import URL

from livecast.core.breaker import Breaker, BreakerState
from livecast.core.callbacks import (
    ALLOW,
    COMMANDS,
    PLATFORM_REST,
    Failure,
    Verdict,
    failure_verdict,
    parse_before_join,
    parse_before_send,
    query,
)
from livecast.core.signing import SIGNATURE_HEADER, body_signature
from livecast.settings import Settings

__all__ = ["MAX_REPLY_BYTES", "WebhookMetrics", "Webhooks"]

log = logging.getLogger("livecast.webhooks")

MAX_REPLY_BYTES = 256 * 1024  # a longer reply is a failed callback
TIMED_OUT = Failure("timeout")
Raw = tuple[int, bytes]  # HTTP status and reply body
Parse = Callable[[int, bytes, Mapping[str, Any]], Verdict | Failure]


@dataclass(frozen=True, slots=True)
class _Job:
    command: str
    data: bytes  # the body, encoded once
    client_ip: str
    platform: str
    after: bool = False  # an after-event: its own breaker (a slow one blocks no verdict)


class WebhookMetrics:
    """The webhook series in a node's registry (labelled by CallbackCommand)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.sent = Counter("livecast_callbacks_sent", "Callbacks sent (passed the breaker)",
                            ["command"], registry=r)
        self.failed = Counter("livecast_callbacks_failed", "Callbacks sent that failed",
                              ["command"], registry=r)
        self.timeout = Counter("livecast_callbacks_timeout", "Callbacks that timed out",
                               ["command"], registry=r)
        self.dropped = Counter("livecast_callbacks_dropped",
                               "Callbacks not sent (queue full, breaker open, closed)",
                               ["command"], registry=r)
        self.seconds = Histogram(
            "livecast_callback_seconds", "Callback duration, slot wait included", ["command"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0), registry=r)
        self.breaker = Gauge("livecast_callback_breaker_state",
                             "Webhook circuit breaker: 0 closed, 1 open, 2 half-open", registry=r)
        for command in COMMANDS:
            for family in (self.sent, self.failed, self.timeout, self.dropped, self.seconds):
                family.labels(command)


class Webhooks:
    """Calls to the business backend.  ``enabled`` is False without a
    ``callback_url``: before-* calls then allow at once and ``post`` does nothing.
    A before-* call made before ``start`` or after ``close`` is not sent (it
    gets the failure verdict, counted as dropped); events posted before
    ``start`` wait in the queue, events posted after ``close`` are dropped."""

    def __init__(self, settings: Settings, registry: CollectorRegistry,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.enabled = bool(settings.callback_url)
        self.clock = clock
        self.breaker = Breaker(settings.callback_breaker, settings.callback_breaker_cooldown)
        # after-events count on a breaker of their own: a backend slow to
        # answer them (Tencent ignores those replies) opens no breaker the
        # before-* verdicts depend on
        self.after_breaker = Breaker(settings.callback_breaker,
                                     settings.callback_breaker_cooldown)
        self.probe: asyncio.Task[None] | None = None  # a before-* probe in flight
        self.metrics = WebhookMetrics(registry)
        self._url = URL(settings.callback_url)
        self._token = settings.callback_token.value
        self._keys = tuple(k.value for k in settings.callback_hmac_keys)
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(settings.callback_queue)
        self._slots = asyncio.Semaphore(settings.callback_concurrency)
        self._session: aiohttp.ClientSession | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._closing = False
        self._held: deque[_Job] = deque()
        self._held_event = asyncio.Event()
        self._replayer: asyncio.Task[None] | None = None

    @property
    def worker_count(self) -> int:
        return max(1, self.settings.callback_concurrency // 2)  # LIVECAST_*: at least 1 of 2

    # ----------------------------------------------------------- lifecycle
    async def start(self) -> None:
        if not self.enabled or self._session is not None:
            return
        s = self.settings
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=s.callback_concurrency),
            timeout=aiohttp.ClientTimeout(total=s.callback_timeout))
        self._workers = [asyncio.create_task(self._worker(), name=f"webhooks-{i}")
                         for i in range(self.worker_count)]
        self._replayer = asyncio.create_task(self._replay(), name="webhooks-replay")
        log.info("webhooks to %s: timeout %gs, %d in flight, queue %d, fail %s",
                 self._url.host, s.callback_timeout, s.callback_concurrency, s.callback_queue,
                 "closed" if s.callback_fail_closed else "open")

    async def close(self) -> None:
        """Stop taking events, let the queue drain for up to one timeout, then
        cancel the workers (what is left is counted as dropped)."""
        self._closing = True
        if self._replayer is not None:
            self._replayer.cancel()
            await asyncio.gather(self._replayer, return_exceptions=True)
            self._replayer = None
        for job in self._held:
            self.metrics.dropped.labels(job.command).inc()
        if self._held:
            log.warning("webhooks: %d held before-send callbacks not sent", len(self._held))
        self._held.clear()
        if self.probe is not None and not self.probe.done():
            self.probe.cancel()
            await asyncio.gather(self.probe, return_exceptions=True)
        if self._workers:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.callback_timeout):
                    await self._queue.join()
            for task in self._workers:
                task.cancel()
            await asyncio.gather(*self._workers, return_exceptions=True)
            self._workers = []
        while not self._queue.empty():
            self.metrics.dropped.labels(self._queue.get_nowait().command).inc()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ----------------------------------------------------------- the API
    async def before_send(self, body: dict[str, Any], client_ip: str, platform: str,
                          hold: bool = False) -> Verdict:
        """Group.CallbackBeforeSendMsg: the verdict on one message; with ``hold``,
        a callback the backend did not get is sent again later (invariants)."""
        return await self._before(body, client_ip, platform, parse_before_send, hold)

    @property
    def held(self) -> int:
        """Before-send callbacks waiting to be sent again."""
        return len(self._held)

    async def before_join(self, body: dict[str, Any], client_ip: str, platform: str) -> Verdict:
        """Group.CallbackBeforeApplyJoinGroup: the verdict on one join."""
        return await self._before(body, client_ip, platform,
                                  lambda status, data, _sent: parse_before_join(status, data))

    def post(self, body: dict[str, Any], client_ip: str = "",
             platform: str = PLATFORM_REST) -> None:
        """Queue an after-event (its reply is ignored); never blocks."""
        if not self.enabled:
            return
        command = body["CallbackCommand"]
        if self._closing or self.after_breaker.blocked(self.clock()):
            self.metrics.dropped.labels(command).inc()
            return
        try:
            self._queue.put_nowait(_Job(command, orjson.dumps(body), client_ip, platform,
                                        after=True))
        except asyncio.QueueFull:
            self.metrics.dropped.labels(command).inc()

    # ----------------------------------------------------------- internals
    async def _before(self, body: dict[str, Any], client_ip: str, platform: str,
                      parse: Parse, hold: bool = False) -> Verdict:
        if not self.enabled:
            return ALLOW
        job = _Job(body["CallbackCommand"], orjson.dumps(body), client_ip, platform)
        if self.breaker.state is not BreakerState.CLOSED:
            # the backend failed lately: this call is refused, or it is the
            # probe, which goes in the background: nobody waits on a probe
            held = hold and self._holds()  # sent later: not counted as dropped
            if self._allowed(job, count=not held):
                self.probe = asyncio.create_task(self._probe_with(job))
            if held:  # sent again once the backend answers (a probe's copy is a duplicate)
                self._hold(body, job)
            return failure_verdict(self.settings.callback_fail_closed)
        raw = await self._call(job)
        if hold and (raw is None or isinstance(raw, Failure) or raw[0] != 200):
            self._hold(body, job)
        if raw is None:
            return failure_verdict(self.settings.callback_fail_closed)
        result = raw if isinstance(raw, Failure) else parse(raw[0], raw[1], body)
        if isinstance(result, Failure):
            self._count_failure(job.command, result)
            return failure_verdict(self.settings.callback_fail_closed)
        return result

    def _holds(self) -> bool:
        """Whether a like's failed before-send is held: not when the message
        was refused (80003, fail-closed), nor once the node is stopping."""
        return not (self.settings.callback_fail_closed or self._closing)

    def _hold(self, body: dict[str, Any], job: _Job) -> None:
        if not self._holds():
            return
        if len(self._held) >= self.settings.callback_queue:
            self.metrics.dropped.labels(self._held.popleft().command).inc()
        data = orjson.dumps({**body, "Replayed": 1})
        self._held.append(_Job(job.command, data, job.client_ip, job.platform))
        self._held_event.set()

    async def _replay(self) -> None:
        """Send held callbacks, oldest first, until each gets HTTP 200."""
        pause = min(1.0, max(0.05, self.settings.callback_timeout))
        while True:
            await self._held_event.wait()
            while self._held:
                wait = self.breaker.cooldown if self.breaker.blocked(self.clock()) else 0.0
                if wait:
                    await asyncio.sleep(min(pause, wait))
                    continue
                job = self._held[0]
                try:
                    raw = await self._call(job)
                except Exception:  # a bug must not stop the replays
                    log.exception("webhook replay failed")
                    raw = None
                if raw is not None and not isinstance(raw, Failure) and raw[0] == 200:
                    if self._held and self._held[0] is job:
                        self._held.popleft()
                else:
                    await asyncio.sleep(pause)
            self._held_event.clear()

    async def _probe_with(self, job: _Job) -> None:
        """A before-* call made while the breaker is not closed: it tells the
        breaker whether the backend is back; its verdict is not used."""
        raw = await self._send(job)
        if isinstance(raw, Failure):
            self._count_failure(job.command, raw)

    async def _worker(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                raw = await self._call(job)
                if isinstance(raw, Failure):
                    self._count_failure(job.command, raw)
                elif raw is not None and raw[0] != 200:
                    self._count_failure(job.command, Failure(f"HTTP {raw[0]}"))
            except Exception:  # a bug must not stop the after-events
                log.exception("webhook worker: %s failed", job.command)
            finally:
                self._queue.task_done()

    def _count_failure(self, command: str, failure: Failure) -> None:
        self.metrics.failed.labels(command).inc()
        if failure == TIMED_OUT:
            self.metrics.timeout.labels(command).inc()

    async def _call(self, job: _Job) -> Raw | Failure | None:
        """Send one callback through the breaker; None when it was not sent."""
        if not self._allowed(job):
            return None
        return await self._send(job)

    def _allowed(self, job: _Job, count: bool = True) -> bool:
        """May ``job`` go out now (its breaker's decision, counted as dropped
        when not, unless ``count`` is false: a held call is sent later)?"""
        breaker = self._breaker_of(job)
        before = breaker.state
        if self._session is None or not breaker.allow(self.clock()):
            if count:
                self.metrics.dropped.labels(job.command).inc()
            return False
        self._note_breaker(breaker, before)
        return True

    async def _send(self, job: _Job) -> Raw | Failure:
        assert self._session is not None
        self.metrics.sent.labels(job.command).inc()
        loop = asyncio.get_running_loop()
        started = loop.time()
        result = await self._exchange(self._session, job)
        self.metrics.seconds.labels(job.command).observe(loop.time() - started)
        breaker = self._breaker_of(job)
        before = breaker.state
        alive = not isinstance(result, Failure) and result[0] < 500
        breaker.record(alive, self.clock())
        self._note_breaker(breaker, before)
        return result

    async def _exchange(self, session: aiohttp.ClientSession, job: _Job) -> Raw | Failure:
        request_time = int(self.clock())
        url = self._url.extend_query(query(self.settings.sdkappid, job.command, job.client_ip,
                                           job.platform, self._token, request_time))
        headers = {"Content-Type": "application/json"}
        if self._keys:
            headers[SIGNATURE_HEADER] = body_signature(self._keys, request_time, job.data)
        try:
            async with asyncio.timeout(self.settings.callback_timeout):
                async with self._slots, session.post(url, data=job.data, headers=headers,
                                                     allow_redirects=False) as resp:
                    data = await _read_capped(resp, MAX_REPLY_BYTES)
                    return Failure("reply too large") if data is None else (resp.status, data)
        except TimeoutError:
            return TIMED_OUT
        except (aiohttp.ClientError, OSError) as exc:
            return Failure(f"transport: {type(exc).__name__}")
        except RuntimeError:
            if not session.closed:
                raise
            return Failure("closed")  # close() ran while this call waited for a slot

    def _breaker_of(self, job: _Job) -> Breaker:
        return self.after_breaker if job.after else self.breaker

    def _note_breaker(self, breaker: Breaker, before: BreakerState) -> None:
        state = breaker.state
        which = "after-event" if breaker is self.after_breaker else "before-*"
        if breaker is self.breaker:
            self.metrics.breaker.set(int(state))
        if state is BreakerState.OPEN and before is BreakerState.CLOSED:
            log.warning("webhooks: %s circuit breaker open after %d failures; retry in %gs",
                        which, breaker.threshold, breaker.cooldown)
        elif state is BreakerState.CLOSED and before is not BreakerState.CLOSED:
            log.info("webhooks: %s circuit breaker closed, the backend answers again", which)


async def _read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The reply body, or None when it is longer than ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
