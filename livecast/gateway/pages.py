"""The browser side's HTTP edge (README, "Endpoints beside the
protocol"): the demo live room ``/``, the dashboard ``/dashboard``, their
files under ``/static/``, and two small JSON endpoints the pages read:

- ``GET /pages/config``: what the room page needs to log in (app id, whether
  the server runs on the development key, the demo room's id);
- ``GET /dashboard/stats``: the node's numbers for the dashboard (with
  ``/dashboard`` behind the ops gate, ``livecast.gateway.ops``: open on
  loopback, 403 off loopback, the token when one is set; on the separate
  ops listener only when ``LIVECAST_OPS_LISTEN`` is set);
- ``GET /pages/room?groupId=ID``: a room's public figures (name, online
  count, like total), so that the room page shows them before anyone joins;
  it needs no login, whether guests are allowed or not (the same figures
  every member sees in the room);
- ``POST /dev/usersig`` ``{"userId": ...}`` -> ``{sdkAppId, userId, userSig}``.

Invariants:
- ``/dev/usersig`` exists only when ``settings.dev_key`` is True: with a
  configured secret key the route is never registered (404).  The key itself
  never leaves the server; only UserSigs minted with it do.
- ``/dashboard/stats`` keeps no state and counts nothing itself: every number
  is read with ``registry.collect()`` from the registry ``/metrics`` renders
  (``node.metrics.registry``), plus each room's figures from the node
  (``_online`` and the room's ``group`` and ``sched``: nothing else of the
  node is read).  Rates are left to the page (differences between two polls).
- Every page, static file and page JSON carries the strict
  Content-Security-Policy ``CSP``; the pages hold no inline script or style,
  so they work under it.  The WebSocket upgrade and the other endpoints are
  not touched.
- Cross-origin (``settings.allowed_origins``, ``livecast.core.cors``): files
  under ``/static/`` (livecast.js) and ``/dev/usersig`` answer CORS, and
  their preflight (``OPTIONS``), for the listed origins only; ``*`` opens the
  static files to every origin but never ``/dev/usersig``.  The WebSocket
  upgrade checks no ``Origin``: it carries no cookie, the UserSig sent in
  ``login`` is the only credential.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry

from livecast.backplane.broker import BrokerError
from livecast.core import usersig
from livecast.core.cors import allow_origin
from livecast.core.devsig import dev_sig_refusal
from livecast.core.group import Group
from livecast.core.group_ids import GROUP_ID_MAX_BYTES, is_valid_group_id
from livecast.core.protocol import MAX_USER_ID_BYTES
from livecast.core.scheduler import Priority
from livecast.gateway.keys import NODE
from livecast.gateway.ops import Gate, add_dashboard_routes
from livecast.node.metrics import PRIORITY_LABELS
from livecast.node.node import Node
from livecast.runner import UNREADABLE_BODY

STATIC = Path(__file__).resolve().parent / "static"
DEMO_ROOM = "demo"           # the room app.py creates on the development key
DEV_SIG_EXPIRE = 24 * 3600   # dev UserSigs live a day
ROOMS_SHOWN = 100            # the dashboard lists the busiest rooms only

CSP = ("default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data: https: http:; "
       "style-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'")
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
PAGE_PATHS = frozenset({"/", "/dashboard", "/pages/config", "/pages/room", "/dashboard/stats",
                        "/dev/usersig", "/dashboard/login"})
LIKES_KEY = "likes"          # the like total: AppDefinedData or a group counter (livecast.js)
OWNER_HERE = "this process"  # the owner column until rooms are spread over processes

Samples = dict[str, list[tuple[dict[str, str], float]]]


# ------------------------------------------------------------------ pages
async def room_page(request: web.Request) -> web.FileResponse:
    return _html("room.html")


async def dashboard_page(request: web.Request) -> web.FileResponse:
    return _html("dashboard.html")


def _html(name: str) -> web.FileResponse:
    return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})


async def page_config(request: web.Request) -> web.Response:
    s = request.app[NODE].settings
    return web.json_response({"sdkAppId": s.sdkappid, "devKey": s.dev_key, "room": DEMO_ROOM})


def _online(node: Node, group_id: str) -> int:
    """A room's online count: the one place pages.py asks the node for it."""
    return node.online(group_id)


def like_total(group: Group) -> int:
    """The room's like total as the page computes it (livecast.js ``likeTotal``):
    the larger of AppDefinedData ``likes`` (digits) and the ``likes`` counter."""
    text = group.app_defined.get(LIKES_KEY, "")
    found = int(text) if text.isascii() and text.isdigit() else 0  # "²" is a digit to isdigit
    return max(found, group.counters.get(LIKES_KEY, 0))


def room_summary(node: Node, group_id: str) -> dict[str, Any] | None:
    """A room's public figures, or None when this node has no such room."""
    room = node.rooms.get(group_id)
    if room is None:
        return None
    return {"groupId": group_id, "name": room.group.name, "online": _online(node, group_id),
            "likes": like_total(room.group)}


async def page_room(request: web.Request) -> web.Response:
    """``GET /pages/room?groupId=ID``: 400 for a bad id, 404 for no such room."""
    group_id = request.query.get("groupId", "")
    if not is_valid_group_id(group_id):
        return web.json_response(
            {"error": f"groupId must be 1..{GROUP_ID_MAX_BYTES} printable ASCII characters"},
            status=400)
    found = room_summary(request.app[NODE], group_id)
    if found is None:
        return web.json_response({"error": f"no room {group_id!r}"}, status=404)
    return web.json_response(found, headers={"Cache-Control": "no-store"})


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """The response hook: CSP and friends on pages, static files and page JSON."""
    if request.path in PAGE_PATHS or request.path.startswith("/static/"):
        response.headers.update(PAGE_HEADERS)


# ------------------------------------------------------------------ dev UserSig
def valid_user_id(v: object) -> bool:
    """1..32 printable ASCII characters, as ``login`` requires (docs/protocol.md)."""
    return (isinstance(v, str) and 0 < len(v) <= MAX_USER_ID_BYTES and v.isascii()
            and v.isprintable())


async def dev_usersig(request: web.Request) -> web.Response:
    """A UserSig for anyone who asks: registered on the development key only."""
    node = request.app[NODE]
    try:
        body = orjson.loads(await request.read())
    except UNREADABLE_BODY:  # not JSON, or not readable as sent (its Content-Encoding)
        body = None
    user = body.get("userId") if isinstance(body, dict) else None
    if not valid_user_id(user):
        return web.json_response({"error": "userId must be 1..32 printable ASCII characters"},
                                 status=400)
    assert isinstance(user, str)
    s = node.settings
    refusal = dev_sig_refusal(user, s.admins, request.headers.get("Host", ""),
                              request.headers.get("Origin"), s.allowed_origins)
    if refusal is not None:
        return web.json_response({"error": refusal}, status=403)
    sig = usersig.mint(s.sdkappid, s.secret_key.value, user, node.clock(), DEV_SIG_EXPIRE)
    return web.json_response({"sdkAppId": s.sdkappid, "userId": user, "userSig": sig})


# ------------------------------------------------------------------ CORS
DEV_USERSIG = "/dev/usersig"
PREFLIGHT_MAX_AGE = "600"


def cors_methods(path: str) -> str | None:
    """The methods another origin may use on ``path``; None: not shared."""
    if path.startswith("/static/"):
        return "GET, HEAD, OPTIONS"
    if path == DEV_USERSIG:
        return "POST, OPTIONS"
    return None


def cors_origin(request: web.Request) -> str | None:
    """``Access-Control-Allow-Origin`` for this request, or None."""
    allowed = request.app[NODE].settings.allowed_origins
    return allow_origin(request.headers.get("Origin"), allowed,
                        wildcard_ok=request.path != DEV_USERSIG)


async def _cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """The response hook: CORS on the shared paths, for allowed origins only."""
    if cors_methods(request.path) is None or not request.app[NODE].settings.allowed_origins:
        return
    value = cors_origin(request)
    if value is not None:
        response.headers["Access-Control-Allow-Origin"] = value
    if value != "*":
        response.headers.add("Vary", "Origin")


async def preflight(request: web.Request) -> web.Response:
    """``OPTIONS`` on a shared path: 204 with what may be sent, or 403."""
    methods = cors_methods(request.path)
    if methods is None or cors_origin(request) is None:
        return web.json_response({"error": "origin not allowed: see LIVECAST_ALLOWED_ORIGINS"},
                                 status=403)
    return web.Response(status=204, headers={
        "Access-Control-Allow-Methods": methods,
        "Access-Control-Allow-Headers": "Content-Type",
        "Access-Control-Max-Age": PREFLIGHT_MAX_AGE})


# ------------------------------------------------------------------ stats
def collect(registry: CollectorRegistry) -> Samples:
    """Every sample of the registry by sample name: ``{name: [(labels, value)]}``."""
    out: Samples = {}
    for family in registry.collect():
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def total(samples: Samples, name: str) -> float | None:
    """The sum of a series over all its labels; None when it is not registered."""
    rows = samples.get(name)
    return None if rows is None else sum(v for _, v in rows)


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    """A series summed per value of one label (e.g. dropped per priority, over reasons)."""
    out: dict[str, float] = {}
    for labels, value in samples.get(name, ()):
        key = labels.get(label, "")
        out[key] = out.get(key, 0.0) + value
    return out


def per_priority(samples: Samples, name: str) -> dict[str, float]:
    found = by_label(samples, name, "priority")
    return {p: found.get(p, 0.0) for p in PRIORITY_LABELS}


def histogram(samples: Samples, name: str) -> dict[str, Any]:
    """count, sum and the cumulative buckets (``le`` kept as text: "+Inf")."""
    buckets = [[labels.get("le", ""), value] for labels, value in samples.get(name + "_bucket", ())]
    return {"count": total(samples, name + "_count") or 0.0,
            "sum": total(samples, name + "_sum") or 0.0, "buckets": buckets}


def webhook_stats(samples: Samples) -> dict[str, Any] | None:
    """Webhook health from the callback series (None if they are not registered)."""
    if "livecast_callbacks_sent_total" not in samples:
        return None
    names = ("sent", "failed", "timeout", "dropped")
    out: dict[str, Any] = {n: total(samples, f"livecast_callbacks_{n}_total") for n in names}
    out["breaker"] = total(samples, "livecast_callback_breaker_state")
    out["latency"] = callback_latency(samples)
    return out


def callback_latency(samples: Samples) -> dict[str, dict[str, Any]]:
    """Per callback command, the cumulative duration histogram (``le`` as text);
    the page takes p50/p99 from the difference between two polls."""
    out: dict[str, dict[str, Any]] = {}
    for labels, value in samples.get("livecast_callback_seconds_bucket", ()):
        entry = out.setdefault(labels.get("command", ""), {"count": 0.0, "buckets": []})
        entry["buckets"].append([labels.get("le", ""), value])
    for labels, value in samples.get("livecast_callback_seconds_count", ()):
        if labels.get("command", "") in out:
            out[labels.get("command", "")]["count"] = value
    return out


def admission_stats(samples: Samples) -> dict[str, Any]:
    """Admission control's refusals (totals): connects and logins refused (4013)
    per scope ("ip", "global"), REST authentication failures and calls refused
    while their IP was locked out (70050)."""
    refused: dict[str, dict[str, float]] = {w: {"ip": 0.0, "global": 0.0}
                                            for w in ("connect", "login")}
    for labels, value in samples.get("livecast_admission_refused_total", ()):
        what, scope = labels.get("what", ""), labels.get("scope", "")
        if what in refused:
            refused[what][scope] = refused[what].get(scope, 0.0) + value
    return {"connectRefused": refused["connect"], "loginRefused": refused["login"],
            "authFailures": total(samples, "livecast_rest_auth_failures_total") or 0.0,
            "authLocked": total(samples, "livecast_rest_auth_locked_total") or 0.0}


def _owner(node: Node, group_id: str) -> str:
    """The process owning the room: this one, or (in a cluster) another's node id."""
    cluster = node.cluster
    if cluster is None or cluster.owns(group_id):
        return OWNER_HERE
    return cluster.owners.get(group_id, "unknown")


def room_row(node: Node, group_id: str) -> dict[str, Any]:
    """One room's figures: the counters are totals (the page makes rates of them)."""
    room = node.rooms[group_id]
    sched = room.sched
    return {
        "groupId": group_id, "name": room.group.name, "online": _online(node, group_id),
        "owner": _owner(node, group_id), "likes": like_total(room.group),
        "delivered": sched.delivered_total,
        "deliveredBy": dict(zip(PRIORITY_LABELS, sched.delivered_by_priority, strict=True)),
        "dropped": dict(zip(PRIORITY_LABELS, sched.dropped_by_priority, strict=True)),
        "pending": sched.pending,
        "pendingBy": {p: sched.pending_of(Priority(i)) for i, p in enumerate(PRIORITY_LABELS)},
    }


def room_rows(node: Node, limit: int = ROOMS_SHOWN) -> list[dict[str, Any]]:
    """The rooms with the most members on this node, busiest first."""
    ids: Iterable[str] = node.rooms.keys()
    top = heapq.nlargest(limit, ids, key=lambda gid: (_online(node, gid), gid))
    return [room_row(node, gid) for gid in top]


def node_row(node_id: str, info: dict[str, Any], here: str) -> dict[str, Any]:
    """One cluster process from its heartbeat: its members online (summed over its
    rooms) and the rooms it owns (the first ``ROOMS_SHOWN`` by id, and how many)."""
    online = info.get("online")
    counts = [int(n) for n in online.values()] if isinstance(online, dict) else []
    owns = info.get("owns")
    owned = sorted(str(g) for g in owns) if isinstance(owns, list) else []
    return {"node": node_id, "here": node_id == here, "members": sum(counts),
            "rooms": len(counts), "owned": len(owned), "owns": owned[:ROOMS_SHOWN]}


async def cluster_nodes(node: Node) -> tuple[list[dict[str, Any]] | None, str | None]:
    """Every live process of the cluster, this one first, and an error text when
    the broker cannot be asked; ``(None, None)`` on a single process."""
    cluster = node.cluster
    if cluster is None:
        return None, None
    try:
        beats = await cluster.broker.nodes()
    except BrokerError as err:
        return [], f"the cluster's broker is unreachable: {err}"
    here = cluster.node_id
    ids = sorted(beats, key=lambda nid: (nid != here, nid))
    return [node_row(nid, beats[nid], here) for nid in ids], None


def stats(node: Node, nodes: list[dict[str, Any]] | None = None,
          cluster_error: str | None = None) -> dict[str, Any]:
    """The dashboard's JSON: totals and gauges as /metrics shows them, at ``time``;
    ``nodes``: the cluster's processes (None on a single process)."""
    m = collect(node.metrics.registry)
    return {
        "time": node.clock(),
        "connections": total(m, "livecast_connections") or 0.0,
        "rooms": total(m, "livecast_rooms") or 0.0,
        "members": total(m, "livecast_members") or 0.0,
        "admitted": per_priority(m, "livecast_messages_admitted_total"),
        "delivered": per_priority(m, "livecast_messages_delivered_total"),
        "dropped": per_priority(m, "livecast_messages_dropped_total"),
        "rejected": total(m, "livecast_messages_rejected_total") or 0.0,
        "shed": total(m, "livecast_connections_shed_total") or 0.0,
        "frames": total(m, "livecast_frames_written_total") or 0.0,
        "degraded": total(m, "livecast_frames_degraded_total") or 0.0,
        "tick": histogram(m, "livecast_tick_duration_seconds"),
        "webhooks": webhook_stats(m) if node.webhooks.enabled else None,
        "admission": admission_stats(m),
        "roomList": room_rows(node),
        "nodes": nodes,
        "clusterError": cluster_error,
    }


async def dashboard_stats(request: web.Request) -> web.Response:
    node = request.app[NODE]
    nodes, error = await cluster_nodes(node)
    return web.json_response(stats(node, nodes, error), headers={"Cache-Control": "no-store"})


# ------------------------------------------------------------------ wiring
def add_pages(app: web.Application, gate: Gate | None) -> None:
    """Register the pages, their files and JSON, and the CSP hook on ``app``;
    the dashboard behind ``gate`` (None: the dashboard is served elsewhere,
    on the ops listener)."""
    r = app.router
    r.add_get("/", room_page)
    if gate is not None:
        add_dashboard_routes(app, gate, dashboard_page, dashboard_stats)
    r.add_get("/pages/config", page_config)
    r.add_get("/pages/room", page_room)
    if app[NODE].settings.dev_key:
        r.add_post(DEV_USERSIG, dev_usersig)
        r.add_route("OPTIONS", DEV_USERSIG, preflight)
    add_static(app)


def add_ops_pages(app: web.Application, gate: Gate) -> None:
    """The dashboard alone (and its files), for the separate ops listener."""
    add_dashboard_routes(app, gate, dashboard_page, dashboard_stats)
    add_static(app)


def add_static(app: web.Application) -> None:
    """``/static/`` and the response hooks (CSP, CORS)."""
    app.router.add_static("/static", STATIC, show_index=False, follow_symlinks=False)
    app.router.add_route("OPTIONS", "/static/{name:.+}", preflight)
    app.on_response_prepare.append(_security_headers)
    app.on_response_prepare.append(_cors_headers)
