"""Who may ask ``/dev/usersig`` for a UserSig (development key only).

The development server listens on loopback only (``livecast serve`` refuses
the development key anywhere else), yet a page on any site can make the
browser call it, and a DNS-rebinding page can do so under its own host name.
So a request is refused (403) unless:

1. its ``Host`` names a loopback address (``localhost``, ``127.0.0.0/8``,
   ``[::1]``), with or without a port: a rebinding page's host does not;
2. its ``Origin``, when there is one, is the server's own origin (the same
   ``Host``, http) or one listed by name in ``LIVECAST_ALLOWED_ORIGINS``
   (``*`` never opens this endpoint);
3. the user id is not an app admin's, nor one that looks like it once
   spaces and letter case are set aside (``Administrator``, ``administrator ``).

Pure: the caller passes what the request carries.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable


def _loopback_host(host: str) -> bool:
    name = host.strip()
    if name.startswith("["):
        name = name[1:name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.rsplit(":", 1)[0]
    if name.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def looks_like_admin(user: str, admins: Iterable[str]) -> bool:
    folded = "".join(user.split()).casefold()
    return any(folded == "".join(a.split()).casefold() for a in admins)


def dev_sig_refusal(user: str, admins: Iterable[str], host: str, origin: str | None,
                    allowed_origins: Iterable[str]) -> str | None:
    """Why the request is refused (a 403's reason), or None to mint."""
    if not _loopback_host(host):
        return f"Host {host[:100]!r} is not a loopback address: development UserSigs are " \
               "minted for pages on this machine only"
    if origin is not None and origin != f"http://{host.strip()}" and origin not in set(
            allowed_origins) - {"*"}:
        return f"Origin {origin[:100]!r} may not ask for development UserSigs " \
               "(LIVECAST_ALLOWED_ORIGINS lists the pages that may)"
    if looks_like_admin(user, admins):
        return "no UserSig for app admins (or look-alikes of their ids) here: use " \
               "`livecast usersig` on the server"
    return None
