"""Configuration: frozen, built once at the edge from env and flags.

Nothing else in livecast reads ``os.environ``.  ``Settings`` is passed
explicitly to whatever needs it.  The secret key never appears in a repr or
a log line (``Secret``).
"""

from __future__ import annotations

import errno
import logging
import math
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from livecast.core.cors import parse_origins

log = logging.getLogger("livecast")


class ConfigError(ValueError):
    """A configuration value is malformed; the message names the variable."""


@dataclass(frozen=True, slots=True)
class Secret:
    """A string that does not show itself in reprs or logs."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret(***)"

    def __str__(self) -> str:
        return "***"


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    sdkappid: int = 1400000000
    secret_key: Secret = Secret("")
    dev_key: bool = False                 # the key was generated for development
    admins: tuple[str, ...] = ("administrator",)
    redis_url: str = field(default="", repr=False)      # may carry credentials
    callback_url: str = field(default="", repr=False)   # may carry credentials
    callback_token: Secret = Secret("")
    callback_timeout: float = 2.0
    room_rate: int = 40
    room_burst: int = 40
    tick_ms: int = 100
    allow_guests: bool = True
    log_level: str = "info"
    # beyond the basic set: documented in README's configuration table
    max_wait: tuple[float, float, float, float] = (5.0, 2.0, 1.0, 1.0)
    multi_login: bool = False
    login_timeout: float = 10.0
    handshake_timeout: float = 10.0       # seconds a new connection has to send its request head
    outbox_soft_bytes: int = 256 * 1024   # past this a member stops getting Low/Lowest
    outbox_hard_bytes: int = 2 * 1024 * 1024  # past this a member is shed (4008)
    tip_interval: float = 1.0
    tip_member_cap: int = 20
    req_rate: float = 200.0               # per-connection requests per second
    req_burst: int = 400
    violation_limit: int = 10             # protocol violations before close 4009
    shutdown_grace: float = 5.0
    fanout_chunk: int = 2000              # members written per loop iteration in big rooms
    data_dir: str = ""                    # the SQLite store's directory; "" = ~/.livecast/data
    max_rooms: int = 100_000              # rooms at once; past it create_group answers 10036
    workers: int = 1                      # processes sharing the port (a cluster on Redis)
    worker: int = 0                       # set by ``serve --workers`` for its children
    allowed_origins: tuple[str, ...] = ()  # may load livecast.js (and /dev/usersig); () same origin
    member_attrs: bool = False            # members may write group attributes (compare-and-set)
    # webhooks (docs/webhooks.md)
    callback_fail_closed: bool = False    # before-* callbacks that fail refuse with 80003
    callback_concurrency: int = 64        # callbacks in flight (and pooled connections)
    callback_queue: int = 10000           # after-events waiting; a full queue drops
    callback_hmac_keys: tuple[Secret, ...] = ()  # X-Livecast-Signature keys (0 to 2)
    callback_breaker: int = 5             # consecutive failures that open the breaker; 0 never
    callback_breaker_cooldown: float = 5.0
    # likes counted in-process when no callback URL is set (docs/counter.md)
    like_counter: bool = True
    # slow readers (docs/design.md, "Bounded outbox")
    stall_timeout: float = 15.0           # seconds an outbox may not drain at all; then 4008
    sndbuf_bytes: int = 0                 # SO_SNDBUF of member sockets; 0 = outbox_soft_bytes / 2
    # admission control (docs/protocol.md, "Admission control"; docs/rest.md)
    connect_rate: float = 20.0            # WebSocket connects per second per IP; 0 no limit
    connect_burst: int = 200
    connect_global_rate: float = 2000.0   # connects per second on this node; 0 no limit
    connect_global_burst: int = 20000
    login_rate: float = 20.0              # logins per second per IP; 0 no limit
    login_burst: int = 200
    login_global_rate: float = 2000.0
    login_global_burst: int = 20000
    admission_ips: int = 100_000          # IPs tracked by each per-IP table (least recent evicted)
    admission_loopback: bool = False      # loopback clients are subject to per-IP limits too
    auth_fail_limit: int = 20             # failed REST authentications per IP per window; 0 none
    auth_fail_window: float = 60.0
    auth_lockout: float = 60.0            # seconds an IP is refused (70050) after the limit
    # the ops endpoints (README, "Protecting the ops endpoints"; livecast/core/ops.py)
    ops_token: Secret = Secret("")        # Bearer token for /dashboard, /dashboard/stats, /metrics
    ops_listen: tuple[str, int] | None = None  # a separate listener serving only the ops endpoints
    # recent history and recovery (docs/design.md, "History and recovery")
    history_size: int = 100               # messages kept per room; 0 turns history off
    history_ttl: float = 86400.0          # seconds a message is kept
    history_bytes: int = 256 * 1024       # bytes of messages kept per room
    join_history_max: int = 20            # most messages a join may ask for (``history``)

    @property
    def ops_address(self) -> tuple[str, int] | None:
        """Where this process serves the ops endpoints (``LIVECAST_OPS_LISTEN``):
        worker ``i`` of ``serve --workers`` on the given port plus ``i - 1``,
        so that each worker's metrics and dashboard are scraped apart."""
        if self.ops_listen is None:
            return None
        host, port = self.ops_listen
        return (host, port + self.worker - 1) if self.worker and port else (host, port)

    @property
    def counts_likes(self) -> bool:
        """Whether this server counts likes itself: a business backend takes over."""
        return self.like_counter and not self.callback_url

    @property
    def tick(self) -> float:
        return self.tick_ms / 1000.0

    def is_admin(self, user: str) -> bool:
        return user in self.admins


# (variable, field, parser)
def _bool(v: str) -> bool:
    low = v.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected 1/0, true/false, yes/no or on/off")


def _ranged(convert: Callable[[str], float], lo: float, hi: float) -> Any:
    def parse(v: str) -> float:
        x = convert(v)
        if not math.isfinite(x) or not lo <= x <= hi:  # nan and inf are never a setting
            raise ValueError(f"must be between {lo} and {hi}")
        return x
    return parse


def _int(lo: int, hi: int) -> Any:
    return _ranged(int, lo, hi)


def _float(lo: float, hi: float) -> Any:
    return _ranged(float, lo, hi)


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _seconds(v: str) -> float:
    """A duration: seconds (``86400``, ``1.5``) or a number and one unit,
    ``s``, ``m``, ``h`` or ``d`` (``24h``, ``90m``)."""
    text = v.strip().lower()
    if text[-1:] in _UNITS:
        return float(text[:-1]) * _UNITS[text[-1]]
    return float(text)


def _duration(lo: float, hi: float) -> Any:
    return _ranged(_seconds, lo, hi)


def _admins(v: str) -> tuple[str, ...]:
    names = tuple(a.strip() for a in v.split(",") if a.strip())
    if not names or len(names) > 5:
        raise ValueError("one to five comma-separated identifiers")
    return names


def _max_wait(v: str) -> tuple[float, float, float, float]:
    parts = [float(p) / 1000.0 for p in v.split(",")]
    if len(parts) != 4 or not all(math.isfinite(p) and 0 < p <= 600 for p in parts):
        raise ValueError("four positive millisecond values: High,Normal,Low,Lowest")
    return (parts[0], parts[1], parts[2], parts[3])


def _level(v: str) -> str:
    low = v.strip().lower()
    if low not in ("debug", "info", "warning", "error"):
        raise ValueError("one of debug, info, warning, error")
    return low


def _hmac_keys(v: str) -> tuple[Secret, ...]:
    keys = tuple(Secret(k.strip()) for k in v.split(",") if k.strip())
    if len(keys) > 2:
        raise ValueError("at most two comma-separated keys (the new one first)")
    return keys


def _nonempty(v: str) -> str:
    if not v.strip():
        raise ValueError("must not be empty")
    return v.strip()


def _url(prefixes: tuple[str, ...]) -> Any:
    def parse(v: str) -> str:
        if v and not v.startswith(prefixes):
            raise ValueError(f"must start with {' or '.join(prefixes)}")
        return v
    return parse


REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")


def _host_port(where: str) -> None:
    """``host[:port]`` (``[v6]:port``): a host, and a port of 1 to 65535 if any."""
    parts = urlsplit("//" + where)
    try:
        port = parts.port
    except ValueError:
        port = 0
    if not parts.hostname or port == 0 or where.endswith(":"):
        raise ValueError(f"{where!r} is not host:port (a port from 1 to 65535)")


def _redis_url(v: str) -> str:
    """Empty, or one of the URL forms of livecast/store/redis.py: every host
    named, every port a number from 1 to 65535, a database a number."""
    if not v:
        return v
    scheme, sep, _ = v.partition("://")
    if not sep or scheme not in REDIS_SCHEMES:
        raise ValueError(f"must start with {', '.join(s + '://' for s in REDIS_SCHEMES)}")
    parts = urlsplit(v)
    if scheme == "unix":
        if not parts.path:
            raise ValueError("unix:// needs the socket's path (unix:///path/to/redis.sock)")
        return v
    hosts = parts.netloc.rpartition("@")[2]
    for where in hosts.split(","):
        _host_port(where)
    if not scheme.endswith("+cluster") and parts.path.strip("/") \
            and not (parts.path.strip("/").isascii() and parts.path.strip("/").isdigit()):
        raise ValueError(f"the database must be a number, got {parts.path!r}")
    return v


def _callback_url(v: str) -> str:
    """Empty (no webhooks), or an http:// or https:// URL with a host."""
    if not v:
        return v
    if not v.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    _host_port(urlsplit(v).netloc.rpartition("@")[2])
    return v


OPS_TOKEN_MIN_CHARS = 16


def _ops_token(v: str) -> Secret:
    token = v.strip()
    if token and (len(token) < OPS_TOKEN_MIN_CHARS or not token.isascii()
                  or not token.isprintable() or " " in token):
        raise ValueError(f"at least {OPS_TOKEN_MIN_CHARS} printable ASCII characters without "
                         "spaces (`openssl rand -hex 32` makes a good one), or empty")
    return Secret(token)


def _listen(v: str) -> tuple[str, int] | None:
    """``host:port`` (``[::1]:9100`` for IPv6), or empty for none."""
    if not v.strip():
        return None
    host, sep, port = v.strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isascii() or not port.isdigit() \
            or not 0 < int(port) < 65536:
        raise ValueError("host:port, e.g. 127.0.0.1:9100 or [::1]:9100")
    return host, int(port)


ENV: tuple[tuple[str, str, Any], ...] = (
    ("LIVECAST_HOST", "host", str),
    ("LIVECAST_PORT", "port", _int(1, 65535)),
    ("LIVECAST_SDKAPPID", "sdkappid", _int(1, 2**32 - 1)),
    ("LIVECAST_SECRET_KEY", "secret_key", Secret),
    ("LIVECAST_ADMINS", "admins", _admins),
    ("LIVECAST_REDIS_URL", "redis_url", _redis_url),
    ("LIVECAST_CALLBACK_URL", "callback_url", _callback_url),
    ("LIVECAST_CALLBACK_TOKEN", "callback_token", Secret),
    ("LIVECAST_CALLBACK_TIMEOUT", "callback_timeout", _float(0.05, 60)),
    ("LIVECAST_ROOM_RATE", "room_rate", _int(0, 100000)),
    ("LIVECAST_ROOM_BURST", "room_burst", _int(1, 100000)),
    ("LIVECAST_TICK_MS", "tick_ms", _int(5, 5000)),
    ("LIVECAST_ALLOW_GUESTS", "allow_guests", _bool),
    ("LIVECAST_LOG_LEVEL", "log_level", _level),
    ("LIVECAST_MAX_WAIT_MS", "max_wait", _max_wait),
    ("LIVECAST_MULTI_LOGIN", "multi_login", _bool),
    ("LIVECAST_LOGIN_TIMEOUT", "login_timeout", _float(0.1, 600)),
    ("LIVECAST_HANDSHAKE_TIMEOUT", "handshake_timeout", _float(0.05, 600)),
    ("LIVECAST_OUTBOX_SOFT_KB", "outbox_soft_bytes", lambda v: _int(1, 1 << 20)(v) * 1024),
    ("LIVECAST_OUTBOX_HARD_KB", "outbox_hard_bytes", lambda v: _int(1, 1 << 22)(v) * 1024),
    ("LIVECAST_REQ_RATE", "req_rate", _float(0.1, 100000)),
    ("LIVECAST_REQ_BURST", "req_burst", _int(1, 100000)),
    ("LIVECAST_SHUTDOWN_GRACE", "shutdown_grace", _float(0, 600)),
    ("LIVECAST_FANOUT_CHUNK", "fanout_chunk", _int(1, 10_000_000)),
    ("LIVECAST_DATA_DIR", "data_dir", _nonempty),
    ("LIVECAST_MAX_ROOMS", "max_rooms", _int(1, 100_000_000)),
    ("LIVECAST_WORKERS", "workers", _int(1, 256)),
    ("LIVECAST_WORKER", "worker", _int(0, 256)),
    ("LIVECAST_ALLOWED_ORIGINS", "allowed_origins", parse_origins),
    ("LIVECAST_MEMBER_ATTRS", "member_attrs", _bool),
    ("LIVECAST_CALLBACK_FAIL_CLOSED", "callback_fail_closed", _bool),
    ("LIVECAST_CALLBACK_CONCURRENCY", "callback_concurrency", _int(2, 10000)),
    ("LIVECAST_CALLBACK_QUEUE", "callback_queue", _int(1, 10_000_000)),
    ("LIVECAST_CALLBACK_HMAC_KEYS", "callback_hmac_keys", _hmac_keys),
    ("LIVECAST_CALLBACK_BREAKER", "callback_breaker", _int(0, 1_000_000)),
    ("LIVECAST_CALLBACK_BREAKER_COOLDOWN", "callback_breaker_cooldown", _float(0, 3600)),
    ("LIVECAST_LIKE_COUNTER", "like_counter", _bool),
    ("LIVECAST_STALL_TIMEOUT", "stall_timeout", _float(0.1, 3600)),
    ("LIVECAST_SNDBUF_KB", "sndbuf_bytes", lambda v: _int(0, 1 << 20)(v) * 1024),
    ("LIVECAST_CONNECT_RATE", "connect_rate", _float(0, 1_000_000)),
    ("LIVECAST_CONNECT_BURST", "connect_burst", _int(1, 10_000_000)),
    ("LIVECAST_CONNECT_GLOBAL_RATE", "connect_global_rate", _float(0, 1_000_000)),
    ("LIVECAST_CONNECT_GLOBAL_BURST", "connect_global_burst", _int(1, 10_000_000)),
    ("LIVECAST_LOGIN_RATE", "login_rate", _float(0, 1_000_000)),
    ("LIVECAST_LOGIN_BURST", "login_burst", _int(1, 10_000_000)),
    ("LIVECAST_LOGIN_GLOBAL_RATE", "login_global_rate", _float(0, 1_000_000)),
    ("LIVECAST_LOGIN_GLOBAL_BURST", "login_global_burst", _int(1, 10_000_000)),
    ("LIVECAST_ADMISSION_IPS", "admission_ips", _int(1, 10_000_000)),
    ("LIVECAST_ADMISSION_LOOPBACK", "admission_loopback", _bool),
    ("LIVECAST_AUTH_FAIL_LIMIT", "auth_fail_limit", _int(0, 1_000_000)),
    ("LIVECAST_AUTH_FAIL_WINDOW", "auth_fail_window", _float(1, 86400)),
    ("LIVECAST_AUTH_LOCKOUT", "auth_lockout", _float(1, 86400)),
    ("LIVECAST_OPS_TOKEN", "ops_token", _ops_token),
    ("LIVECAST_OPS_LISTEN", "ops_listen", _listen),
    ("LIVECAST_HISTORY_SIZE", "history_size", _int(0, 100_000)),
    ("LIVECAST_HISTORY_TTL", "history_ttl", _duration(1, 30 * 86400)),
    ("LIVECAST_HISTORY_KB", "history_bytes", lambda v: _int(1, 1 << 20)(v) * 1024),
    ("LIVECAST_JOIN_HISTORY_MAX", "join_history_max", _int(0, 1000)),
)

ENV_NAMES = frozenset(name for name, _, _ in ENV)
FIELD_OF = {name: fld for name, fld, _ in ENV}


def parse_values(raw: Mapping[str, str]) -> dict[str, Any]:
    """Parse ``{ENV_NAME: text}`` into ``{field: value}``; ConfigError names the variable."""
    out: dict[str, Any] = {}
    for name, fld, parser in ENV:
        if name not in raw:
            continue
        try:
            out[fld] = parser(raw[name])
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from None
    return out


def with_flags(env: Mapping[str, str], args: Any, names: Any) -> dict[str, str]:
    """``env`` with every flag given on the command line on top (flags use the
    variable's name as ``dest``)."""
    merged = dict(env)
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            merged[name] = value
    return merged


def default_dev_key_file() -> Path:
    return Path(os.path.expanduser("~")) / ".livecast" / "dev-key"


def default_data_dir() -> Path:
    return Path(os.path.expanduser("~")) / ".livecast" / "data"


def load_dev_key(path: Path) -> str:
    """The development key: made once, kept in ``path`` (mode 0600) so that
    ``livecast usersig`` and ``livecast serve`` agree across restarts.  A path
    that cannot be read or written is a ConfigError naming it."""
    try:
        key = _read_dev_key(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"LIVECAST_DEV_KEY_FILE {path}: cannot be read "
                          f"({_why(exc)})") from None
    if key:
        return key
    try:
        return _make_dev_key(path)
    except OSError as exc:
        raise ConfigError(f"LIVECAST_DEV_KEY_FILE {path}: cannot be written "
                          f"({_why(exc)})") from None


def _why(exc: OSError | UnicodeDecodeError) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "not text"
    if exc.errno == errno.ELOOP:
        return "a symbolic link is refused"
    return exc.strerror or str(exc)


def _read_dev_key(path: Path) -> str:
    """The key kept in ``path``; "" when there is none yet."""
    try:  # never through a link: the key file is ours alone
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return ""
    with os.fdopen(fd) as f:
        mode = os.fstat(f.fileno()).st_mode
        key = f.read().strip()
    if mode & 0o077:
        log.warning("the development key file %s is readable by other users "
                    "(mode %o): chmod 600 it", path, mode & 0o777)
    return key


def _make_dev_key(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key


def build(env: Mapping[str, str], overrides: Mapping[str, Any] | None = None,
          dev_key_file: Path | None = None) -> Settings:
    """The one place configuration is assembled: env, then flags on top."""
    values = parse_values(env)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    known = {f.name for f in fields(Settings)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"unknown settings: {sorted(unknown)}")
    if not values.get("secret_key", Secret("")).value:
        path = dev_key_file or Path(env.get("LIVECAST_DEV_KEY_FILE", "") or default_dev_key_file())
        values["secret_key"] = Secret(load_dev_key(path))
        values["dev_key"] = True
    if not values.get("data_dir"):
        values["data_dir"] = str(default_data_dir())
    settings = Settings(**values)
    if settings.outbox_soft_bytes >= settings.outbox_hard_bytes:
        raise ConfigError("LIVECAST_OUTBOX_SOFT_KB must be below LIVECAST_OUTBOX_HARD_KB")
    if settings.ops_listen is not None:
        host, first = settings.ops_listen
        last = first + max(settings.workers, 1) - 1 if first else first
        if last > 65535:
            raise ConfigError(f"LIVECAST_OPS_LISTEN: with {settings.workers} workers the ops "
                              f"ports {first} to {last} go past 65535")
        if host == settings.host and first <= settings.port <= last:
            raise ConfigError("LIVECAST_OPS_LISTEN must differ from LIVECAST_HOST:LIVECAST_PORT"
                              + (f" (the workers' ops ports are {first} to {last})"
                                 if last != first else ""))
    return settings
