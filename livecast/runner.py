"""Running an aiohttp app as a service: uvloop, the listener, signals, banner,
cleanup.

Shared by ``livecast serve`` (with the gateway's front, which takes WebSocket
upgrades off aiohttp's hands) and ``livecast counter`` (plain aiohttp).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
from collections.abc import Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

log = logging.getLogger("livecast")

# what reading a request's body can raise for the client's own fault: a
# Content-Encoding that does not decode (HttpProcessingError,
# RequestPayloadError), a charset Python does not know (LookupError), text
# not in its charset (ValueError), the client gone before its end
# (ConnectionError); answered as a bad body, never as the server's error
UNREADABLE_BODY: tuple[type[Exception], ...] = (
    HttpProcessingError, RequestPayloadError, LookupError, ValueError, ConnectionError)

# (app, aiohttp's protocol factory) -> the protocol of one new connection
FrontFactory = Callable[[web.Application, Callable[[], asyncio.Protocol]], asyncio.Protocol]
BACKLOG = 4096  # the kernel caps it at net.core.somaxconn
# seconds an HTTP connection served by aiohttp may sit idle between requests
# (a later request's head still arriving counts as idle) before it is closed:
# ``web.run_app``'s default; ``web.AppRunner`` alone would keep it 3630 s
KEEPALIVE_TIMEOUT = 75.0


def install_uvloop() -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency
        log.warning("uvloop unavailable; using the default event loop")


class _ClientErrors(logging.Filter):
    """aiohttp answers a request head it cannot parse with 400, and drains a
    body that does not decode after its handler, logging either at ERROR with
    a traceback; the fault is the client's, so it goes to DEBUG in one line
    (any client could otherwise fill the log and page an operator)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, RequestPayloadError) or (
                isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 400) < 500):
            reason = exc.message if isinstance(exc, HttpProcessingError) else str(exc)
            log.debug("bad HTTP request (%s): %s", record.getMessage(),
                      " ".join(str(reason).split())[:200])
            return False
        return True


CLIENT_ERRORS = _ClientErrors()


class Listener:
    """An aiohttp app on a TCP socket.  With ``front``, each new connection is
    first served by ``front(app, http)``, which may hand it to aiohttp's own
    protocol (``http()``); without, aiohttp serves every connection.  Either
    way aiohttp closes a connection idle for ``keepalive_timeout`` seconds."""

    def __init__(self, app: web.Application, front: FrontFactory | None = None,
                 shutdown_timeout: float = 60.0,
                 keepalive_timeout: float = KEEPALIVE_TIMEOUT) -> None:
        self.app = app
        self.front = front
        server_log = logging.getLogger("aiohttp.server")
        if CLIENT_ERRORS not in server_log.filters:
            server_log.addFilter(CLIENT_ERRORS)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout,
                                    handle_signals=False, keepalive_timeout=keepalive_timeout)
        self.server: asyncio.Server | None = None
        self.host = ""
        self.port = 0

    async def start(self, host: str, port: int, reuse_port: bool = False) -> None:
        await self.runner.setup()
        http = self.runner.server
        assert http is not None
        front = self.front
        factory: Callable[[], asyncio.BaseProtocol] = (
            http if front is None else (lambda: front(self.app, http)))
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(factory, host, port, reuse_address=True,
                                               reuse_port=reuse_port or None, backlog=BACKLOG)
        self.host, self.port = self.server.sockets[0].getsockname()[:2]

    async def close(self) -> None:
        """Stop listening, then the app's graceful shutdown and cleanup."""
        if self.server is not None:
            self.server.close()
        await self.runner.cleanup()


async def serve_app(app: web.Application, host: str, port: int, banner: str,
                    shutdown_timeout: float = 60.0, front: FrontFactory | None = None,
                    reuse_port: bool = False) -> None:
    """Listen, print ``banner`` once listening, serve until SIGINT/SIGTERM."""
    listener = Listener(app, front, shutdown_timeout)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await listener.start(host, port, reuse_port)
        print(banner, flush=True)
        await stop.wait()
        log.info("shutting down")
    finally:
        await listener.close()


def raise_fd_limit() -> int:
    """Raise the soft open-files limit to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft
