"""The livecast load-testing kit for locust (docs/loadtesting.md).

Modules:
- ``options``: the kit's command-line options (each with an environment
  default) and the frozen ``Config`` built from them.
- ``wsclient``: a WebSocket client of the livecast protocol for gevent
  greenlets (websocket-client under locust's monkey-patching; no asyncio).
- ``members``: the WebSocket user classes Viewer, Chatter, Liker, Gifter.
- ``admin``: the REST side: room setup and the Admin user class.
- ``tally``: counters locust has no column for (seq gaps, reconnects), their
  aggregation from workers, and the end-of-run summary.
"""
