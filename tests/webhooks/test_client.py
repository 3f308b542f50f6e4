"""Webhooks against a real aiohttp app on loopback playing the business
backend: it records every callback (query string, headers, body) and answers
as each test tells it.  Synchronisation is by events, never by sleeping; the
breaker is observed through its state and the metrics, never through time."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from livecast.core import callbacks as cb
from livecast.core.breaker import BreakerState
from livecast.core.callbacks import Action, Verdict
from livecast.core.signing import SIGNATURE_HEADER, body_signature_ok, tencent_sign_ok
from livecast.settings import ConfigError, Secret, Settings, build
from livecast.webhooks import Webhooks
from tests.webhooks.conftest import serve_callbacks

SDKAPPID = 1400000000
T0 = 1669872112.25
TEXT = [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "hello"}}]
LIKE = [{"MsgType": "TIMCustomElem", "MsgContent": {"Data": "like"}}]


@dataclass
class Seen:
    query: list[tuple[str, str]]
    headers: dict[str, str]
    raw: bytes

    @property
    def body(self) -> dict[str, Any]:
        result: dict[str, Any] = orjson.loads(self.raw)
        return result

    @property
    def command(self) -> str:
        return dict(self.query)["CallbackCommand"]


Answer = Callable[[Seen], Awaitable[web.StreamResponse]]


def ok(code: int = 0, **fields: Any) -> Answer:
    async def answer(seen: Seen) -> web.StreamResponse:
        return web.json_response({"ActionStatus": "OK", "ErrorInfo": "", "ErrorCode": code,
                                  **fields})
    return answer


def raw(status: int, text: str) -> Answer:
    async def answer(seen: Seen) -> web.StreamResponse:
        return web.Response(status=status, text=text)
    return answer


@dataclass
class Backend:
    """The fake business backend.  ``answer`` decides every reply; ``hang``
    holds handlers until ``release`` is set (at teardown at the latest)."""

    server: TestServer | None = None
    seen: list[Seen] = field(default_factory=list)
    answer: Answer = field(default_factory=ok)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/im/callback"))

    def hang(self, then: Answer | None = None) -> Answer:
        after = then or ok()

        async def answer(seen: Seen) -> web.StreamResponse:
            await self.release.wait()
            return await after(seen)
        return answer

    async def handle(self, request: web.Request) -> web.StreamResponse:
        seen = Seen(list(request.query.items()), dict(request.headers), await request.read())
        self.seen.append(seen)
        self.arrived.set()
        return await self.answer(seen)

    async def wait_seen(self, n: int) -> None:
        while len(self.seen) < n:
            self.arrived.clear()
            await self.arrived.wait()


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@dataclass
class Rig:
    backend: Backend
    clock: Clock
    registry: CollectorRegistry
    hooks: Webhooks

    def metric(self, name: str, command: str | None = None) -> float:
        labels = {} if command is None else {"command": command}
        value = self.registry.get_sample_value(name, labels)
        assert value is not None, name
        return value

    def sent(self, command: str = cb.BEFORE_SEND) -> float:
        return self.metric("livecast_callbacks_sent_total", command)

    def failed(self, command: str = cb.BEFORE_SEND) -> float:
        return self.metric("livecast_callbacks_failed_total", command)

    def timeouts(self, command: str = cb.BEFORE_SEND) -> float:
        return self.metric("livecast_callbacks_timeout_total", command)

    def dropped(self, command: str = cb.BEFORE_SEND) -> float:
        return self.metric("livecast_callbacks_dropped_total", command)

    def breaker(self) -> float:
        return self.metric("livecast_callback_breaker_state")


RigFactory = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    b = Backend()
    b.server = await serve_callbacks(b.handle)
    yield b
    b.release.set()
    await b.server.close()


@pytest.fixture
async def rig(backend: Backend) -> AsyncIterator[RigFactory]:
    made: list[Webhooks] = []

    async def make(url: str | None = None, **overrides: Any) -> Rig:
        settings = replace(Settings(sdkappid=SDKAPPID, callback_url=url or backend.url),
                           **overrides)
        clock, registry = Clock(), CollectorRegistry()
        hooks = Webhooks(settings, registry, clock)
        await hooks.start()
        made.append(hooks)
        return Rig(backend, clock, registry, hooks)

    yield make
    backend.release.set()
    for hooks in made:
        await hooks.close()


@pytest.fixture
def dead_url() -> Iterator[str]:
    """A loopback port that is bound but not listening: connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{s.getsockname()[1]}/cb"


def send_body(body: list[dict[str, Any]] = TEXT, ccd: str = "",
              priority: str = "Normal") -> dict[str, Any]:
    return cb.before_send("live-1", "alice", "alice", 42, body, ccd, priority, T0)


def join_body() -> dict[str, Any]:
    return cb.before_join("live-1", "alice", T0)


# ------------------------------------------------------------------ configuration
def test_settings_parse_the_webhook_variables() -> None:
    s = build({"LIVECAST_SECRET_KEY": "k", "LIVECAST_CALLBACK_FAIL_CLOSED": "1",
               "LIVECAST_CALLBACK_CONCURRENCY": "8", "LIVECAST_CALLBACK_QUEUE": "100",
               "LIVECAST_CALLBACK_HMAC_KEYS": "new-key, old-key",
               "LIVECAST_CALLBACK_BREAKER": "0", "LIVECAST_CALLBACK_BREAKER_COOLDOWN": "2.5"})
    assert s.callback_fail_closed and (s.callback_concurrency, s.callback_queue) == (8, 100)
    assert [k.value for k in s.callback_hmac_keys] == ["new-key", "old-key"]
    assert (s.callback_breaker, s.callback_breaker_cooldown) == (0, 2.5)
    assert "new-key" not in repr(s)
    d = Settings()
    assert (d.callback_fail_closed, d.callback_concurrency, d.callback_queue) == (False, 64, 10000)
    assert (d.callback_hmac_keys, d.callback_breaker, d.callback_breaker_cooldown) == ((), 5, 5.0)
    with pytest.raises(ConfigError, match="LIVECAST_CALLBACK_HMAC_KEYS"):
        build({"LIVECAST_SECRET_KEY": "k", "LIVECAST_CALLBACK_HMAC_KEYS": "a,b,c"})
    with pytest.raises(ConfigError, match="LIVECAST_CALLBACK_CONCURRENCY"):
        build({"LIVECAST_SECRET_KEY": "k", "LIVECAST_CALLBACK_CONCURRENCY": "0"})
    with pytest.raises(ConfigError, match="LIVECAST_CALLBACK_CONCURRENCY"):  # one slot, one worker
        build({"LIVECAST_SECRET_KEY": "k", "LIVECAST_CALLBACK_CONCURRENCY": "1"})


async def test_disabled_without_a_url_allows_at_once() -> None:
    registry = CollectorRegistry()
    hooks = Webhooks(Settings(), registry)
    await hooks.start()
    assert not hooks.enabled
    assert await hooks.before_send(send_body(), "1.2.3.4", cb.PLATFORM_WEB) == cb.ALLOW
    assert await hooks.before_join(join_body(), "1.2.3.4", cb.PLATFORM_WEB) == cb.ALLOW
    hooks.post(cb.after_join("live-1", ["alice"], T0))
    await hooks.close()
    labels = {"command": cb.AFTER_JOIN}
    assert registry.get_sample_value("livecast_callbacks_dropped_total", labels) == 0
    assert registry.get_sample_value("livecast_callbacks_sent_total", labels) == 0


# ------------------------------------------------------------------ what goes on the wire
async def test_every_callback_query_string_and_body(rig: RigFactory) -> None:
    r = await rig()
    after = [
        cb.after_send("live-1", "alice", "alice", 42, TEXT, "c", "Low", 7, 1669872112345, T0),
        cb.send_exception("live-1", "bob", "bob", 1, TEXT, "", "Low", 10023, T0),
        cb.after_join("live-1", ["alice", "bob"], T0),
        cb.after_exit("live-1", ["bob"], T0, "Kicked", "administrator"),
        cb.after_create("live-1", "administrator", "administrator", "Live", {"K": "v"}, T0),
        cb.after_info_changed("live-1", "administrator", {"Name": "New"}, T0),
        cb.after_destroyed("live-1", "administrator", "Live", T0),
    ]
    for body in after:
        assert body is not None
        r.hooks.post(body, "10.1.2.3", cb.PLATFORM_REST)
    assert await r.hooks.before_send(send_body(), "10.9.8.7", cb.PLATFORM_WEB) == cb.ALLOW
    assert await r.hooks.before_join(join_body(), "10.9.8.7", cb.PLATFORM_WEB) == cb.ALLOW
    await r.hooks.close()  # drains the after-events
    by_command = {s.command: s for s in r.backend.seen}
    assert len(r.backend.seen) == len(by_command) == 9
    for body in [*after, send_body(), join_body()]:
        assert body is not None
        command = body["CallbackCommand"]
        seen = by_command[command]
        before = command in (cb.BEFORE_SEND, cb.BEFORE_JOIN)
        ip, platform = ("10.9.8.7", "Web") if before else ("10.1.2.3", "RESTAPI")
        assert seen.query == [("SdkAppid", str(SDKAPPID)), ("CallbackCommand", command),
                              ("contenttype", "json"), ("ClientIP", ip),
                              ("OptPlatform", platform)]
        assert seen.body == body
        assert seen.headers["Content-Type"] == "application/json"
        assert SIGNATURE_HEADER not in seen.headers
        assert r.sent(command) == 1 and r.failed(command) == 0


async def test_sign_and_request_time_match_tencent_vector(rig: RigFactory) -> None:
    r = await rig(callback_token=Secret("xxxxyyyy"))
    await r.hooks.before_send(send_body(), "", cb.PLATFORM_WEB)
    query = dict(r.backend.seen[0].query)
    assert query["RequestTime"] == "1669872112"
    assert query["Sign"] == "17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061"
    assert list(query)[-2:] == ["Sign", "RequestTime"]
    assert tencent_sign_ok("xxxxyyyy", query["Sign"], query["RequestTime"], now=T0, window=60)


async def test_body_signature_verified_by_the_receiver(rig: RigFactory) -> None:
    r = await rig(callback_hmac_keys=(Secret("new-key"), Secret("old-key")))
    r.hooks.post(cb.after_join("live-1", ["alice"], T0))
    await r.hooks.before_send(send_body(), "", cb.PLATFORM_WEB)
    await r.hooks.close()
    assert len(r.backend.seen) == 2
    for seen in r.backend.seen:
        header = seen.headers[SIGNATURE_HEADER]
        assert header.startswith("t=1669872112,v1=")
        assert body_signature_ok(["old-key"], header, seen.raw, now=T0)
        assert body_signature_ok(["new-key"], header, seen.raw, now=T0)
        assert not body_signature_ok(["other"], header, seen.raw, now=T0)
        assert not body_signature_ok(["new-key"], header, seen.raw + b" ", now=T0)


# ------------------------------------------------------------------ replies
FAIL_OPEN = Verdict(Action.ALLOW, failed=True)


@pytest.mark.parametrize(("answer", "expected"), [
    (ok(0), cb.ALLOW),
    (ok(0, MsgBody=LIKE, CloudCustomData="swapped"),
     Verdict(Action.ALLOW, msg_body=LIKE, cloud_custom_data="swapped")),
    (ok(1), Verdict(Action.REJECT, 10016, "rejected by the app backend")),
    (ok(2), cb.DROP),
    (ok(10100, ErrorInfo="level too low"), Verdict(Action.REJECT, 10100, "level too low")),
    (ok(10200, ErrorInfo="x"), Verdict(Action.REJECT, 10200, "x")),
    (ok(10099), FAIL_OPEN),
    (ok(10201), FAIL_OPEN),
    (ok(0, MsgBody=[]), FAIL_OPEN),
    (raw(200, "not json"), FAIL_OPEN),
    (raw(500, "boom"), FAIL_OPEN),
])
async def test_before_send_replies(rig: RigFactory, backend: Backend, answer: Answer,
                                   expected: Verdict) -> None:
    backend.answer = answer
    r = await rig()
    assert await r.hooks.before_send(send_body(), "1.1.1.1", cb.PLATFORM_WEB) == expected
    assert r.sent() == 1
    assert r.failed() == (1 if expected.failed else 0)
    assert r.timeouts() == 0


@pytest.mark.parametrize(("answer", "expected"), [
    (ok(0), cb.ALLOW),
    (ok(1, ErrorInfo="members only"), Verdict(Action.REJECT, 10016, "members only")),
    (ok(10100), Verdict(Action.REJECT, 10100, "")),
    (ok(10200, ErrorInfo="VIP"), Verdict(Action.REJECT, 10200, "VIP")),
    (ok(2), FAIL_OPEN),
    (ok(10099), FAIL_OPEN),
    (ok(10201), FAIL_OPEN),
    (raw(200, "<html>"), FAIL_OPEN),
    (raw(500, "boom"), FAIL_OPEN),
])
async def test_before_join_replies(rig: RigFactory, backend: Backend, answer: Answer,
                                   expected: Verdict) -> None:
    backend.answer = answer
    r = await rig()
    assert await r.hooks.before_join(join_body(), "1.1.1.1", cb.PLATFORM_WEB) == expected
    assert r.failed(cb.BEFORE_JOIN) == (1 if expected.failed else 0)


@pytest.mark.parametrize("answer", [ok(10201), raw(200, "nope"), raw(503, "down")])
async def test_fail_closed_refuses_with_80003(rig: RigFactory, backend: Backend,
                                              answer: Answer) -> None:
    backend.answer = answer
    r = await rig(callback_fail_closed=True)
    for verdict in (await r.hooks.before_send(send_body(), "", cb.PLATFORM_WEB),
                    await r.hooks.before_join(join_body(), "", cb.PLATFORM_WEB)):
        assert (verdict.action, verdict.code, verdict.failed) == (Action.REJECT, 80003, True)


async def test_a_good_reply_is_not_overridden_by_fail_closed(rig: RigFactory,
                                                             backend: Backend) -> None:
    backend.answer = ok(0)
    r = await rig(callback_fail_closed=True)
    assert await r.hooks.before_send(send_body(), "", cb.PLATFORM_WEB) == cb.ALLOW


# ------------------------------------------------------------------ redirects
@pytest.fixture
async def elsewhere() -> AsyncIterator[tuple[list[str], str]]:
    """Another host: a real aiohttp app that records every request, any method
    and path, and rejects (10100) whatever it is asked."""
    got: list[str] = []

    async def record(request: web.Request) -> web.StreamResponse:
        got.append(f"{request.method} {request.path} {len(await request.read())}")
        return web.json_response({"ActionStatus": "FAIL", "ErrorCode": 10100,
                                  "ErrorInfo": "refused by the redirect target"})
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    yield got, str(server.make_url("/elsewhere"))
    await server.close()


def redirect(status: int, location: str) -> Answer:
    async def answer(seen: Seen) -> web.StreamResponse:
        return web.Response(status=status, headers={"Location": location})
    return answer


@pytest.mark.parametrize("fail_closed", [False, True])
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_not_followed_and_is_a_failed_callback(
        rig: RigFactory, backend: Backend, elsewhere: tuple[list[str], str],
        status: int, fail_closed: bool) -> None:
    """Following it would send the body and its signature to the other host
    (307, 308) or take the verdict from a bodiless GET (301-303)."""
    got, url = elsewhere
    backend.answer = redirect(status, url)
    r = await rig(callback_fail_closed=fail_closed, callback_hmac_keys=(Secret("k" * 32),))
    policy = cb.failure_verdict(fail_closed)
    assert await r.hooks.before_send(send_body(), "", cb.PLATFORM_WEB) == policy
    assert await r.hooks.before_join(join_body(), "", cb.PLATFORM_WEB) == policy
    r.hooks.post(cb.after_join("live-1", ["alice"], T0))
    await r.hooks.close()
    assert got == []  # the other host got nothing
    assert len(backend.seen) == 3
    for command in (cb.BEFORE_SEND, cb.BEFORE_JOIN, cb.AFTER_JOIN):
        assert (r.sent(command), r.failed(command)) == (1, 1)
    assert r.breaker() == BreakerState.CLOSED  # the backend answered: it is alive


# ------------------------------------------------------------------ timeouts and the breaker
@pytest.mark.parametrize("fail_closed", [False, True])
async def test_timeout_follows_the_failure_policy(rig: RigFactory, backend: Backend,
                                                  fail_closed: bool) -> None:
    backend.answer = backend.hang()
    r = await rig(callback_timeout=0.05, callback_fail_closed=fail_closed, callback_breaker=0)
    verdict = await r.hooks.before_send(send_body(), "", cb.PLATFORM_WEB)
    assert verdict == cb.failure_verdict(fail_closed)
    join = await r.hooks.before_join(join_body(), "", cb.PLATFORM_WEB)
    assert join == cb.failure_verdict(fail_closed)
    assert (r.sent(), r.failed(), r.timeouts()) == (1, 1, 1)
    assert r.timeouts(cb.BEFORE_JOIN) == 1
    assert r.breaker() == BreakerState.CLOSED  # threshold 0: never opens


async def test_a_hanging_backend_opens_the_breaker(rig: RigFactory, backend: Backend) -> None:
    backend.answer = backend.hang()
    r = await rig(callback_timeout=0.05, callback_breaker=2)
    for _ in range(5):
        verdict = await r.hooks.before_send(send_body(), "", cb.PLATFORM_WEB)
        assert verdict == FAIL_OPEN
    assert (r.sent(), r.timeouts(), r.dropped()) == (2, 2, 3)
    assert len(backend.seen) <= 2  # (a request may time out before it even arrives)
    assert r.breaker() == BreakerState.OPEN and r.hooks.breaker.state is BreakerState.OPEN


async def test_a_dead_backend_costs_no_call_once_open(rig: RigFactory, dead_url: str) -> None:
    r = await rig(dead_url, callback_breaker=3)
    for _ in range(3):
        assert await r.hooks.before_join(join_body(), "", cb.PLATFORM_WEB) == FAIL_OPEN
    assert r.breaker() == BreakerState.OPEN
    assert (r.sent(cb.BEFORE_JOIN), r.failed(cb.BEFORE_JOIN)) == (3, 3)
    assert r.timeouts(cb.BEFORE_JOIN) == 0  # refused at once, not timed out
    assert await r.hooks.before_send(send_body(), "", cb.PLATFORM_WEB) == FAIL_OPEN
    assert r.sent() == 0 and r.dropped() == 1
    # after-events have a breaker of their own: tried until it opens too
    for i in range(3):
        r.hooks.post(cb.after_join("live-1", [f"u{i}"], T0))
        await r.hooks._queue.join()
    assert r.hooks.after_breaker.state is BreakerState.OPEN
    r.hooks.post(cb.after_join("live-1", ["late"], T0))
    assert r.sent(cb.AFTER_JOIN) == 3 and r.dropped(cb.AFTER_JOIN) == 1


async def test_slow_after_events_leave_the_verdicts_alone(rig: RigFactory,
                                                         backend: Backend) -> None:
    """A backend slow only to answer after-events (Tencent ignores those
    replies): their timeouts open their own breaker, never the one the
    before-send verdicts depend on."""
    r = await rig(callback_timeout=0.05, callback_breaker=2)
    backend.answer = backend.hang()
    for i in range(4):
        r.hooks.post(cb.after_join("live-1", [f"u{i}"], T0))
        await r.hooks._queue.join()
    assert r.hooks.after_breaker.state is BreakerState.OPEN and r.timeouts(cb.AFTER_JOIN) == 2
    backend.answer = ok(1)
    verdict = await r.hooks.before_send(send_body(), "", cb.PLATFORM_WEB)
    assert verdict.code == 10016 and not verdict.failed  # the backend's own verdict
    assert r.breaker() == BreakerState.CLOSED


async def test_breaker_probes_after_the_cooldown_and_closes(rig: RigFactory,
                                                            backend: Backend) -> None:
    backend.answer = raw(502, "bad gateway")
    r = await rig(callback_breaker=2, callback_breaker_cooldown=5.0)
    for _ in range(3):
        await r.hooks.before_send(send_body(), "", cb.PLATFORM_WEB)
    assert (r.sent(), r.dropped(), r.breaker()) == (2, 1, BreakerState.OPEN)
    r.clock.t += 5.0
    # the probe goes in the background: the sender gets the failure policy at once
    assert await r.hooks.before_send(send_body(), "", cb.PLATFORM_WEB) == FAIL_OPEN
    assert r.hooks.probe is not None
    await r.hooks.probe
    assert (r.sent(), r.breaker()) == (3, BreakerState.OPEN)  # the probe failed: open again
    backend.answer = ok(1)
    assert await r.hooks.before_send(send_body(), "", cb.PLATFORM_WEB) == FAIL_OPEN
    assert r.dropped() == 2
    r.clock.t += 5.0
    assert await r.hooks.before_send(send_body(), "", cb.PLATFORM_WEB) == FAIL_OPEN
    await r.hooks.probe
    assert (r.sent(), r.breaker()) == (4, BreakerState.CLOSED)  # the backend is back
    verdict = await r.hooks.before_send(send_body(), "", cb.PLATFORM_WEB)
    assert verdict.code == 10016 and not verdict.failed  # its verdicts count again
    assert len(backend.seen) == 5


async def test_a_probe_never_makes_a_sender_wait(rig: RigFactory, backend: Backend) -> None:
    """A slow backend: the probe hangs until the test lets it go, and the
    sender that triggered it has had its answer all along."""
    backend.answer = raw(502, "bad gateway")
    r = await rig(callback_breaker=1, callback_breaker_cooldown=5.0, callback_timeout=30.0)
    await r.hooks.before_send(send_body(), "", cb.PLATFORM_WEB)
    assert r.breaker() == BreakerState.OPEN
    backend.answer = backend.hang(ok(0))
    backend.arrived.clear()
    r.clock.t += 5.0
    assert await r.hooks.before_send(send_body(), "", cb.PLATFORM_WEB) == FAIL_OPEN
    await backend.arrived.wait()  # the probe reached the backend, which holds it
    assert r.hooks.probe is not None and not r.hooks.probe.done()
    backend.release.set()
    await r.hooks.probe
    assert r.breaker() == BreakerState.CLOSED


async def test_an_alive_backend_with_bad_replies_keeps_the_breaker_closed(
        rig: RigFactory, backend: Backend) -> None:
    backend.answer = raw(200, "not json")
    r = await rig(callback_breaker=1)
    for _ in range(3):
        assert await r.hooks.before_send(send_body(), "", cb.PLATFORM_WEB) == FAIL_OPEN
    assert (r.sent(), r.failed(), r.dropped()) == (3, 3, 0)
    assert r.breaker() == BreakerState.CLOSED


# ------------------------------------------------------------------ after-events
async def test_a_full_queue_drops_and_counts(rig: RigFactory) -> None:
    r = await rig(callback_queue=2)
    for i in range(5):  # no await in between: the workers cannot take any yet
        r.hooks.post(cb.after_join("live-1", [f"u{i}"], T0))
    assert r.dropped(cb.AFTER_JOIN) == 3
    await r.hooks.close()
    members = [s.body["NewMemberList"][0]["Member_Account"] for s in r.backend.seen]
    assert sorted(members) == ["u0", "u1"]
    assert r.sent(cb.AFTER_JOIN) == 2


async def test_after_event_failures_are_counted(rig: RigFactory, backend: Backend) -> None:
    backend.answer = raw(500, "boom")
    r = await rig(callback_breaker=0)
    r.hooks.post(cb.after_exit("live-1", ["alice"], T0))
    r.hooks.post(cb.after_exit("live-1", ["bob"], T0))
    await r.hooks.close()
    assert (r.sent(cb.AFTER_EXIT), r.failed(cb.AFTER_EXIT)) == (2, 2)


async def test_after_event_replies_other_than_http_status_are_ignored(
        rig: RigFactory, backend: Backend) -> None:
    backend.answer = raw(200, "whatever")
    r = await rig()
    r.hooks.post(cb.after_destroyed("live-1", "administrator", "Live", T0))
    await r.hooks.close()
    assert (r.sent(cb.AFTER_DESTROYED), r.failed(cb.AFTER_DESTROYED)) == (1, 0)


async def test_backed_up_after_events_leave_slots_for_before_calls(
        rig: RigFactory, backend: Backend) -> None:
    hang = backend.hang()

    async def answer(seen: Seen) -> web.StreamResponse:
        return await (ok(0) if seen.command == cb.BEFORE_SEND else hang)(seen)

    backend.answer = answer
    r = await rig(callback_concurrency=2, callback_timeout=60.0)
    assert r.hooks.worker_count == 1
    for i in range(3):
        r.hooks.post(cb.after_join("live-1", [f"u{i}"], T0))
    await backend.wait_seen(1)  # the only worker now hangs on the backend
    assert await r.hooks.before_send(send_body(), "", cb.PLATFORM_WEB) == cb.ALLOW
    assert [s.command for s in backend.seen] == [cb.AFTER_JOIN, cb.BEFORE_SEND]
    backend.release.set()
    await r.hooks.close()
    assert r.sent(cb.AFTER_JOIN) == 3 and r.dropped(cb.AFTER_JOIN) == 0


async def test_posts_after_close_are_dropped(rig: RigFactory) -> None:
    r = await rig()
    await r.hooks.close()
    r.hooks.post(cb.after_join("live-1", ["late"], T0))
    assert await r.hooks.before_join(join_body(), "", cb.PLATFORM_WEB) == FAIL_OPEN
    assert r.dropped(cb.AFTER_JOIN) == 1 and r.dropped(cb.BEFORE_JOIN) == 1
    assert r.backend.seen == []
