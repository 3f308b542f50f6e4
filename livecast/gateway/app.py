"""The aiohttp application factory: routes, lifecycle, health and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from livecast.admin.openapi import OPENAPI_PATH
from livecast.admin.openapi import serve as openapi_serve
from livecast.admin.rest import handle as rest_handle
from livecast.admin.rest import wrong_method as rest_wrong_method
from livecast.admin.state import AdminState
from livecast.core.ops import is_loopback_host
from livecast.gateway.keys import ADMIN, LIKES, NODE
from livecast.gateway.ops import Gate, guarded
from livecast.gateway.pages import add_ops_pages, add_pages
from livecast.gateway.ws import WS_PATH, handle_ws, heartbeat, sweep_interval
from livecast.node.connection import Connection
from livecast.node.likes import InProcessLikes
from livecast.node.node import Node
from livecast.runner import Listener
from livecast.settings import Settings
from livecast.store.base import Store

if TYPE_CHECKING:
    from livecast.counter.settings import CounterSettings

log = logging.getLogger("livecast.gateway")

DEMO_ROOM = "demo"
StoreFactory = Callable[[Node], Awaitable[Store]]
OPS_LISTENER: web.AppKey[Listener] = web.AppKey("ops_listener", Listener)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    node = request.app[NODE]
    ready = await node.ready()
    status = 200 if ready else 503
    return web.json_response({"ready": ready, "draining": node.draining,
                              "store": node.store.healthy}, status=status)


async def metrics(request: web.Request) -> web.Response:
    node = request.app[NODE]
    body = generate_latest(node.metrics.registry)
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


def _lifecycle(open_store: StoreFactory | None) -> Callable[[web.Application],
                                                              AsyncIterator[None]]:
    """The node's collaborators, from startup to cleanup: the store is opened
    (``open_store``; the node's own in-memory store without one) and every
    stored room loaded before the first connection is accepted."""
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        node = app[NODE]
        if open_store is not None:
            node.store = await open_store(node)
        started = time.perf_counter()
        try:
            rooms = await node.start()
            if rooms:
                log.info("%d rooms loaded from the store in %.2f s", rooms,
                         time.perf_counter() - started)
            if node.settings.dev_key and DEMO_ROOM not in node.rooms:
                await node.create_group("administrator", {"Name": "Demo live room"}, DEMO_ROOM)
            await node.webhooks.start()
        except BaseException:  # not started: what was opened is closed (the store's lock too)
            await node.close_collaborators()
            raise
        beat = asyncio.create_task(_heartbeats(node))
        yield
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
        await node.close_collaborators()
    return ctx


def _likes_ctx(
        settings: CounterSettings | None) -> Callable[[web.Application], AsyncIterator[None]]:
    """The in-process like counter, from startup to a last write at cleanup."""
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        likes = app[LIKES] = InProcessLikes(app[NODE], settings)
        likes.start()
        yield
        await likes.stop()
    return ctx


def make_ops_app(node: Node) -> web.Application:
    """The ops endpoints alone, for ``LIVECAST_OPS_LISTEN``: the dashboard,
    ``/metrics`` and the health checks; open without a token (the operator
    chose this address), behind the token when one is set."""
    app = web.Application(client_max_size=64 * 1024)
    app[NODE] = node
    gate = Gate.of(node.settings, open_without_token=True)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", guarded(metrics))
    add_ops_pages(app, gate)
    return app


def _ops_listener(where: tuple[str, int]) -> Callable[[web.Application], AsyncIterator[None]]:
    """The separate ops listener, from the node's start to its cleanup: a
    port of this process's own (each worker's: ``Settings.ops_address``)."""
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        listener = app[OPS_LISTENER] = Listener(make_ops_app(app[NODE]), shutdown_timeout=1.0)
        await listener.start(where[0], where[1])
        log.info("ops endpoints on http://%s:%d", where[0], listener.port)
        yield
        await listener.close()
    return ctx


async def _heartbeats(node: Node) -> None:
    """Every ``sweep_interval`` seconds, one sweep over the connections."""
    interval = sweep_interval(node.settings.stall_timeout)
    while True:
        await asyncio.sleep(interval)
        try:
            heartbeat(node, time.monotonic())
        except Exception:  # a bug in one sweep must not end the heartbeat
            log.exception("heartbeat sweep failed")


async def _on_shutdown(app: web.Application) -> None:
    """Graceful shutdown: 1001 to every member, then wait for them to drain."""
    node = app[NODE]
    aborted = node.hub.aborted
    node.going_away()
    left: list[Connection] = []
    try:
        await asyncio.wait_for(node.drained.wait(), node.settings.shutdown_grace)
    except TimeoutError:
        left = list(node.sockets)
        for conn in left:
            conn.transport.abort()
    # each close's own abort timer (the same grace) mostly fires first
    late = node.hub.aborted - aborted + len(left)
    if late:
        log.warning("shutdown: %d connections did not close in time; aborted", late)


def make_app(settings: Settings, node: Node | None = None,
             likes: CounterSettings | None = None,
             open_store: StoreFactory | None = None) -> web.Application:
    """``likes``: the in-process like counter's settings (default: the defaults);
    it runs when ``settings.counts_likes`` (no callback URL, docs/counter.md).
    ``open_store``: the durable store (``livecast serve``: SQLite or Redis);
    without it the node keeps its rooms in memory."""
    app = web.Application(client_max_size=1 << 20)
    app[NODE] = node or Node(settings)
    if likes is not None:  # held before-sends are those of likes (docs/webhooks.md)
        app[NODE].hooks.like_rule = likes.rule
    app[ADMIN] = AdminState()
    app.router.add_route("*", WS_PATH, handle_ws)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    gate = None if settings.ops_listen else Gate.of(settings, is_loopback_host(settings.host))
    if gate is not None:
        app.router.add_get("/metrics", guarded(metrics))
    app.router.add_get(OPENAPI_PATH, openapi_serve)
    app.router.add_post("/v4/{service}/{command}", rest_handle)
    app.router.add_route("*", "/v4/{service}/{command}", rest_wrong_method)
    add_pages(app, gate)
    app.cleanup_ctx.append(_lifecycle(open_store))
    if settings.ops_address:
        app.cleanup_ctx.append(_ops_listener(settings.ops_address))
    if settings.counts_likes:
        app.cleanup_ctx.append(_likes_ctx(likes))
    app.on_shutdown.append(_on_shutdown)
    return app
