"""Webhook signatures (docs/webhooks.md: Tencent's Sign, and livecast's own).

Tencent's token signature: ``Sign = lowercase hex(SHA-256(token + RequestTime))``,
plain concatenation, not an HMAC, carried in the callback URL's query string
with ``RequestTime`` (unix seconds).  It authenticates the sender but not the
body.

livecast's optional body signature (off by default): header
``X-Livecast-Signature: t=<unix s>,v1=<hex HMAC-SHA256(key, "<t>." + body)>``,
one ``v1`` per configured key so that a receiver can rotate keys (accept any
of two).  A receiver refuses a timestamp outside its freshness window
(replay) and a body whose MAC does not match (tampering).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

SIGNATURE_HEADER = "X-Livecast-Signature"
DEFAULT_WINDOW = 300.0


MAX_TIME_DIGITS = 16  # a unix time in seconds has 10; longer is no time (and slow to int())


def tencent_sign(token: str, request_time: int) -> str:
    return hashlib.sha256(f"{token}{request_time}".encode()).hexdigest()


def tencent_sign_ok(token: str, sign: str, request_time: str, now: float,
                    window: float | None = None) -> bool:
    """Check a callback's ``Sign``/``RequestTime``; ``window`` bounds clock skew (optional)."""
    if not (request_time.isascii() and request_time.isdigit()  # no sign, space, "_", "²"
            and len(request_time) <= MAX_TIME_DIGITS):
        return False
    t = int(request_time)
    if window is not None and abs(now - t) > window:
        return False
    return hmac.compare_digest(tencent_sign(token, t).encode(), sign.lower().encode())


def body_mac(key: str, timestamp: int, body: bytes) -> str:
    msg = str(timestamp).encode() + b"." + body
    return hmac.new(key.encode(), msg, hashlib.sha256).hexdigest()


def body_signature(keys: Sequence[str], timestamp: int, body: bytes) -> str:
    """The ``X-Livecast-Signature`` header value for ``body``."""
    parts = [f"t={timestamp}"] + [f"v1={body_mac(k, timestamp, body)}" for k in keys]
    return ",".join(parts)


def body_signature_ok(keys: Sequence[str], header: str, body: bytes, now: float,
                      window: float = DEFAULT_WINDOW) -> bool:
    """True when ``header`` carries a fresh timestamp and a MAC by any of ``keys``."""
    timestamp: int | None = None
    macs: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if (name == "t" and value.isascii() and value.isdigit()  # "²".isdigit() too
                and len(value) <= MAX_TIME_DIGITS):
            timestamp = int(value)
        elif name == "v1":
            macs.append(value)
    if timestamp is None or abs(now - timestamp) > window:
        return False
    expected = [body_mac(k, timestamp, body) for k in keys]
    return any(hmac.compare_digest(e.encode(), m.encode()) for e in expected for m in macs)
