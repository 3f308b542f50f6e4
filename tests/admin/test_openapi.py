"""The OpenAPI document (livecast/admin/openapi.py): built from the command
table, so it lists exactly the commands the server dispatches; served at
``GET /v4/openapi.json`` without credentials; a valid OpenAPI 3 document
(schemathesis loads it and finds one operation per command)."""

from __future__ import annotations

import aiohttp
import schemathesis

from livecast.admin.openapi import BODIES, OPENAPI_PATH, document
from livecast.admin.rest import COMMANDS
from tests.conftest import Live


def test_every_command_is_in_the_document_and_nothing_else() -> None:
    paths = document()["paths"]
    assert set(paths) == {f"/v4/{s}/{c}" for s, c in COMMANDS}
    assert set(BODIES) == {c for _, c in COMMANDS}   # no body left for a removed command
    for path, item in paths.items():
        assert set(item) == {"post"}, path
        names = {p["name"] for p in item["post"]["parameters"]}
        assert names == {"sdkappid", "identifier", "usersig", "random", "contenttype"}


def test_a_command_without_fields_fails_the_build() -> None:
    COMMANDS[("group_open_http_svc", "no_such_body")] = COMMANDS[("livecast_ext",
                                                                   "get_room_rate")]
    try:
        document()
    except RuntimeError as err:
        assert "no_such_body" in str(err)
    else:
        raise AssertionError("document() accepted a command without a body")
    finally:
        del COMMANDS[("group_open_http_svc", "no_such_body")]


async def test_the_document_is_served_and_loads_as_openapi(live: Live) -> None:
    async with aiohttp.ClientSession() as http, http.get(live.url(OPENAPI_PATH)) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        served = await resp.json()
    assert served == document()
    schema = schemathesis.openapi.from_dict(served)
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) == len(COMMANDS)
    async with aiohttp.ClientSession() as http, http.post(live.url(OPENAPI_PATH)) as resp:
        assert resp.status == 405   # GET only; not taken for a /v4/<service>/<command> call
