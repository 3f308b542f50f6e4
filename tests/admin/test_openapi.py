"""The OpenAPI document (livecast/admin/openapi.py): built from the command
table, so it lists exactly the commands the server dispatches; served at
``GET /v4/openapi.json`` without credentials; a valid OpenAPI 3 document
(schemathesis loads it and finds one operation per command)."""

from __future__ import annotations

from typing import Any

import aiohttp
import jsonschema_rs
import schemathesis

from livecast.admin.openapi import BODIES, OPENAPI_PATH, document
from livecast.admin.rest import COMMANDS
from tests.admin.conftest import rest
from tests.conftest import SDKAPPID, Live, sig


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


def test_a_real_call_s_query_string_is_valid_for_the_document() -> None:
    query = {"sdkappid": SDKAPPID, "identifier": "administrator",
             "usersig": sig("administrator"), "random": 1, "contenttype": "json"}
    for path, item in document()["paths"].items():
        for param in item["post"]["parameters"]:
            assert jsonschema_rs.is_valid(param["schema"], query[param["name"]]), (path, param)


async def test_a_field_the_server_requires_is_required_by_the_document(live: Live) -> None:
    """Each command sent an empty body, then a body with only the document's
    required fields (each a value of its type): a field an answer names as
    required is in the document's ``required`` list."""
    def placeholder(field: dict[str, Any]) -> Any:
        kind = field.get("type", "string")
        if kind == "array":
            return [placeholder(field.get("items", {}))]
        return {"string": "x", "integer": 1, "object": {}, "boolean": True}[kind]

    named = set()
    async with aiohttp.ClientSession() as http:
        for (service, command), _handler in COMMANDS.items():
            schema = BODIES[command]
            required = schema.get("required", [])
            least = {f: placeholder(schema["properties"][f]) for f in required}
            for body in ({}, least):
                info = (await rest(live, service, command, body, http=http))["ErrorInfo"]
                if info.endswith(" is required"):
                    named.add(command)
                    assert info.removesuffix(" is required") in required, (command, body, info)
    assert "portrait_get" in named
