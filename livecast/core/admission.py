"""Admission control: per-IP and global rate limits on connects and logins,
and the lockout of an IP after repeated failed REST authentication
(docs/protocol.md, "Admission control"; docs/rest.md, "Failed authentication").

- ``RateGate``: a global token bucket and one bucket per IP, the per-IP table
  bounded to ``max_ips`` entries (least recently seen evicted first, so a
  flood of distinct addresses costs at most ``max_ips`` buckets).  ``admit``
  answers None (admitted, one token taken from both buckets) or the seconds
  to wait before a retry can succeed (nothing taken).  A rate of 0 disables
  that bucket.
- ``Lockout``: failures per IP counted in a fixed window of ``window``
  seconds; the ``limit``-th failure locks the IP out for ``lock_for``
  seconds, during which every call is refused without being checked.
- ``client_key``: what "per IP" means for both.  An IPv4 client is its
  address; an IPv6 client is its /64 prefix, because one subscriber, host or
  cloud instance is commonly handed a whole /64 (RFC 6177, RFC 7934) and can
  take a fresh address from it for each connection; an IPv4-mapped IPv6
  address (``::ffff:a.b.c.d``, a dual-stack socket) is its IPv4 address.
  The trade-off: clients behind one /64 share one budget, as clients behind
  one IPv4 NAT already do.

Pure: no clock reads; every call takes ``now`` (seconds, monotonic).
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from dataclasses import dataclass

from livecast.core.bucket import TokenBucket

__all__ = ["IPV6_PREFIX", "Lockout", "RateGate", "client_key", "retry_hint"]

IPV6_PREFIX = 64  # bits of an IPv6 address that name one client
_HOST_BITS = 128 - IPV6_PREFIX


def client_key(peer: str, exempt_loopback: bool = False) -> str | None:
    """The key of the peer address ``peer`` in the per-IP tables: an IPv4
    address as it is (normalised), an IPv6 address as its /64 network
    (``"2001:db8:1:2::/64"``, any zone dropped), an IPv4-mapped one as its
    IPv4 address; a string that is no address is its own key.  None (exempt
    from per-IP limits) for a loopback address when ``exempt_loopback``."""
    try:
        addr = ipaddress.ip_address(peer)
    except ValueError:
        return peer
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if exempt_loopback and addr.is_loopback:
        return None
    if isinstance(addr, ipaddress.IPv4Address):
        return str(addr)
    network = ipaddress.IPv6Address(int(addr) >> _HOST_BITS << _HOST_BITS)
    return f"{network}/{IPV6_PREFIX}"


def _wait(bucket: TokenBucket, now: float) -> float:
    """Seconds until ``bucket`` holds one whole token (0 if it does)."""
    missing = 1.0 - bucket.tokens if bucket.available(now) < 1 else 0.0
    return missing / bucket.rate if missing > 0 else 0.0


def retry_hint(seconds: float) -> int:
    """A whole number of seconds to tell a client to wait: at least 1."""
    return max(1, math.ceil(seconds))


class RateGate:
    """Per-IP and global token buckets; the per-IP table is an LRU of at most
    ``max_ips`` addresses."""

    __slots__ = ("_global", "_ips", "burst", "max_ips", "rate")

    def __init__(self, rate: float, burst: int, global_rate: float, global_burst: int,
                 max_ips: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.max_ips = max(1, max_ips)
        self._global = TokenBucket(global_rate, global_burst, now) if global_rate > 0 else None
        self._ips: OrderedDict[str, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ips)

    def _bucket(self, ip: str, now: float) -> TokenBucket:
        bucket = self._ips.get(ip)
        if bucket is None:
            bucket = self._ips[ip] = TokenBucket(self.rate, self.burst, now)
            if len(self._ips) > self.max_ips:
                self._ips.popitem(last=False)
        else:
            self._ips.move_to_end(ip)
        return bucket

    def admit(self, ip: str | None, now: float) -> tuple[str, float] | None:
        """None if admitted; else (scope, seconds to wait), scope "ip" or
        "global".  ``ip`` None: exempt from the per-IP limit."""
        bucket = self._bucket(ip, now) if ip is not None and self.rate > 0 else None
        if bucket is not None and bucket.available(now) < 1:
            return "ip", _wait(bucket, now)
        if self._global is not None and self._global.available(now) < 1:
            return "global", _wait(self._global, now)
        if bucket is not None:
            bucket.try_take(now)
        if self._global is not None:
            self._global.try_take(now)
        return None


@dataclass(slots=True)
class _Record:
    start: float
    failures: int = 0
    locked_until: float = 0.0


class Lockout:
    """Failed authentications per IP: ``limit`` within ``window`` seconds lock
    the IP out for ``lock_for`` seconds.  ``limit`` 0 disables it."""

    __slots__ = ("_ips", "limit", "lock_for", "max_ips", "window")

    def __init__(self, limit: int, window: float, lock_for: float, max_ips: int) -> None:
        self.limit = limit
        self.window = window
        self.lock_for = lock_for
        self.max_ips = max(1, max_ips)
        self._ips: OrderedDict[str, _Record] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ips)

    def locked(self, ip: str, now: float) -> float:
        """Seconds ``ip`` is still locked out for (0: not locked)."""
        rec = self._ips.get(ip)
        if rec is None or rec.locked_until <= now:
            return 0.0
        return rec.locked_until - now

    def failed(self, ip: str, now: float) -> float:
        """Count one failure; the seconds of lockout it started (0: none)."""
        if self.limit <= 0:
            return 0.0
        rec = self._ips.get(ip)
        if rec is None or now - rec.start >= self.window or now < rec.start:
            rec = _Record(start=now)
            self._ips[ip] = rec
            if len(self._ips) > self.max_ips:
                self._ips.popitem(last=False)
        self._ips.move_to_end(ip)
        rec.failures += 1
        if rec.failures >= self.limit:
            rec.failures = 0
            rec.start = now
            rec.locked_until = now + self.lock_for
            return self.lock_for
        return 0.0

    def succeeded(self, ip: str) -> None:
        """A good authentication clears the IP's failures."""
        self._ips.pop(ip, None)
