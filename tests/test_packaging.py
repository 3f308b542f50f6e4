"""The README's two commands, .ci/run and the Dockerfile agree."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from tests.conftest import Live
from tests.redis_fixtures import free_port

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    setup = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", setup)


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_readme_has_exactly_two_setup_commands() -> None:
    run, test = readme_commands()
    assert run.endswith("livecast serve") and "pip install ." in run
    assert "pytest" in test and "[dev]" in test


def test_ci_runs_the_readme_test_command() -> None:
    _, test = readme_commands()
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test in lines  # the very command, on a line of its own


def test_readme_test_command_installs_the_system_packages_first() -> None:
    _, test = readme_commands()
    first = shlex.split(test.split("&&")[0])
    assert first == ["sh", "scripts/system-deps"]
    script = (ROOT / "scripts" / "system-deps").read_text()
    assert "chromium" in script and "redis-server" in script


def test_system_deps_installs_nothing_when_present(tmp_path: Path) -> None:
    """With both programs on PATH the script ends at once and never calls apt-get."""
    for name in ("chromium", "redis-server"):
        exe = tmp_path / name
        exe.write_text("#!/bin/sh\nexit 0\n")
        exe.chmod(0o755)
    apt = tmp_path / "apt-get"
    apt.write_text(f"#!/bin/sh\ntouch {tmp_path}/apt-called\nexit 1\n")
    apt.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    done = subprocess.run(["sh", str(ROOT / "scripts" / "system-deps")], env=env,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "apt-called").exists()


def test_dockerfile_runs_what_the_readme_runs() -> None:
    run, _ = readme_commands()
    ins = dockerfile_instructions()
    cmd = [json.loads(rest) for word, rest in ins if word == "CMD"][-1]
    readme_serve = shlex.split(run.split("&&")[-1])
    assert Path(readme_serve[0]).name == cmd[0] and readme_serve[1:] == cmd[1:]


def test_dockerfile_is_slim_non_root_and_checks_health() -> None:
    ins = dockerfile_instructions()
    assert ins[0][0] == "FROM" and re.match(r"python:3\.1\d+-slim", ins[0][1])
    users = [rest for word, rest in ins if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    env = " ".join(rest for word, rest in ins if word == "ENV")
    assert "LIVECAST_HOST=0.0.0.0" in env
    health = [rest for word, rest in ins if word == "HEALTHCHECK"]
    assert health and "/healthz" in health[0]


async def test_the_health_check_asks_the_port_the_container_was_given(live: Live) -> None:
    """The HEALTHCHECK's own command, run against a server on another port
    than the image's default (``-e LIVECAST_PORT=...``)."""
    health = next(rest for word, rest in dockerfile_instructions() if word == "HEALTHCHECK")
    command = json.loads(health.split("CMD", 1)[1])
    port = live.url("/").split(":")[2].split("/")[0]
    env = {**os.environ, "LIVECAST_PORT": port}
    ok = await asyncio.create_subprocess_exec(sys.executable, *command[1:], env=env)
    assert await ok.wait() == 0
    env["LIVECAST_PORT"] = str(free_port())  # nothing there: the check fails
    down = await asyncio.create_subprocess_exec(sys.executable, *command[1:], env=env,
                                                stderr=asyncio.subprocess.DEVNULL)
    assert await down.wait() != 0


def test_the_image_keeps_its_data_in_a_volume() -> None:
    ins = dockerfile_instructions()
    env = " ".join(rest for word, rest in ins if word == "ENV")
    data = re.search(r"LIVECAST_DATA_DIR=(\S+)", env)
    assert data is not None
    assert [rest for word, rest in ins if word == "VOLUME"] == [data.group(1)]
