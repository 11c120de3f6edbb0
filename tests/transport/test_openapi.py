"""The OpenAPI document: complete, well-formed, and true to what the server answers."""

from __future__ import annotations

from typing import Any

import jsonschema
import msgspec
import pytest
from aiohttp import web
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from jobwarden import Supervisor, builtin
from jobwarden.transport import create_app
from jobwarden.transport.openapi import build_spec
from tests.transport.openapi_check import OpenApiChecker


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
            expected = build_spec(tools=tools, plugins=["builtin"], max_wait_s=60.0)
            assert await response.json() == msgspec.json.decode(msgspec.json.encode(expected))


def _submit_validator(spec: dict[str, Any]) -> jsonschema.Draft202012Validator:
    resource = Resource.from_contents(spec, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource("urn:spec", resource)
    schema = {"$ref": "urn:spec#/components/schemas/SubmitBody"}
    return jsonschema.Draft202012Validator(schema, registry=registry)


def test_a_servers_document_has_a_submit_body_per_tool() -> None:
    """Given the server's tools, a submit body is one of a variant per tool whose ``input`` is
    that tool's input schema, and the seed's ``plugin`` an enum; without them, any name fits."""
    sup = Supervisor(plugins=[builtin])
    tools = {tool.name: tool.input_schema() for tool in sup.registry.tools()}
    spec = build_spec(tools=tools, plugins=["builtin"])
    for schema in spec["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)
    submit = spec["components"]["schemas"]["SubmitBody"]
    assert [variant["properties"]["tool"] for variant in submit["oneOf"]] == [
        {"const": name} for name in tools
    ]
    assert spec["components"]["schemas"]["AnalyzeBody"]["properties"]["plugin"]["enum"] == [
        "builtin"
    ]
    validator = _submit_validator(spec)
    assert validator.is_valid({"tool": "builtin.echo", "input": {"text": "hi"}, "timeout_s": 1})
    assert not validator.is_valid({"tool": "builtin.echo", "input": {"seconds": 1}})
    assert not validator.is_valid({"tool": "nope.nothing", "input": {}})
    assert not validator.is_valid({"tool": "builtin.echo", "input": {"text": "hi"}, "x": 1})
    [wait] = build_spec(max_wait_s=5.0)["paths"]["/v1/jobs"]["post"]["parameters"]
    assert wait["schema"] == {"type": "number", "minimum": 0, "maximum": 5.0}
    anything = _submit_validator(build_spec())
    assert anything.is_valid({"tool": "nope.nothing", "input": {"n": 1}})
    bare = build_spec()["components"]["schemas"]["AnalyzeBody"]
    assert "enum" not in bare["properties"]["plugin"]
