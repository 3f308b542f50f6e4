"""The README's two commands, .ci/run and the Dockerfile agree."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

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
    assert test in (ROOT / ".ci" / "run").read_text()


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
