"""GET /v1/plugins/{name}/manifest, and failed plugins in the plugin listing."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec
import pytest

from jobwarden import Plugin, PluginRegistry, builtin
from tests.actors.test_plugin_hooks import hooked_plugin
from tests.fakes import Gates
from tests.transport.conftest import auth, expect_error, serve

pytestmark = pytest.mark.anyio


async def test_the_manifest_route_answers_a_plugins_manifest() -> None:
    """A known plugin's manifest lists its tools with schemas, modes and timeouts."""
    async with serve() as srv:
        body = await srv.get_json("reader", "/v1/plugins/imaging/manifest")
    assert (body["name"], body["version"], body["description"]) == (
        "imaging",
        "2.1.0",
        "Looks at images.",
    )
    assert body["hooks"] == []
    tools = {t["name"]: t for t in body["tools"]}
    assert next(iter(tools)) == "imaging.describe"
    describe = tools["imaging.describe"]
    assert (describe["mode"], describe["timeout_s"], describe["circuit"]) == ("async", 10, None)
    assert describe["input_schema"]["$defs"]["ImageIn"]["required"] == ["image_bytes", "mime_type"]
    assert "output_schema" in describe


async def test_an_unknown_plugins_manifest_is_a_404_envelope() -> None:
    """An unknown plugin's manifest answers 404 not_found; without a key, 401."""
    async with serve() as srv:
        async with srv.http.get(srv.url("/v1/plugins/nope/manifest"), headers=auth("reader")) as r:
            error = await expect_error(r, 404, "not_found")
        async with srv.http.get(srv.url("/v1/plugins/imaging/manifest")) as r:
            await expect_error(r, 401, "unauthorized")
    assert error["plugin"] == "nope"


async def test_a_plugin_that_failed_to_load_is_listed_and_has_no_manifest() -> None:
    """/v1/plugins shows it failed with the reason; its health answers; its manifest is a 404."""
    registry = PluginRegistry()
    registry.add_failed("broken_mod:plugin", "ModuleNotFoundError: No module named 'broken_mod'")
    async with serve(registry=registry) as srv:
        listed = await srv.get_json("reader", "/v1/plugins")
        health = await srv.get_json("reader", "/v1/plugins/broken_mod:plugin/health")
        path = "/v1/plugins/broken_mod:plugin/manifest"
        async with srv.http.get(srv.url(path), headers=auth("reader")) as r:
            error = await expect_error(r, 404, "not_found")
    failed = {p["name"]: p for p in listed["plugins"]}["broken_mod:plugin"]
    assert {k: v for k, v in failed.items() if k != "uptime_s"} == {
        k: v for k, v in health.items() if k != "uptime_s"
    }
    assert failed["state"] == "failed"
    assert failed["reason"] == "ModuleNotFoundError: No module named 'broken_mod'"
    assert (failed["tools"], failed["circuits"], failed["success_count"]) == ([], [], 0)
    assert "failed to load: ModuleNotFoundError" in error["message"]


async def test_a_failed_plugin_named_with_a_lone_surrogate_is_listed_and_measured() -> None:
    """A failed source that is not UTF-8 is listed escaped, and /metrics still answers."""
    registry = PluginRegistry()
    registry.add_failed(b"bad\xff:x".decode("utf-8", "surrogateescape"), "ModuleNotFoundError")
    async with serve(registry=registry) as srv:
        listed = await srv.get_json("reader", "/v1/plugins")
        async with srv.http.get(srv.url("/metrics"), headers=auth("reader")) as r:
            assert r.status == 200
            metrics = await r.text()
    assert "bad\\udcff:x" in [p["name"] for p in listed["plugins"]]
    assert 'plugin="bad\\\\udcff:x"' in metrics


def failing_start(gates: Gates) -> Iterable[Plugin]:
    """builtin, and ``hooked`` whose startup hook raises."""
    return [builtin, hooked_plugin("hooked", [], fail_start=True)]


async def test_a_plugin_whose_startup_failed_refuses_jobs_over_http() -> None:
    """Its health says failed with the reason, its tools answer 404 tool_not_found and are not
    offered (in /v1/tools, one tool's route, the OpenAPI submit variants), others run."""
    async with serve(plugins=failing_start) as srv:
        health = await srv.get_json("reader", "/v1/plugins/hooked/health")
        found = await srv.get_json("reader", "/v1/plugins/hooked/manifest")
        body = {"tool": "hooked.echo", "input": {"text": "x"}}
        async with srv.http.post(srv.url("/v1/jobs"), json=body, headers=auth("alice")) as r:
            error = await expect_error(r, 404, "tool_not_found")
        offered = await srv.get_json("reader", "/v1/tools")
        async with srv.http.get(srv.url("/v1/tools/hooked.echo"), headers=auth("reader")) as r:
            one = await expect_error(r, 404, "tool_not_found")
        spec = await srv.get_json("reader", "/openapi.json")
        job = await srv.submit("alice", "builtin.echo", {"text": "ok"}, wait=5)
    names = {tool["name"] for tool in offered["tools"]}
    assert "builtin.echo" in names
    assert not any(name.startswith("hooked.") for name in names)
    assert one["details"] == {"reason": "plugin_failed"}
    assert "hooked.echo" not in msgspec.json.encode(spec["components"]["schemas"]).decode()
    assert health["state"] == "failed"
    assert health["reason"] == "startup hook raised HookFailed: no database"
    assert found["hooks"] == ["startup", "shutdown"]
    assert error["details"] == {"reason": "plugin_failed"}
    assert (error["plugin"], error["tool"]) == ("hooked", "hooked.echo")
    assert job["state"] == "succeeded"
