"""Who may read the ops endpoints (README, "Protecting the ops endpoints"):
``/dashboard``, ``/dashboard/stats`` and ``/metrics``.

Invariants:
1. ``/healthz`` and ``/readyz`` are never gated: load balancers and
   orchestrators ask them without credentials.
2. With an ops token (``LIVECAST_OPS_TOKEN``) every ops request must carry it,
   as ``Authorization: Bearer <token>`` or as the dashboard's session cookie
   (made by a login with the token); otherwise 401, wherever it listens.
3. Without a token the ops endpoints are open only where the operator chose
   the network: on a server whose configured listen host is loopback (the
   development default), or on the separate ops listener
   (``LIVECAST_OPS_LISTEN``).  Anywhere else they answer 403: closed by
   default off loopback.  "Off loopback" is decided by the configured listen
   host, never by the client's address (behind a proxy on the same host
   every client is 127.0.0.1).
4. Every comparison with the token is constant-time (``hmac.compare_digest``).
   The session cookie holds no secret: an expiry time and an HMAC of it keyed
   with the token, so it is valid on every node sharing the token and dies
   with a new token.

Pure: no clock reads; every call takes ``now`` (wall-clock seconds).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

__all__ = [
    "SESSION_COOKIE",
    "SESSION_LIFETIME",
    "bearer_token",
    "is_loopback_host",
    "ops_refusal",
    "session_valid",
    "session_value",
    "token_matches",
]

SESSION_COOKIE = "livecast_ops"
SESSION_LIFETIME = 12 * 3600          # a dashboard login lasts 12 hours
_SESSION_LABEL = b"livecast-ops-session:"
CLOSED = ("the ops endpoints are closed on a server listening off loopback: set "
          "LIVECAST_OPS_TOKEN (then send Authorization: Bearer <token>) or "
          "LIVECAST_OPS_LISTEN (a separate address for them)")
NEED_TOKEN = "the ops token is required: Authorization: Bearer <token>, or log in at /dashboard"


def is_loopback_host(host: str) -> bool:
    """Whether a listen host is loopback only (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def token_matches(token: str, presented: str) -> bool:
    """``presented`` is the token (constant-time; an empty token never matches)."""
    # a header's bytes that are not UTF-8 reach here as surrogates: kept as bytes
    return bool(token) and hmac.compare_digest(token.encode(),
                                               presented.encode("utf-8", "surrogateescape"))


def bearer_token(authorization: str | None) -> str | None:
    """The credentials of an ``Authorization: Bearer ...`` header, else None."""
    if authorization is None:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _mac(token: str, expires: int) -> str:
    return hmac.new(token.encode(), _SESSION_LABEL + str(expires).encode(),
                    hashlib.sha256).hexdigest()


def session_value(token: str, now: float, lifetime: int = SESSION_LIFETIME) -> str:
    """The session cookie's value for a login at ``now``: ``expires.mac``."""
    expires = int(now) + lifetime
    return f"{expires}.{_mac(token, expires)}"


def session_valid(token: str, value: str | None, now: float) -> bool:
    """``value`` was made by ``session_value`` with this token and has not expired."""
    if not token or not value:
        return False
    expires, _, mac = value.partition(".")
    if not (expires.isascii() and expires.isdigit()) or len(expires) > 12:
        return False
    return int(expires) > now and hmac.compare_digest(
        _mac(token, int(expires)).encode(), mac.encode("utf-8", "surrogateescape"))


def ops_refusal(token: str, open_without_token: bool, authorization: str | None,
                cookie: str | None, now: float) -> tuple[int, str] | None:
    """None when the request may read the ops endpoints; else (status, reason):
    401 without the token when one is set, 403 when none is set and the
    endpoints are not ``open_without_token`` (invariants 2 and 3)."""
    if not token:
        return None if open_without_token else (403, CLOSED)
    presented = bearer_token(authorization)
    if presented is not None and token_matches(token, presented):
        return None
    if session_valid(token, cookie, now):
        return None
    return 401, NEED_TOKEN
