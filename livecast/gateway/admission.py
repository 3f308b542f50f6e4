"""Admission control at the node's edges (docs/protocol.md, "Admission
control"; docs/rest.md, "Failed authentication"): the node's connect and
login gates and its REST lockout, made on first use, one set per node.

"Per IP" is per ``core.admission.client_key``: an IPv4 address, or an IPv6
client's /64 prefix.  Loopback peers are exempt from the per-IP limits unless
``LIVECAST_ADMISSION_LOOPBACK`` is on (behind a reverse proxy on the same
host every client is 127.0.0.1); the global limits apply to every peer.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass

from livecast.core.admission import Lockout, RateGate, client_key, retry_hint
from livecast.node.node import Node


@dataclass(slots=True)
class Gates:
    connect: RateGate
    login: RateGate
    auth: Lockout


_GATES: weakref.WeakKeyDictionary[Node, Gates] = weakref.WeakKeyDictionary()


def gates(node: Node) -> Gates:
    found = _GATES.get(node)
    if found is None:
        s, now = node.settings, time.monotonic()
        found = _GATES[node] = Gates(
            RateGate(s.connect_rate, s.connect_burst, s.connect_global_rate,
                     s.connect_global_burst, s.admission_ips, now),
            RateGate(s.login_rate, s.login_burst, s.login_global_rate, s.login_global_burst,
                     s.admission_ips, now),
            Lockout(s.auth_fail_limit, s.auth_fail_window, s.auth_lockout, s.admission_ips))
    return found


def limited_ip(node: Node, ip: str) -> str | None:
    """The key of ``ip`` in the per-IP tables (an IPv6 client's is its /64);
    None when it is exempt."""
    return client_key(ip, exempt_loopback=not node.settings.admission_loopback)


def refused(node: Node, peer: str, what: str) -> int | None:
    """Take a ``what`` ("connect" or "login") token for ``peer``; None if
    admitted, else the whole seconds to wait before a retry (counted in
    ``livecast_admission_refused_total``)."""
    gate = gates(node).connect if what == "connect" else gates(node).login
    outcome = gate.admit(limited_ip(node, peer), time.monotonic())
    if outcome is None:
        return None
    scope, wait = outcome
    node.metrics.admission_refused.labels(what, scope).inc()
    return retry_hint(wait)


def try_later(what: str, wait: int) -> str:
    """The reason of a 4013 close (and the info of a refused login)."""
    return f"too many {what}s: retry after {wait} s"
