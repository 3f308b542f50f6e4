"""Fixtures of the admin REST tests: a server whose node runs on a manual clock.

``clocked`` is the same app as ``live`` (tests/conftest.py) but its Node reads
a ``ManualClock``: time-window rules (Random de-dup, broadcast rate, mute and
ban expiry) are tested by moving the clock, never by sleeping. The clock
starts at the real time so that UserSigs minted now verify.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from livecast.node.node import Node
from tests.conftest import SDKAPPID, Live, base_settings, sig, start_live


async def rest(live: Live, service: str, command: str, body: Any,
               identifier: str = "administrator", usersig: str | None = None,
               sdkappid: int | str | None = SDKAPPID,
               http: aiohttp.ClientSession | None = None) -> dict[str, Any]:
    """POST one REST call over real HTTP; assert HTTP 200 and return the JSON answer.

    ``body`` bytes (or a BytesIO) are sent as they are, anything else as JSON; ``sdkappid``
    None leaves the parameter out.
    """
    params = {"identifier": identifier, "random": "1", "contenttype": "json",
              "usersig": usersig if usersig is not None else sig(identifier)}
    if sdkappid is not None:
        params["sdkappid"] = str(sdkappid)
    data = body if isinstance(body, bytes | io.BytesIO) else json.dumps(body).encode()
    url = live.url(f"/v4/{service}/{command}")
    if http is None:
        async with aiohttp.ClientSession() as own:
            return await _post(own, url, params, data)
    return await _post(http, url, params, data)


async def _post(http: aiohttp.ClientSession, url: str, params: dict[str, str],
                data: Any) -> dict[str, Any]:
    async with http.post(url, params=params, data=data) as resp:
        assert resp.status == 200, resp.status
        answer: dict[str, Any] = await resp.json(content_type=None)
        return answer


class ManualClock:
    def __init__(self) -> None:
        self.now = float(int(time.time()))  # whole seconds: wire times are exact

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def clocked(clock: ManualClock) -> AsyncIterator[Live]:
    settings = base_settings()
    node = Node(settings, clock=clock)
    live = await start_live(settings, node)
    yield live
    for c in live.clients:
        await c.close()
    await live.server.close()


async def until(condition: Callable[[], bool], passes: int = 1_000_000) -> None:
    """Yield to the event loop until ``condition()`` holds (no clock involved)."""
    for _ in range(passes):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


def ok(answer: dict[str, Any]) -> dict[str, Any]:
    """Assert a successful envelope and return it."""
    assert answer["ErrorCode"] == 0, answer
    assert answer["ActionStatus"] == "OK" and answer["ErrorInfo"] == "", answer
    return answer


def fails(answer: dict[str, Any], code: int) -> dict[str, Any]:
    """Assert a failed envelope with ``code`` and return it."""
    assert answer["ErrorCode"] == code, answer
    assert answer["ActionStatus"] == "FAIL" and answer["ErrorInfo"], answer
    return answer
