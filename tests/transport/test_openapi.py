"""The OpenAPI document: complete, well-formed, and true to what the server answers."""

from __future__ import annotations

import base64
from typing import Any, Literal

import jsonschema
import msgspec
import pytest
from aiohttp import web
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from jobwarden import Plugin, Supervisor, ToolContext, builtin
from jobwarden.plugins.imaging import imaging
from jobwarden.transport import create_app
from jobwarden.transport.openapi import build_spec
from tests.images import red_and_blue_png
from tests.transport.conftest import auth, receive_json, serve
from tests.transport.openapi_check import OpenApiChecker
from tests.transport.test_routes_v1 import pairs


def _app_routes(app: web.Application) -> set[tuple[str, str]]:
    found = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue  # aiohttp adds HEAD for every GET
        assert route.resource is not None
        found.add((route.method.lower(), route.resource.canonical))
    return found


def test_every_route_of_the_app_is_documented() -> None:
    """Each (method, path) the application serves appears in the OpenAPI document and back."""
    app = create_app(Supervisor(plugins=[builtin]))
    spec = build_spec()
    documented = {(m, p) for p, ops in spec["paths"].items() for m in ops}
    assert _app_routes(app) == documented


def test_every_route_documents_its_405_and_the_document_its_own_type() -> None:
    """A wrong method answers every route with a 405 envelope, the routes without a key
    included, and the document says it is a JSON object."""
    spec = build_spec()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            assert "405" in operation["responses"], (method, path)
    own = spec["paths"]["/openapi.json"]["get"]["responses"]["200"]["content"]
    assert own == {"application/json": {"schema": {"type": "object"}}}


def test_the_event_streams_describe_their_frames() -> None:
    """Both event stream routes describe the websocket frames, the subscribed one included, and
    SSE's opening id line."""
    spec = build_spec()
    for path in ("/v1/events", "/v1/jobs/{id}/events"):
        text = spec["paths"][path]["get"]["description"]
        assert '{"type": "subscribed", "since": N}' in text, path
        assert '{"type": "pong"}' in text, path
        assert "`id: N` and no data" in text, path


def test_document_is_openapi_31_with_resolvable_schemas() -> None:
    """The document says 3.1.0 and every $ref in it resolves to a valid JSON Schema."""
    spec = build_spec()
    assert spec["openapi"] == "3.1.0"
    text = msgspec.json.encode(spec).decode()
    for name, schema in spec["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema)
        assert f"#/components/schemas/{name}" in text or name in {"ErrorInfo", "JobState"}


def test_checker_flags_a_response_that_breaks_the_schema() -> None:
    """The response checker used by the acceptance tests notices a wrong body."""
    checker = OpenApiChecker()
    checker.check("GET", "/v1/health", 200, b'{"status": "ok", "version": "1", "uptime_s": 1}')
    assert checker.problems == []
    checker.check("GET", "/v1/health", 200, b'{"status": 5}')
    checker.check("GET", "/v1/health", 418, b"{}")
    assert len(checker.problems) == 2


@pytest.mark.anyio
async def test_openapi_route_serves_the_document() -> None:
    """GET /openapi.json answers the same document, without a key."""
    from aiohttp.test_utils import TestClient, TestServer

    async with Supervisor(plugins=[builtin]) as sup:
        app = create_app(sup)
        async with TestClient(TestServer(app)) as client:
            response = await client.get("/openapi.json")
            assert response.status == 200
            tools = {tool.name: tool.input_schema() for tool in sup.registry.tools()}
            plugins = {"builtin": list(tools)}
            expected = build_spec(tools=tools, plugins=plugins, max_wait_s=60.0)
            assert await response.json() == msgspec.json.decode(msgspec.json.encode(expected))


def _validator(spec: dict[str, Any], body: str = "SubmitBody") -> jsonschema.Draft202012Validator:
    resource = Resource.from_contents(spec, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource("urn:spec", resource)
    schema = {"$ref": f"urn:spec#/components/schemas/{body}"}
    return jsonschema.Draft202012Validator(schema, registry=registry)


def test_a_servers_document_has_a_submit_body_per_tool() -> None:
    """Given the server's tools, a submit body is one of a variant per tool whose ``input`` is
    that tool's input schema, required unless ``{}`` is one; without them, any name fits."""
    sup = Supervisor(plugins=[builtin])
    tools = {tool.name: tool.input_schema() for tool in sup.registry.tools()}
    spec = build_spec(tools=tools, plugins={"builtin": list(tools)})
    for schema in spec["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)
    submit = spec["components"]["schemas"]["SubmitBody"]
    assert [variant["properties"]["tool"] for variant in submit["oneOf"]] == [
        {"const": name} for name in tools
    ]
    validator = _validator(spec)
    assert validator.is_valid({"tool": "builtin.echo", "input": {"text": "hi"}, "timeout_s": 1})
    assert not validator.is_valid({"tool": "builtin.echo", "input": {"seconds": 1}})
    assert not validator.is_valid({"tool": "nope.nothing", "input": {}})
    assert not validator.is_valid({"tool": "builtin.echo", "input": {"text": "hi"}, "x": 1})
    assert not validator.is_valid({"tool": "builtin.echo"})
    assert validator.is_valid({"tool": "builtin.fail"})
    [wait] = build_spec(max_wait_s=5.0)["paths"]["/v1/jobs"]["post"]["parameters"]
    assert wait["schema"] == {"type": "number", "minimum": 0, "maximum": 5.0}
    anything = _validator(build_spec())
    assert anything.is_valid({"tool": "nope.nothing", "input": {"n": 1}})
    any_plugin = _validator(build_spec(), "AnalyzeBody")
    assert any_plugin.is_valid({"plugin": "nope", "image": "", "mime_type": "x"})


class Words(msgspec.Struct, forbid_unknown_fields=True):
    """Not an image: no seed body is an input of this."""

    text: str


class Picture(msgspec.Struct):
    """An image, a type, and a setting a seed body leaves at its default."""

    image_bytes: bytes
    mime_type: Literal["image/png"]
    scale: int = 1


class Anything(msgspec.Struct):
    """Nothing required and unknown members ignored: every seed body is an input of this."""


scanner = Plugin("scanner")


@scanner.tool()
async def words(inp: Words, ctx: ToolContext) -> Words:
    """The first tool, the one a seed body naming no tool runs."""
    return inp


@scanner.tool()
async def picture(inp: Picture, ctx: ToolContext) -> Anything:
    """A tool a seed body reaches by naming it."""
    return Anything()


@scanner.tool()
async def anything(inp: Anything, ctx: ToolContext) -> Anything:
    """A tool any seed body reaches by naming it."""
    return inp


def _seed_validator(*plugins: Plugin) -> jsonschema.Draft202012Validator:
    registry = Supervisor(plugins=plugins).registry
    tools = {tool.name: tool.input_schema() for tool in registry.tools()}
    names = {p.name: [tool.name for tool in p.tools.values()] for p in registry.plugins()}
    spec = build_spec(tools=tools, plugins=names)
    for schema in spec["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)
    return _validator(spec, "AnalyzeBody")


def test_a_servers_seed_body_is_a_variant_per_tool_that_takes_an_image() -> None:
    """A seed body fits only a tool its ``{"image_bytes", "mime_type"}`` is an input of: the
    plugin's first tool when it names none, else the one it names, with that tool's rules for
    the image and its type."""
    validator = _seed_validator(builtin, imaging, scanner)
    png = {"image": "aGk=", "mime_type": "image/png"}
    for body in (
        {"plugin": "imaging", **png},
        {"plugin": "imaging", **png, "tool": "inspect"},
        {"plugin": "imaging", **png, "tool": None},
        {"plugin": "scanner", **png, "tool": "picture"},
        {"plugin": "scanner", "image": "", "mime_type": "x", "tool": "anything"},
    ):
        assert validator.is_valid(body), body
    for body in (
        {"plugin": "builtin", **png},  # its first tool, echo, takes text
        {"plugin": "imaging", **png, "tool": "nope"},
        {"plugin": "imaging", "image": "aGk", "mime_type": "image/png"},  # not base64
        {"plugin": "imaging", "image": "", "mime_type": "image/png"},  # inspect wants bytes
        {"plugin": "imaging", "image": "aGk=", "mime_type": "image/svg+xml"},
        {"plugin": "scanner", **png},  # words
        {"plugin": "scanner", **png, "tool": "words"},
        {"plugin": "scanner", "image": "aGk=", "mime_type": "image/gif", "tool": "picture"},
        {"plugin": "scanner", "image": "", "mime_type": "x" * 201, "tool": "anything"},
    ):
        assert not validator.is_valid(body), body


def test_with_no_tool_that_takes_an_image_no_seed_body_fits() -> None:
    """A server none of whose tools takes a seed body's input documents that every seed body is
    refused."""
    validator = _seed_validator(builtin)
    assert not validator.is_valid({"plugin": "builtin", "image": "", "mime_type": "x"})


@pytest.mark.anyio
async def test_the_served_document_admits_what_the_server_accepts() -> None:
    """Submit and seed bodies the served document admits are accepted, and those it refuses
    (bad base64, a missing input, an input of the wrong shape, a tool that takes no image) are
    refused."""
    png = base64.b64encode(red_and_blue_png()).decode()
    submits: list[tuple[dict[str, Any], bool]] = [
        ({"tool": "builtin.sha256", "input": {"data": "aGk="}}, True),
        ({"tool": "builtin.sha256", "input": {"data": "aGk"}}, False),
        ({"tool": "builtin.sha256", "input": {"data": "aG k="}}, False),
        ({"tool": "builtin.fail"}, True),
        ({"tool": "builtin.echo"}, False),
        ({"tool": "builtin.sleep", "input": {"seconds": 0, "steps": 2}}, True),
        ({"tool": "pairs.join", "input": [2, "b"]}, True),
        ({"tool": "pairs.join", "input": [2]}, True),
        ({"tool": "pairs.join"}, False),
        ({"tool": "pairs.join", "input": {"count": 2}}, False),
        ({"tool": "builtin.echo", "input": ["hi"]}, False),
    ]
    seeds: list[tuple[dict[str, Any], bool]] = [
        ({"plugin": "imaging", "image": png, "mime_type": "image/png"}, True),
        ({"plugin": "imaging", "image": png, "mime_type": "image/png", "tool": "inspect"}, True),
        ({"plugin": "builtin", "image": png, "mime_type": "image/png"}, False),
        ({"plugin": "imaging", "image": "", "mime_type": "image/png"}, False),
        ({"plugin": "imaging", "image": png[:-1], "mime_type": "image/png"}, False),
    ]
    async with serve(plugins=lambda gates: [builtin, imaging, pairs]) as srv:
        spec = await srv.get_json(None, "/openapi.json")
        checks = [
            (_validator(spec), "/v1/jobs", submits),
            (_validator(spec, "AnalyzeBody"), "/v1/analyze-execution/async", seeds),
        ]
        for validator, path, cases in checks:
            for body, admitted in cases:
                assert validator.is_valid(body) == admitted, body
                async with srv.http.post(srv.url(path), json=body, headers=auth("alice")) as resp:
                    assert (resp.status < 300) == admitted, (body, await resp.text())


def test_statuses_document_the_headers_they_come_with() -> None:
    """Every 401, 405, 429 and 503 documents its WWW-Authenticate, Allow or Retry-After
    header, and the stream routes document their websocket upgrade, 101."""
    spec = build_spec()
    expected = {
        "401": ("WWW-Authenticate", True),
        "405": ("Allow", True),
        "429": ("Retry-After", True),
        "503": ("Retry-After", False),
    }
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status, (header, required) in expected.items():
                response = operation["responses"].get(status)
                if response is not None:
                    assert response["headers"][header]["required"] is required, (
                        method,
                        path,
                        status,
                    )
    for path in ("/v1/events", "/v1/jobs/{id}/events"):
        upgrade = spec["paths"][path]["get"]["responses"]["101"]
        assert upgrade["headers"]["Upgrade"]["schema"]["const"] == "websocket"
    assert "101" not in spec["paths"]["/v1/jobs/{id}"]["get"]["responses"]


@pytest.mark.anyio
async def test_upgrades_and_refusals_are_documented_with_their_headers() -> None:
    """A websocket upgrade (101), a missing key (401) and a full queue (429) on the seed and
    stream routes answer as the document says, headers included (``serve`` checks each answer)."""
    png = {"plugin": "imaging", "image": "aGk=", "mime_type": "image/png"}
    async with serve(concurrency=1, max_queued=1) as srv:
        held = await srv.hold("alice", "first")
        async with srv.http.ws_connect(
            srv.ws_url(f"/v1/jobs/{held['id']}/events"), headers=auth("alice")
        ) as ws:
            assert (await receive_json(ws))["type"] == "jobwarden.job.queued"
        async with srv.http.ws_connect(srv.ws_url("/v1/events"), headers=auth("alice")) as ws:
            await ws.send_json({"op": "ping"})
            assert await receive_json(ws) == {"type": "pong"}
        async with srv.http.get(srv.url("/v1/analyze-execution/jobs")) as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        await srv.submit("alice", "builtin.echo", {"text": "queued"})
        async with srv.http.post(
            srv.url("/v1/analyze-execution/async"), json=png, headers=auth("alice")
        ) as resp:
            assert resp.status == 429
            assert int(resp.headers["Retry-After"]) >= 1
