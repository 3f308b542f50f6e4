"""docker-compose.yml and deploy/nginx.conf, checked by structure (Docker does
not run here): Redis with AOF, two livecast nodes built from the Dockerfile on
one Redis and one secret key, and nginx in front passing WebSocket upgrades to
both nodes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
NODES = ("livecast-1", "livecast-2")


def compose() -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return found


def nginx() -> str:
    """deploy/nginx.conf without its comments."""
    text = (ROOT / "deploy" / "nginx.conf").read_text()
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def block(text: str, head: str) -> str:
    """The body of the first ``head { ... }`` block (braces balanced)."""
    m = re.search(rf"(?m)^\s*{re.escape(head)}\s*{{", text)
    assert m is not None, f"no block {head!r}"
    i = m.end()
    depth = 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    raise AssertionError(f"unclosed block {head!r}")


def directives(body: str, name: str) -> list[list[str]]:
    return [m.group(1).split() for m in re.finditer(rf"(?m)^\s*{name}\s+([^;]*);", body)]


def dockerfile_port() -> str:
    m = re.search(r"LIVECAST_PORT=(\d+)", (ROOT / "Dockerfile").read_text())
    assert m is not None
    return m.group(1)


def test_redis_keeps_an_append_only_file_on_a_volume() -> None:
    redis = compose()["services"]["redis"]
    command = redis["command"]
    assert command[0] == "redis-server"
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(v.endswith(":/data") for v in redis["volumes"])
    assert "redis-cli" in redis["healthcheck"]["test"]


def test_two_nodes_from_the_dockerfile_on_one_redis_and_one_key() -> None:
    services = compose()["services"]
    envs = []
    for name in NODES:
        node = services[name]
        assert node["build"] == "."  # the repository's Dockerfile
        assert (ROOT / node["build"] / "Dockerfile").is_file()
        env = node["environment"]
        assert env["LIVECAST_REDIS_URL"] == "redis://redis:6379"
        assert env["LIVECAST_SECRET_KEY"].startswith("${LIVECAST_SECRET_KEY")  # from the shell
        assert ":?" in env["LIVECAST_SECRET_KEY"]  # required: no silent dev key
        assert node["depends_on"]["redis"]["condition"] == "service_healthy"
        assert "ports" not in node  # reached through the load balancer only
        envs.append(env)
    assert envs[0] == envs[1]
    assert set(services) == {"redis", *NODES, "lb"}


def test_the_load_balancer_publishes_one_port_and_mounts_its_config() -> None:
    lb = compose()["services"]["lb"]
    assert lb["image"].startswith("nginx:")
    assert lb["ports"] == ["8080:8080"]
    mounts = [v.split(":") for v in lb["volumes"]]
    assert ["./deploy/nginx.conf", "/etc/nginx/nginx.conf", "ro"] in mounts
    assert (ROOT / "deploy" / "nginx.conf").is_file()
    assert set(lb["depends_on"]) == set(NODES)


def test_nginx_sends_to_both_nodes_and_passes_websocket_upgrades() -> None:
    conf = nginx()
    http = block(conf, "http")
    upstream = block(http, "upstream livecast")
    servers = [d[0] for d in directives(upstream, "server")]
    assert servers == [f"{n}:{dockerfile_port()}" for n in NODES]
    server = block(http, "server")
    assert directives(server, "listen") == [["8080"]]
    assert directives(server, "proxy_http_version") == [["1.1"]]
    headers = {d[0]: d[1] for d in directives(server, "proxy_set_header")}
    assert headers["Upgrade"] == "$http_upgrade"
    variable = headers["Connection"]
    mapping = block(http, f"map $http_upgrade {variable}")
    assert re.search(r"default\s+upgrade;", mapping)  # an Upgrade request says so upstream
    reads = directives(server, "proxy_read_timeout")
    assert reads and int(reads[0][0].rstrip("s")) >= 60  # quiet sockets outlive nginx's 60 s
    for path in ("location /v1/ws", "location /"):
        location = block(server, path)
        assert directives(location, "proxy_pass") == [["http://livecast"]]
        # a location with its own proxy_set_header would drop the server's (Upgrade)
        assert directives(location, "proxy_set_header") == []
        assert directives(location, "proxy_http_version") == []


def test_per_ip_limits_move_from_the_nodes_to_the_load_balancer() -> None:
    services = compose()["services"]
    for name in NODES:  # every client arrives from nginx's one address
        env = services[name]["environment"]
        assert env["LIVECAST_CONNECT_RATE"] == env["LIVECAST_LOGIN_RATE"] == "0"
        assert env["LIVECAST_AUTH_FAIL_LIMIT"] == "0"
    http = block(nginx(), "http")
    zones = directives(http, "limit_req_zone")
    assert zones and zones[0][0] == "$binary_remote_addr"
    zone = zones[0][1].removeprefix("zone=").split(":")[0]
    ws = block(block(http, "server"), "location /v1/ws")
    assert directives(ws, "limit_req")[0][0] == f"zone={zone}"


def test_the_ops_token_comes_from_the_shell_and_is_optional() -> None:
    """Unset, the nodes' ops endpoints answer 403 (they listen on 0.0.0.0);
    set, every node takes the same token, so a dashboard login holds on both."""
    services = compose()["services"]
    tokens = {services[name]["environment"]["LIVECAST_OPS_TOKEN"] for name in NODES}
    assert tokens == {"${LIVECAST_OPS_TOKEN:-}"}
    assert "LIVECAST_OPS_LISTEN" not in services[NODES[0]]["environment"]  # through nginx
