"""Configuration of ``livecast counter``: frozen, built once from env and flags.

The variables are listed in docs/counter.md.  The app id, secret key and
callback token use the server's names (README, "Configuration") so that one
environment configures both.  Parsers are those of ``livecast.settings``;
nothing else in the counter reads ``os.environ``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from livecast.core.group_fields import APP_DEFINED_KEY_LIMIT, COUNTER_KEY_LIMIT
from livecast.core.likes import LikeRule
from livecast.core.scheduler import PRIORITY_NAMES
from livecast.settings import (
    ConfigError,
    Secret,
    _bool,
    _callback_url,
    _float,
    _int,
    _level,
    default_dev_key_file,
    load_dev_key,
    with_flags,
)
from livecast.settings import (
    _redis_url as _any_redis_url,
)

TARGETS = ("app_defined_data", "group_counter")
LIKES_KEY = "likes"  # the one name of a room's like total, whatever the target
DEFAULT_KEYS = {"app_defined_data": LIKES_KEY, "group_counter": LIKES_KEY}
NO_SECRET = Secret("")
_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


@dataclass(frozen=True, slots=True)
class CounterSettings:
    host: str = "127.0.0.1"
    port: int = 8090
    api: str = "http://127.0.0.1:8080"   # REST base URL: livecast or Tencent Cloud Chat
    sdkappid: int = 1400000000
    secret_key: Secret = NO_SECRET
    dev_key: bool = False
    admin: str = "administrator"
    callback_token: Secret = NO_SECRET # empty: Sign is not checked
    sign_window: float = 300.0            # max |now - RequestTime| in s; 0 = not checked
    target: str = "app_defined_data"
    key: str = LIKES_KEY
    min_s: float = 3.0
    max_s: float = 5.0
    timeout: float = 3.0                  # per REST call
    concurrency: int = 16                 # REST calls in flight at once
    idle_s: float = 600.0                 # forget a written room after this long without likes
    like_type_field: str = "type"
    like_type: str = "like"
    like_count_field: str = "count"
    like_max_count: int = 1000
    like_priorities: frozenset[str] = frozenset({"Low", "Lowest"})
    like_require_priority: bool = False
    log_level: str = "info"
    redis_url: str = field(default="", repr=False)  # durable tallies; may carry credentials

    @property
    def rule(self) -> LikeRule:
        return LikeRule(self.like_type_field, self.like_type, self.like_count_field,
                        self.like_max_count, self.like_priorities, self.like_require_priority)


def _target(v: str) -> str:
    low = v.strip().lower()
    if low not in TARGETS:
        raise ValueError(f"one of {', '.join(TARGETS)}")
    return low


def _api(v: str) -> str:
    if not v:
        raise ValueError("a base URL is required")
    url: str = _callback_url(v.strip())  # http(s), a host, a port of 1 to 65535
    return url.rstrip("/")


def _name(v: str) -> str:
    name = v.strip()
    if not name:
        raise ValueError("must not be empty")
    return name


def _priorities(v: str) -> frozenset[str]:
    names = frozenset(p.strip() for p in v.split(",") if p.strip())
    unknown = names - set(PRIORITY_NAMES)
    if unknown:
        raise ValueError(f"priorities are {', '.join(PRIORITY_NAMES)} (case-sensitive)")
    return names


def _redis_url(v: str) -> str:
    url = v.strip()
    if not url:
        return ""
    scheme, _, rest = url.partition("://")
    if "+cluster" in scheme or "," in rest.partition("/")[0]:
        raise ValueError("the counter needs one Redis server (redis://, rediss:// or unix://)")
    checked: str = _any_redis_url(url)  # a host, a port of 1 to 65535, a numeric database
    return checked


ENV: tuple[tuple[str, str, Any], ...] = (
    ("LIVECAST_COUNTER_HOST", "host", str),
    ("LIVECAST_COUNTER_PORT", "port", _int(0, 65535)),
    ("LIVECAST_COUNTER_API", "api", _api),
    ("LIVECAST_SDKAPPID", "sdkappid", _int(1, 2**32 - 1)),
    ("LIVECAST_SECRET_KEY", "secret_key", Secret),
    ("LIVECAST_COUNTER_ADMIN", "admin", _name),
    ("LIVECAST_CALLBACK_TOKEN", "callback_token", Secret),
    ("LIVECAST_COUNTER_SIGN_WINDOW", "sign_window", _float(0, 86400)),
    ("LIVECAST_COUNTER_TARGET", "target", _target),
    ("LIVECAST_COUNTER_KEY", "key", _name),
    ("LIVECAST_COUNTER_MIN_S", "min_s", _float(0, 3600)),
    ("LIVECAST_COUNTER_MAX_S", "max_s", _float(0, 3600)),
    ("LIVECAST_COUNTER_TIMEOUT", "timeout", _float(0.05, 60)),
    ("LIVECAST_COUNTER_CONCURRENCY", "concurrency", _int(1, 1000)),
    ("LIVECAST_COUNTER_IDLE_S", "idle_s", _float(1, 10**7)),
    ("LIVECAST_LIKE_TYPE_FIELD", "like_type_field", _name),
    ("LIVECAST_LIKE_TYPE", "like_type", _name),
    ("LIVECAST_LIKE_COUNT_FIELD", "like_count_field", _name),
    ("LIVECAST_LIKE_MAX_COUNT", "like_max_count", _int(1, 2**31 - 1)),
    ("LIVECAST_LIKE_PRIORITIES", "like_priorities", _priorities),
    ("LIVECAST_LIKE_REQUIRE_PRIORITY", "like_require_priority", _bool),
    ("LIVECAST_LOG_LEVEL", "log_level", _level),
    ("LIVECAST_REDIS_URL", "redis_url", _redis_url),
    ("LIVECAST_COUNTER_REDIS_URL", "redis_url", _redis_url),  # wins over LIVECAST_REDIS_URL
)

FIELD_OF = {name: fld for name, fld, _ in ENV}


def _check_key(target: str, key: str) -> None:
    size = len(key.encode("utf-8", "replace"))
    if target == "app_defined_data":
        if size > APP_DEFINED_KEY_LIMIT or not set(key) <= _KEY_CHARS:
            raise ConfigError(f"LIVECAST_COUNTER_KEY: an AppDefinedData key is 1 to "
                              f"{APP_DEFINED_KEY_LIMIT} characters of A-Z a-z 0-9 _")
    elif size > COUNTER_KEY_LIMIT:
        raise ConfigError(f"LIVECAST_COUNTER_KEY: a counter key is at most "
                          f"{COUNTER_KEY_LIMIT} bytes")


def _parse(raw: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, fld, parser in ENV:
        if name in raw:
            try:
                out[fld] = parser(raw[name])
            except ValueError as exc:
                raise ConfigError(f"{name}: {exc}") from None
    return out


def build(env: Mapping[str, str], overrides: Mapping[str, Any] | None = None,
          dev_key_file: Path | None = None) -> CounterSettings:
    """The one place the counter's configuration is assembled: env, then flags on top."""
    values = _parse(env)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    unknown = set(values) - {f.name for f in fields(CounterSettings)}
    if unknown:
        raise ConfigError(f"unknown settings: {sorted(unknown)}")
    if not values.get("secret_key", NO_SECRET).value:
        path = dev_key_file or Path(env.get("LIVECAST_DEV_KEY_FILE", "") or default_dev_key_file())
        values["secret_key"] = Secret(load_dev_key(path))
        values["dev_key"] = True
    return _checked(values)


def _checked(values: dict[str, Any]) -> CounterSettings:
    values.setdefault("key", DEFAULT_KEYS[values.get("target", "app_defined_data")])
    s = CounterSettings(**values)
    _check_key(s.target, s.key)
    if s.min_s > s.max_s:
        raise ConfigError("LIVECAST_COUNTER_MIN_S must not exceed LIVECAST_COUNTER_MAX_S")
    return s


# What the in-process counter of ``livecast serve`` reads (docs/counter.md): where
# and when totals are written, and what a like is.  Listening address, REST API,
# key and token are the external service's alone, so a bad one never stops a server.
IN_PROCESS_FIELDS = frozenset({
    "admin", "target", "key", "min_s", "max_s", "idle_s", "like_type_field", "like_type",
    "like_count_field", "like_max_count", "like_priorities", "like_require_priority"})


def in_process(env: Mapping[str, str]) -> CounterSettings:
    """The in-process counter's settings, from the same variables as ``livecast counter``."""
    wanted = {name for name, fld, _ in ENV if fld in IN_PROCESS_FIELDS}
    return _checked(_parse({k: v for k, v in env.items() if k in wanted}))


def add_flags(p: Any) -> None:
    """``--<field>`` flags mirroring every variable (docs/counter.md)."""
    for name, fld, _ in ENV:
        if name == "LIVECAST_REDIS_URL":  # --redis-url is LIVECAST_COUNTER_REDIS_URL's
            continue
        p.add_argument("--" + fld.replace("_", "-"), dest=name, metavar=name, default=None,
                       help=f"overrides ${name}")


def from_args(args: Any, env: Mapping[str, str]) -> CounterSettings:
    """Settings from the environment with the command line's flags on top."""
    return build(with_flags(env, args, FIELD_OF))
