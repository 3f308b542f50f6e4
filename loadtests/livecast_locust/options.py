"""The kit's options: locust custom arguments, each with an environment default.

Registered through ``events.init_command_line_parser`` (so they work on the
command line, in ``locust.conf``, in the web UI, and reach workers from the
master in distributed runs). ``build`` turns the parsed options into one
frozen ``Config``; nothing else reads them.

The app key comes from ``--secret-key`` / ``LIVECAST_SECRET_KEY``; when that is
empty, from the development key file the server writes when it runs without
``LIVECAST_SECRET_KEY`` (``~/.livecast/dev-key``, or ``LIVECAST_DEV_KEY_FILE``).
The file is only read, never created: a key the server does not know is no use.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from livecast.core.usersig import mint

ROLES = ("viewer", "chatter", "liker", "gifter")
DEFAULT_MIX = "viewer=80,chatter=10,liker=7,gifter=3"
SIG_EXPIRE = 2 * 86400


def _first_admin(env: dict[str, str]) -> str:
    names = [a.strip() for a in env.get("LIVECAST_ADMINS", "").split(",") if a.strip()]
    return names[0] if names else "administrator"


# (flag, env var, type, default, help)
OPTIONS: tuple[tuple[str, str, Any, Any, str], ...] = (
    ("--sdkappid", "LIVECAST_SDKAPPID", int, 1400000000, "the server's app id"),
    ("--secret-key", "LIVECAST_SECRET_KEY", str, "",
     "the app key UserSigs are minted with (empty: read --dev-key-file)"),
    ("--dev-key-file", "LIVECAST_DEV_KEY_FILE", str, "",
     "the server's development key file (default ~/.livecast/dev-key)"),
    ("--admin-id", "LIVECAST_LOAD_ADMIN_ID", str, None,
     "app admin identifier for REST calls (default: first of $LIVECAST_ADMINS, "
     "else administrator)"),
    ("--ws-url", "LIVECAST_LOAD_WS_URL", str, "",
     "WebSocket URL (default: --host with ws:// or wss:// and /v1/ws)"),
    ("--rooms", "LIVECAST_LOAD_ROOMS", int, 1, "number of rooms; users are spread evenly"),
    ("--room-prefix", "LIVECAST_LOAD_ROOM_PREFIX", str, "loadtest-",
     "room ids are PREFIX1 .. PREFIXN"),
    ("--room-rate", "LIVECAST_LOAD_ROOM_RATE", int, -1,
     "messages/s per room, set through livecast_ext/set_room_rate (-1: the server's default)"),
    ("--room-burst", "LIVECAST_LOAD_ROOM_BURST", int, 0,
     "token-bucket burst per room with --room-rate (0: the server's max(1, rate))"),
    ("--mix", "LIVECAST_LOAD_MIX", str, DEFAULT_MIX,
     "weights of the WebSocket user classes; a role left out gets 0"),
    ("--admin-users", "LIVECAST_LOAD_ADMIN_USERS", int, 1,
     "number of Admin (REST) users, started first (0: none)"),
    ("--guest-share", "LIVECAST_LOAD_GUEST_SHARE", float, 0.5,
     "share of Viewers that join as guests, without login (0..1)"),
    ("--chat-rate", "LIVECAST_LOAD_CHAT_RATE", float, 0.5,
     "Normal text messages per second per Chatter (Poisson)"),
    ("--like-burst", "LIVECAST_LOAD_LIKE_BURST", int, 5, "Low like messages per Liker burst"),
    ("--like-every", "LIVECAST_LOAD_LIKE_EVERY", float, 4.0,
     "mean seconds between a Liker's bursts"),
    ("--gift-rate", "LIVECAST_LOAD_GIFT_RATE", float, 0.1,
     "High gift messages per second per Gifter (Poisson)"),
    ("--admin-every", "LIVECAST_LOAD_ADMIN_EVERY", float, 5.0,
     "mean seconds between an Admin's REST calls"),
    ("--reply-timeout", "LIVECAST_LOAD_REPLY_TIMEOUT", float, 30.0,
     "seconds without a reply before a request counts as failed"),
)


def add_arguments(parser: Any) -> None:
    """Register the options on locust's parser (``init_command_line_parser``)."""
    for flag, env_var, kind, default, text in OPTIONS:
        if default is None:
            default = _first_admin(dict(os.environ))
        secret = flag == "--secret-key"
        shown = "" if secret or default == "" else f"; default {default}"
        parser.add_argument(flag, env_var=env_var, type=kind, default=default,
                            help=f"{text} [env {env_var}{shown}]", is_secret=secret)


def parse_mix(text: str) -> dict[str, int]:
    """``"viewer=80,chatter=10"`` -> weights of every role (absent roles 0)."""
    weights = dict.fromkeys(ROLES, 0)
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        name = name.strip().lower()
        if not sep or name not in weights:
            raise ValueError(f"--mix: expected role=weight with roles {', '.join(ROLES)}: {part!r}")
        weights[name] = int(value)
        if weights[name] < 0:
            raise ValueError(f"--mix: negative weight for {name}")
    if not any(weights.values()):
        raise ValueError("--mix: every weight is 0")
    return weights


def resolve_key(key: str, key_file: str) -> str:
    """The app key: ``key`` when set, else the server's development key file."""
    if key:
        return key
    path = Path(key_file) if key_file else Path.home() / ".livecast" / "dev-key"
    try:
        text = path.read_text().strip()
    except OSError:
        text = ""
    if not text:
        raise ValueError(f"no app key: set LIVECAST_SECRET_KEY (or --secret-key), or run the "
                         f"server once without it so that it writes {path}")
    return text


def ws_url_of(host: str, override: str) -> str:
    """``http://h:p`` -> ``ws://h:p/v1/ws`` (``https`` -> ``wss``) unless overridden."""
    if override:
        return override
    parts = urlsplit(host)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"--host must be an http:// or https:// URL, not {host!r}")
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, "/v1/ws", "", ""))


@dataclass(frozen=True)
class Config:
    """Everything the users need, built once per process at test start."""

    sdkappid: int
    key: str = field(repr=False)
    admin: str
    http_url: str
    ws_url: str
    rooms: tuple[str, ...]
    room_rate: int
    room_burst: int
    guest_share: float
    chat_rate: float
    like_burst: int
    like_every: float
    gift_rate: float
    admin_every: float
    reply_timeout: float

    def sig(self, user: str) -> str:
        """A UserSig for ``user``, minted locally with the app key."""
        return mint(self.sdkappid, self.key, user, time.time(), SIG_EXPIRE)


def check(o: Any) -> None:
    """ValueError naming the first bad option (the host and key are checked by ``build``)."""
    if o.rooms < 1:
        raise ValueError("--rooms must be at least 1")
    if not 0.0 <= o.guest_share <= 1.0:
        raise ValueError("--guest-share must be between 0 and 1")
    for name in ("chat_rate", "like_every", "gift_rate", "admin_every", "reply_timeout"):
        if getattr(o, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive")
    if o.like_burst < 1 or o.admin_users < 0 or o.room_burst < 0:
        raise ValueError("--like-burst must be >= 1, --admin-users and --room-burst >= 0")
    parse_mix(o.mix)


def build(o: Any, host: str) -> Config:
    """The frozen ``Config`` of parsed options ``o``; ValueError names a bad option."""
    check(o)
    http_url = (host or "").rstrip("/")
    return Config(
        sdkappid=o.sdkappid, key=resolve_key(o.secret_key, o.dev_key_file), admin=o.admin_id,
        http_url=http_url, ws_url=ws_url_of(http_url, o.ws_url),
        rooms=tuple(f"{o.room_prefix}{i}" for i in range(1, o.rooms + 1)),
        room_rate=o.room_rate, room_burst=o.room_burst, guest_share=o.guest_share,
        chat_rate=o.chat_rate, like_burst=o.like_burst, like_every=o.like_every,
        gift_rate=o.gift_rate, admin_every=o.admin_every, reply_timeout=o.reply_timeout,
    )
