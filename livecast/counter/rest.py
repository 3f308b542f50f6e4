"""A small client of the Tencent-format REST API (docs/rest.md, "Calling the API").

``POST {api}/v4/{service}/{command}?sdkappid=&identifier=&usersig=&random=&contenttype=json``
with a JSON body; the answer is the ``ActionStatus``/``ErrorCode``/``ErrorInfo``
envelope.  The same client talks to livecast and to Tencent Cloud Chat.

Invariants:
- Outcomes are values: ``call`` never raises for remote trouble.  A timeout,
  a refused connection, a non-200 status or a body that is not a JSON object
  becomes an envelope with ``ErrorCode`` ``TRANSPORT_ERROR`` (-1).
- One ``aiohttp.ClientSession``, owned by the caller and created with the
  configured timeout and connection limit, so every call is bounded.
- The admin's UserSig is minted locally (4.1) and reused until half its
  validity has passed; it never appears in logs.
- ``Target`` tables: how to read and write a room's like total in
  ``AppDefinedData`` (2.3, 2.4) or in a group counter (2.12).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import orjson

from livecast.core.usersig import mint
from livecast.counter.settings import CounterSettings

Body = dict[str, Any]
TRANSPORT_ERROR = -1
SIG_LIFETIME = 86400
SVC = "group_open_http_svc"
JSON_HEADERS = {"Content-Type": "application/json"}
_DECIMAL = re.compile(r"-?[0-9]{1,19}")


def failure(info: str) -> Body:
    return {"ActionStatus": "FAIL", "ErrorCode": TRANSPORT_ERROR, "ErrorInfo": info}


def code_of(reply: Body) -> int:
    code = reply.get("ErrorCode")
    return code if isinstance(code, int) and not isinstance(code, bool) else TRANSPORT_ERROR


class RestClient:
    """Signed calls to ``settings.api`` through one session (invariants above)."""

    def __init__(self, settings: CounterSettings, session: aiohttp.ClientSession,
                 clock: Callable[[], float], rand: random.Random | None = None) -> None:
        self.settings = settings
        self.session = session
        self.clock = clock
        self._rand = rand or random.Random()
        self._sig = ""
        self._sig_time = 0.0

    def _usersig(self) -> str:
        now = self.clock()
        if not self._sig or now - self._sig_time > SIG_LIFETIME / 2 or now < self._sig_time:
            s = self.settings
            self._sig = mint(s.sdkappid, s.secret_key.value, s.admin, now, SIG_LIFETIME)
            self._sig_time = now
        return self._sig

    def _params(self) -> dict[str, str]:
        return {"sdkappid": str(self.settings.sdkappid), "identifier": self.settings.admin,
                "usersig": self._usersig(), "random": str(self._rand.getrandbits(32)),
                "contenttype": "json"}

    async def call(self, service: str, command: str, body: Body) -> Body:
        """One REST call; the reply envelope, or a ``failure`` envelope."""
        url = f"{self.settings.api}/v4/{service}/{command}"
        try:
            # a redirect is not followed: the admin's UserSig would go to another host
            async with self.session.post(url, params=self._params(), data=orjson.dumps(body),
                                         headers=JSON_HEADERS, allow_redirects=False) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return failure(f"{command}: {type(exc).__name__}")
        if status != 200:
            return failure(f"{command}: HTTP {status}")
        try:
            reply = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return failure(f"{command}: reply is not JSON")
        return reply if isinstance(reply, dict) else failure(f"{command}: reply is not an object")


# ------------------------------------------------------------------ targets
@dataclass(frozen=True, slots=True)
class Read:
    """A room's current value: ``value`` when ``code`` is 0."""

    code: int
    info: str = ""
    value: int = 0


def stored_total(value: object) -> int:
    """A stored total: an int, or a decimal string; anything else counts as 0."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        return int(value.strip())
    return 0


def _find(items: object, key: str) -> int:
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and item.get("Key") == key:
                return stored_total(item.get("Value"))
    return 0


def _app_read(group_id: str, key: str) -> tuple[str, Body]:
    return "get_group_info", {"GroupIdList": [group_id],
                              "ResponseFilter": {"AppDefinedDataFilter_Group": [key]}}


def _app_parse(reply: Body, key: str) -> Read:
    code = code_of(reply)
    if code:
        return Read(code, str(reply.get("ErrorInfo", "")))
    infos = reply.get("GroupInfo")
    if not isinstance(infos, list) or not infos or not isinstance(infos[0], dict):
        return Read(TRANSPORT_ERROR, "get_group_info: no GroupInfo in the reply")
    item = infos[0]
    code = code_of(item)
    if code:
        return Read(code, str(item.get("ErrorInfo", "")))
    return Read(0, "", _find(item.get("AppDefinedData"), key))


def _app_write(group_id: str, key: str, total: int) -> tuple[str, Body]:
    return "modify_group_base_info", {"GroupId": group_id,
                                      "AppDefinedData": [{"Key": key, "Value": str(total)}]}


def _counter_read(group_id: str, key: str) -> tuple[str, Body]:
    return "get_group_counter", {"GroupId": group_id, "GroupCounterKeys": [key]}


def _counter_parse(reply: Body, key: str) -> Read:
    code = code_of(reply)
    if code:
        return Read(code, str(reply.get("ErrorInfo", "")))
    return Read(0, "", _find(reply.get("GroupCounter"), key))


def _counter_write(group_id: str, key: str, total: int) -> tuple[str, Body]:
    return "update_group_counter", {"GroupId": group_id, "Mode": "Set",
                                    "GroupCounter": [{"Key": key, "Value": total}]}


@dataclass(frozen=True, slots=True)
class Target:
    """Where a room's total lives: the read and write calls and the read's parser."""

    read: Callable[[str, str], tuple[str, Body]]
    parse: Callable[[Body, str], Read]
    write: Callable[[str, str, int], tuple[str, Body]]


TARGETS: dict[str, Target] = {
    "app_defined_data": Target(_app_read, _app_parse, _app_write),
    "group_counter": Target(_counter_read, _counter_parse, _counter_write),
}


class Totals(Protocol):
    """Where a counter reads and writes rooms' like totals: ``TotalStore`` over
    REST, or the node itself in-process (``livecast.node.likes.NodeTotals``).
    Both answer with the REST envelope's codes, never raise for remote trouble."""

    async def read(self, group_id: str) -> Read: ...

    async def write(self, group_id: str, total: int) -> Body: ...


class TotalStore:
    """Reads and writes rooms' like totals through a ``RestClient``."""

    def __init__(self, client: RestClient, target: str, key: str) -> None:
        self.client = client
        self.target = TARGETS[target]
        self.key = key

    async def read(self, group_id: str) -> Read:
        command, body = self.target.read(group_id, self.key)
        return self.target.parse(await self.client.call(SVC, command, body), self.key)

    async def write(self, group_id: str, total: int) -> Body:
        command, body = self.target.write(group_id, self.key, total)
        return await self.client.call(SVC, command, body)
