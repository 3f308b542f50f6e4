"""The ops endpoints' gate (README, "Protecting the ops endpoints"; the rules
are ``livecast.core.ops``): ``/dashboard``, ``/dashboard/stats`` and
``/metrics`` are wrapped in ``guarded``, which answers 401 or 403 before the
handler runs when the request may not read them.

- ``GATE``: each app's gate, set once when its routes are added: the main
  app's is open without a token only when its configured listen host is
  loopback; the separate ops app's (``LIVECAST_OPS_LISTEN``) is open without
  a token, since the operator chose its address.
- The browser dashboard logs in with a form that POSTs the token (never in
  a URL, so never in an access log) to ``/dashboard/login``, which sets the
  session cookie (HttpOnly, SameSite=Strict, Path=/dashboard) and sends the
  browser back to ``/dashboard``.  An unauthenticated ``GET /dashboard``
  gets the login form, with status 401.
- A wrong token (a Bearer header or the login form) counts as a failed
  authentication of the client's IP, by the REST lockout's rule and settings
  (``LIVECAST_AUTH_FAIL_LIMIT`` within ``LIVECAST_AUTH_FAIL_WINDOW``, loopback
  exempt unless ``LIVECAST_ADMISSION_LOOPBACK``) in a table of the gate's own,
  so that REST failures do not lock an operator out of the dashboard: a
  locked-out IP gets 429 with ``Retry-After`` on every ops endpoint for
  ``LIVECAST_AUTH_LOCKOUT`` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from livecast.core.admission import Lockout, retry_hint
from livecast.core.ops import (
    SESSION_COOKIE,
    SESSION_LIFETIME,
    bearer_token,
    ops_refusal,
    session_value,
    token_matches,
)
from livecast.gateway.admission import limited_ip
from livecast.gateway.keys import NODE
from livecast.runner import UNREADABLE_BODY
from livecast.settings import Settings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LOGIN_PATH = "/dashboard/login"
DASHBOARD = "/dashboard"
LOGIN_PAGE = Path(__file__).resolve().parent / "static" / "dashboard-login.html"
FAILED_MARK = ('<p class="login-error" data-testid="login-error" hidden>',
               '<p class="login-error" data-testid="login-error">')


@dataclass(frozen=True, slots=True)
class Gate:
    """The ops token ("" for none), whether the endpoints are open without it,
    and the IPs locked out for wrong tokens (a table of the gate's own)."""

    token: str
    open_without_token: bool
    lockout: Lockout

    @classmethod
    def of(cls, settings: Settings, open_without_token: bool) -> Gate:
        s = settings
        return cls(s.ops_token.value, open_without_token,
                   Lockout(s.auth_fail_limit, s.auth_fail_window, s.auth_lockout,
                           s.admission_ips))

    def refusal(self, request: web.Request, now: float) -> tuple[int, str] | None:
        return ops_refusal(self.token, self.open_without_token,
                           request.headers.get("Authorization"),
                           request.cookies.get(SESSION_COOKIE), now)


GATE: web.AppKey[Gate] = web.AppKey("ops_gate", Gate)


def guarded(handler: Handler) -> Handler:
    """``handler`` behind the app's gate; a wrong Bearer token counts as a
    failed authentication of the client's IP."""
    async def wrapped(request: web.Request) -> web.StreamResponse:
        locked = locked_out(request)
        if locked:
            return too_many(locked)
        refusal = request.app[GATE].refusal(request, time.time())
        if refusal is None:
            return await handler(request)
        status, reason = refusal
        if status == 401 and bearer_token(request.headers.get("Authorization")) is not None:
            started = failed(request)
            if started:
                return too_many(started)
        if status == 401 and request.path == DASHBOARD and request.method == "GET":
            return login_page(failed=False)
        return refused(status, reason)
    return wrapped


def locked_out(request: web.Request) -> float:
    """Seconds the client's IP is still locked out for (0: not locked)."""
    ip = limited_ip(request.app[NODE], request.remote or "")
    return 0.0 if ip is None else request.app[GATE].lockout.locked(ip, time.monotonic())


def failed(request: web.Request) -> float:
    """Count a wrong token against the client's IP; the lockout it started (s)."""
    ip = limited_ip(request.app[NODE], request.remote or "")
    return 0.0 if ip is None else request.app[GATE].lockout.failed(ip, time.monotonic())


def too_many(seconds: float) -> web.Response:
    wait = retry_hint(seconds)
    return web.json_response({"error": f"too many failed attempts, retry after {wait} s"},
                             status=429, headers={"Retry-After": str(wait),
                                                  "Cache-Control": "no-store"})


def refused(status: int, reason: str) -> web.Response:
    headers = {"Cache-Control": "no-store"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="livecast ops"'
    return web.json_response({"error": reason}, status=status, headers=headers)


def login_page(failed: bool) -> web.Response:
    """The login form (401: the dashboard needs the token); ``failed`` shows
    that the last token was wrong."""
    html = LOGIN_PAGE.read_text()
    if failed:
        html = html.replace(*FAILED_MARK)
    return web.Response(text=html, content_type="text/html", status=401, headers={
        "Cache-Control": "no-store", "WWW-Authenticate": 'Bearer realm="livecast ops"'})


async def login(request: web.Request) -> web.StreamResponse:
    """``POST /dashboard/login`` (form field ``token``): 303 to the dashboard
    with the session cookie, or the form again (401) for a wrong token."""
    locked = locked_out(request)
    if locked:
        return too_many(locked)
    token = request.app[GATE].token
    try:
        presented = (await request.post()).get("token")
    except UNREADABLE_BODY:  # a form that cannot be read (its charset, encoding, parts)
        presented = None
    if not isinstance(presented, str) or not token_matches(token, presented.strip()):
        started = failed(request)
        return too_many(started) if started else login_page(failed=True)
    resp = web.Response(status=303, headers={"Location": DASHBOARD,
                                             "Cache-Control": "no-store"})
    resp.set_cookie(SESSION_COOKIE, session_value(token, time.time()), path=DASHBOARD,
                    max_age=SESSION_LIFETIME, httponly=True, samesite="Strict",
                    secure=request.secure)
    return resp


def add_dashboard_routes(app: web.Application, gate: Gate, dashboard: Handler,
                         stats: Handler) -> None:
    """The dashboard's page and JSON behind ``gate`` (and its login when a
    token is set) on ``app``."""
    app[GATE] = gate
    app.router.add_get(DASHBOARD, guarded(dashboard))
    app.router.add_get("/dashboard/stats", guarded(stats))
    if gate.token:
        app.router.add_post(LOGIN_PATH, login)
