"""livecast load test: viewers, chatters, likers, gifters and an admin (docs/loadtesting.md).

    locust -f loadtests/locustfile.py --headless -u 500 -r 100 -t 60s --host http://127.0.0.1:8080

The user classes live in ``livecast_locust``; this file wires the kit into
locust's events:
- ``init_command_line_parser``: the kit's options (``livecast_locust.options``).
- ``init`` (local runner, master): check the options, resolve the app key
  (so that the master forwards it to its workers), set the class weights from
  ``--mix`` and the number of Admins from ``--admin-users``.
- ``init`` with a web UI: the kit's "livecast" tab, per-priority latency
  chart and CSV download (``livecast_locust.webui``).
- ``test_start``: create the rows always shown (drops, drop %, counters) in
  locust's statistics; then, in every process that runs users, build the
  Config and create the rooms over REST (``livecast_locust.admin.setup_rooms``).
- ``report_to_master`` / ``worker_report``: the workers' seq-gap and
  reconnect counts reach the master.
- ``quit`` (local runner, master): print the summary after locust's tables and,
  with ``--csv PREFIX``, write ``PREFIX_livecast.csv`` (one row per priority).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import gevent
from livecast_locust import admin, options, state, summary, webui
from livecast_locust.admin import Admin
from livecast_locust.members import Chatter, Gifter, Liker, Viewer
from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

__all__ = ["Admin", "Chatter", "Gifter", "Liker", "Viewer"]

log = logging.getLogger("livecast.loadtest")
CLASSES = {"viewer": Viewer, "chatter": Chatter, "liker": Liker, "gifter": Gifter}
_env: Environment | None = None


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    options.add_arguments(parser)


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    global _env
    _env = environment
    o = environment.parsed_options
    if o is None or isinstance(environment.runner, WorkerRunner):
        return  # a worker gets the options from its master with each start
    try:
        options.check(o)
        o.secret_key = options.resolve_key(o.secret_key, o.dev_key_file)
    except ValueError as exc:
        sys.exit(f"livecast: {exc}")
    for role, weight in options.parse_mix(o.mix).items():
        CLASSES[role].weight = weight
    Admin.fixed_count = o.admin_users
    webui.register(environment)


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    summary.prepare(environment.stats)
    if isinstance(environment.runner, MasterRunner):
        return
    try:
        cfg = options.build(environment.parsed_options, environment.host or "")
    except ValueError as exc:
        log.error("livecast: %s", exc)
        environment.process_exit_code = 2
        if environment.runner is not None:
            gevent.spawn(environment.runner.quit)
        return
    state.CONFIG = cfg
    if not admin.setup_rooms(environment, cfg):
        environment.process_exit_code = 1


@events.report_to_master.add_listener
def _on_report(client_id: str, data: dict[str, Any], **_: Any) -> None:
    data["livecast"] = state.TALLY.take()


@events.worker_report.add_listener
def _on_worker_report(client_id: str, data: dict[str, Any], **_: Any) -> None:
    state.TALLY.merge(data.get("livecast") or {})


@events.quit.add_listener
def _on_quit(**_: Any) -> None:
    if _env is None or _env.runner is None or isinstance(_env.runner, WorkerRunner):
        return
    print(summary.render(_env.runner.stats, state.TALLY), flush=True)
    prefix = getattr(_env.parsed_options, "csv_prefix", None)
    if prefix:
        summary.write_csv(f"{prefix}_livecast.csv", _env.runner.stats)
