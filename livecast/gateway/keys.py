"""The app's typed state keys, in one place (aiohttp ``AppKey``).

Everything the app holds for its lifetime is reached through these: the
node, the REST layer's own state, the in-process like counter and the class
that serves upgraded sockets (``CONNECTION``: set only by tests, for the
conformance echo; production never sets it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from livecast.admin.state import AdminState
from livecast.node.node import Node

if TYPE_CHECKING:
    from livecast.gateway.ws import WsConnection
    from livecast.node.likes import InProcessLikes

NODE: web.AppKey[Node] = web.AppKey("node", Node)
ADMIN: web.AppKey[AdminState] = web.AppKey("admin", AdminState)
LIKES: web.AppKey[InProcessLikes] = web.AppKey("likes")
CONNECTION: web.AppKey[type[WsConnection]] = web.AppKey("connection", type)
