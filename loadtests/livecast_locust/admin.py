"""The REST side: room setup at test start, and the Admin user (docs/rest.md).

Both call ``POST /v4/<service>/<command>`` as the app admin (``--admin-id``)
with a UserSig minted locally. Every call is a locust request event of type
``REST`` named by its command; a non-zero ``ErrorCode`` is a failure, except
the "already exists" codes of create_group (10021, 10025), which setup
expects when the rooms were made by an earlier run or another worker.

The Admin's calls are the moderation of a live room: a system notification
(carrying ``{"ts": ms}`` so members measure its delivery), a mute of a
logged-in Viewer (Viewers never send, so the mute never turns a Chatter's
sends into failures), and a change of the room's Notification.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

import gevent.pool
import orjson
import requests
from locust import User, task
from locust.env import Environment

from livecast_locust import state
from livecast_locust.options import Config

log = logging.getLogger("livecast.loadtest")

ALREADY_EXISTS = frozenset({10021, 10025})
SETUP_CONCURRENCY = 16


class RestError(Exception):
    """A non-zero ``ErrorCode``; its text groups failures in locust's report."""


def call(http: requests.Session, cfg: Config, sig: str, command: str, body: dict[str, Any],
         service: str = "group_open_http_svc") -> tuple[dict[str, Any], float]:
    """One REST call; returns the answer and its time in ms. Raises on network errors."""
    params = {"sdkappid": str(cfg.sdkappid), "identifier": cfg.admin, "usersig": sig,
              "random": str(random.getrandbits(32)), "contenttype": "json"}
    started = time.perf_counter()
    resp = http.post(f"{cfg.http_url}/v4/{service}/{command}", params=params,
                     data=orjson.dumps(body), timeout=cfg.reply_timeout)
    ms = (time.perf_counter() - started) * 1000
    resp.raise_for_status()
    answer: dict[str, Any] = resp.json()
    return answer, ms


def fire(env: Environment, command: str, ms: float, exc: Exception | None) -> None:
    env.events.request.fire(request_type="REST", name=command, response_time=ms,
                            response_length=0, exception=exc, context={})


def checked(env: Environment, http: requests.Session, cfg: Config, sig: str, command: str,
            body: dict[str, Any], ok: frozenset[int] = frozenset({0}),
            service: str = "group_open_http_svc") -> dict[str, Any] | None:
    """``call`` reported as a REST event; the answer when its code is in ``ok``."""
    try:
        answer, ms = call(http, cfg, sig, command, body, service)
    except (requests.RequestException, ValueError) as exc:
        fire(env, command, 0.0, exc)
        return None
    code = answer.get("ErrorCode")
    if code in ok:
        fire(env, command, ms, None)
        return answer
    fire(env, command, ms, RestError(f"{code}: {answer.get('ErrorInfo', '')}"))
    return None


def _setup_room(env: Environment, http: requests.Session, cfg: Config, sig: str,
                room: str) -> bool:
    body = {"Type": "AVChatRoom", "GroupId": room, "Name": room[:30], "Owner_Account": cfg.admin}
    if checked(env, http, cfg, sig, "create_group", body, ok=ALREADY_EXISTS | {0}) is None:
        return False
    rate: dict[str, Any] | None = {"GroupId": room, "Rate": cfg.room_rate}
    if cfg.room_rate < 0:
        rate = _back_to_default(env, http, cfg, sig, room)
    elif cfg.room_burst:
        rate = {"GroupId": room, "Rate": cfg.room_rate, "Burst": cfg.room_burst}
    if rate is None:
        return True
    return checked(env, http, cfg, sig, "set_room_rate", rate, service="livecast_ext") is not None


def _back_to_default(env: Environment, http: requests.Session, cfg: Config, sig: str,
                     room: str) -> dict[str, Any] | None:
    """The set_room_rate body that puts a room a former run tuned back on the
    server's defaults; None when it already uses them (or get_room_rate failed)."""
    answer = checked(env, http, cfg, sig, "get_room_rate", {"GroupId": room},
                     service="livecast_ext")
    if answer is None or not answer.get("Custom"):
        return None
    return {"GroupId": room, "Rate": answer["DefaultRate"], "Burst": answer["DefaultBurst"]}


def setup_rooms(env: Environment, cfg: Config) -> bool:
    """Create every room (and set its rate when asked); True when all went well."""
    sig = cfg.sig(cfg.admin)
    with requests.Session() as http:
        pool = gevent.pool.Pool(SETUP_CONCURRENCY)
        results = pool.map(lambda room: _setup_room(env, http, cfg, sig, room), cfg.rooms)
    failed = results.count(False)
    if failed:
        log.error("livecast: %d of %d rooms could not be set up (see the REST failures)",
                  failed, len(cfg.rooms))
    else:
        log.info("livecast: %d room(s) ready: %s%s", len(cfg.rooms), cfg.rooms[0],
                 f" .. {cfg.rooms[-1]}" if len(cfg.rooms) > 1 else "")
    return not failed


class Admin(User):
    """Moderation over REST at a low rate: notifications, mutes, profile changes."""

    fixed_count = 1  # set from --admin-users at init
    weight = 0

    def wait_time(self) -> float:
        return random.expovariate(1.0 / self.cfg.admin_every)

    def on_start(self) -> None:
        self.cfg = state.config()
        self.sig = self.cfg.sig(self.cfg.admin)
        self.http = requests.Session()
        self.notices = 0

    def on_stop(self) -> None:
        self.http.close()

    def _do(self, command: str, body: dict[str, Any]) -> None:
        checked(self.environment, self.http, self.cfg, self.sig, command, body)

    @task(3)
    def notify(self) -> None:
        content = orjson.dumps({"ts": time.time() * 1000, "text": "the stream goes on"}).decode()
        self._do("send_group_system_notification",
                 {"GroupId": random.choice(self.cfg.rooms), "Content": content})

    @task(2)
    def mute(self) -> None:
        viewers = sorted(state.VIEWERS_LOGGED_IN)
        victim = random.choice(viewers) if viewers else f"lc-troll-{random.randint(1, 999)}"
        self._do("forbid_send_msg", {"GroupId": random.choice(self.cfg.rooms),
                                     "Members_Account": [victim], "MuteTime": 60})

    @task(1)
    def notice(self) -> None:
        self.notices += 1
        self._do("modify_group_base_info",
                 {"GroupId": random.choice(self.cfg.rooms),
                  "Notification": f"Welcome! (notice {self.notices})"})
