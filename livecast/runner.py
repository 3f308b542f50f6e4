"""Running an aiohttp app as a service: uvloop, signals, banner, cleanup.

Shared by ``livecast serve`` and ``livecast counter``.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

log = logging.getLogger("livecast")


def install_uvloop() -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency
        log.warning("uvloop unavailable; using the default event loop")


async def serve_app(app: web.Application, host: str, port: int, banner: str,
                    shutdown_timeout: float = 60.0) -> None:
    """Listen, print ``banner`` once listening, serve until SIGINT/SIGTERM."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout,
                           handle_signals=False)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await web.TCPSite(runner, host, port).start()
        print(banner, flush=True)
        await stop.wait()
        log.info("shutting down")
    finally:
        await runner.cleanup()
