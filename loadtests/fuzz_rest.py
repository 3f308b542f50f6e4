"""REST fuzz with schemathesis against a running ``livecast serve``
(docs/reliability.md).

    python -m loadtests.fuzz_rest --examples 10000

Starts ``livecast serve`` as a child process on a loopback port, reads the
OpenAPI document it serves (``GET /v4/openapi.json``), and has schemathesis
generate request bodies for every command from it: bodies that fit the
schema (positive) and bodies that do not (negative), about half each, spread
over the commands.  Every request carries a valid admin signature in its
query (``sdkappid``, ``identifier``, ``usersig``, ``random``,
``contenttype=json``), so the bodies reach the handlers.

Every answer must be HTTP 200 with a Tencent envelope: a JSON object with
``ActionStatus`` ``OK`` exactly when the integer ``ErrorCode`` is 0, a string
``ErrorInfo``, and never 10002 (a handler bug).  At the end the server must
still be running with no traceback or ERROR line in its log.  Prints the
bodies sent, HTTP statuses and error codes; exits 1 on any problem.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from loadtests.fuzz_cases import SDKAPPID
from loadtests.fuzz_frames import ADMIN, free_port, sig, start_server


@dataclass
class RestTally:
    bodies: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    codes: Counter[int] = field(default_factory=Counter)
    modes: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)


def check_answer(response: requests.Response) -> str | None:
    """None when ``response`` is HTTP 200 with a Tencent envelope; else why not."""
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    try:
        body: Any = response.json()
    except ValueError:
        return f"not JSON: {response.text[:200]}"
    if not isinstance(body, dict):
        return f"not an object: {response.text[:200]}"
    code, status, info = body.get("ErrorCode"), body.get("ActionStatus"), body.get("ErrorInfo")
    if not isinstance(code, int) or isinstance(code, bool) or not isinstance(info, str):
        return f"no envelope: {response.text[:200]}"
    if status != ("OK" if code == 0 else "FAIL"):
        return f"ActionStatus {status!r} with ErrorCode {code}"
    if code == 10002:
        return f"internal error: {response.text[:200]}"
    return None


def auth_query() -> dict[str, str]:
    return {"sdkappid": str(SDKAPPID), "identifier": ADMIN, "usersig": sig(ADMIN),
            "random": str(random.randrange(2**32)), "contenttype": "json"}


def fuzz_operations(base: str, examples: int, tally: RestTally) -> None:
    """``examples`` bodies in all, over every operation the served document lists."""
    schema = schemathesis.openapi.from_url(f"{base}/v4/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    runs = [(op, mode) for op in operations
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)]
    per_run = -(-examples // len(runs))   # at least ``examples`` in all
    with requests.Session() as http:
        for op, mode in runs:
            _fuzz_one(base, http, op.as_strategy(mode, query=auth_query()), str(mode), per_run,
                      tally)


def _fuzz_one(base: str, http: requests.Session, strategy: Any, mode: str, examples: int,
              tally: RestTally) -> None:
    @settings(max_examples=examples, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def one(case: Any) -> None:
        response = case.call(base_url=base, session=http, timeout=30)
        tally.bodies += 1
        tally.modes[mode] += 1
        tally.statuses[response.status_code] += 1
        problem = check_answer(response)
        if problem is None:
            tally.codes[response.json()["ErrorCode"]] += 1
        elif len(tally.problems) < 100:
            tally.problems.append(f"{case.path} {case.body!r:.200}: {problem}")

    one()


@dataclass
class RestReport:
    tally: RestTally
    seconds: float
    crashed: bool
    log_errors: list[str]

    @property
    def ok(self) -> bool:
        return not (self.tally.problems or self.crashed or self.log_errors)

    def lines(self) -> list[str]:
        t = self.tally
        return [
            f"bodies: {t.bodies} in {self.seconds:.1f} s ({dict(t.modes)})",
            f"HTTP statuses: {dict(t.statuses)}",
            f"ErrorCodes: {dict(sorted(t.codes.items()))}",
            f"problems: {len(t.problems)}" + "".join(f"\n  {p}" for p in t.problems[:20]),
            f"crashes: {int(self.crashed)}; log errors/tracebacks: {len(self.log_errors)}"
            + "".join(f"\n  {e}" for e in self.log_errors[:10]),
        ]


def fuzz_rest(examples: int) -> RestReport:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "serve.log"
        proc = asyncio.run(start_server(port, tmp, log))
        tally = RestTally()
        started = time.monotonic()
        try:
            fuzz_operations(base, examples, tally)
            seconds = time.monotonic() - started
            crashed = proc.poll() is not None
            if not crashed:
                check = requests.get(f"{base}/readyz", timeout=10)
                crashed = check.status_code != 200
        finally:
            proc.terminate()
            proc.wait(30)
        lines = log.read_text(errors="replace").splitlines()
        errors = [x for x in lines if "Traceback" in x or " ERROR " in x or " CRITICAL " in x]
    return RestReport(tally, seconds, crashed, errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=10_000)
    args = parser.parse_args()
    report = fuzz_rest(args.examples)
    print("\n".join(report.lines()))
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
