"""Cross-origin access to the browser client and the development UserSig
endpoint (docs/protocol.md, "Getting a UserSig"; README, LIVECAST_ALLOWED_ORIGINS).

Invariants:
- Nothing is shared with another origin unless the operator listed it: the
  default (no origins) is same-origin only, as a browser enforces by itself.
- An origin is compared exactly, after normalisation (lower case, no default
  port), as browsers send it: ``scheme://host[:port]``, no path.
- ``*`` shares public files with every origin, never a UserSig endpoint:
  those answer only origins listed by name (``wildcard_ok`` False).
- No credentials are ever allowed (no cookies are used): the answer is the
  origin, or ``*``, or nothing.

Pure: text in, decisions out.
"""

from __future__ import annotations

from urllib.parse import urlsplit

WILDCARD = "*"
DEFAULT_PORTS = {"http": 80, "https": 443}


def normal_origin(text: str) -> str:
    """``scheme://host[:port]`` in lower case without a default port;
    ValueError for anything else (a path, a query, user info, no host)."""
    raw = text.strip()
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise ValueError(f"{raw!r} is not an origin") from None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if (scheme not in DEFAULT_PORTS or not host or parts.username is not None
            or parts.path or parts.query or parts.fragment or raw.endswith("?")):
        raise ValueError(f"{raw!r} is not an origin: scheme://host[:port], http or https")
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def parse_origins(text: str) -> tuple[str, ...]:
    """A comma-separated list of origins or ``*``; empty entries are skipped."""
    out: list[str] = []
    for item in (i.strip() for i in text.split(",")):
        if item:
            origin = WILDCARD if item == WILDCARD else normal_origin(item)
            if origin not in out:
                out.append(origin)
    return tuple(out)


def allow_origin(origin: str | None, allowed: tuple[str, ...], wildcard_ok: bool) -> str | None:
    """The ``Access-Control-Allow-Origin`` value for a request sent from
    ``origin`` (its ``Origin`` header), or None: share nothing."""
    if not origin or not allowed:
        return None
    try:
        if normal_origin(origin) in allowed:
            return origin
    except ValueError:
        return None  # "null" (a sandboxed or file page) and other non-origins
    if wildcard_ok and WILDCARD in allowed:
        return WILDCARD
    return None
