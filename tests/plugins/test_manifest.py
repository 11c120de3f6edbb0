"""Plugin manifests, and plugins recorded as failed to load."""

from __future__ import annotations

import pytest

from jobwarden import Plugin, PluginLifecycle, PluginRegistry, ToolContext, errors
from jobwarden.plugins.circuit import CircuitPolicy
from jobwarden.plugins.manifest import manifest
from jobwarden.plugins.retry import RetryPolicy
from tests.plugins.test_registry import Text, make_plugin


def test_a_manifest_describes_the_plugin_its_tools_and_hooks() -> None:
    """The manifest holds name, version, description, each tool's options and schemas, hooks."""
    plugin = Plugin("demo", version="2.0.0", description="Demo tools.")

    @plugin.tool(
        timeout=5,
        total_timeout=20,
        queue_timeout=7,
        retry=RetryPolicy(max_attempts=2),
        circuit_failures=3,
        max_concurrency=2,
    )
    async def shout(inp: Text, ctx: ToolContext) -> Text:
        """Upper-case the text.

        More detail that stays out of the description.
        """
        return Text(text=inp.text.upper())

    @plugin.on_shutdown
    async def bye() -> None:
        return None

    found = manifest(plugin)
    assert (found.name, found.version, found.description) == ("demo", "2.0.0", "Demo tools.")
    assert found.hooks == ["shutdown"]
    [tool] = found.tools
    assert tool.name == "demo.shout"
    assert tool.description == "Upper-case the text."
    assert (tool.mode, tool.timeout_s, tool.max_concurrency) == ("async", 5, 2)
    assert tool.retry_on_interrupt is False
    assert (tool.total_timeout_s, tool.queue_timeout_s) == (20, 7)
    assert tool.retry == RetryPolicy(max_attempts=2)
    assert tool.circuit == CircuitPolicy(failures=3, window_s=60.0, cooldown_s=30.0)
    assert tool.input_schema["$ref"] == "#/$defs/Text"
    assert tool.output_schema == tool.input_schema


def test_a_plugin_that_failed_to_load_is_listed_failed_with_its_reason() -> None:
    """add_failed records a source with no tools; asking for its Plugin is NotFound."""
    registry = PluginRegistry([make_plugin("alpha", "one")])
    registry.add_failed("pkg.mod:thing", "ImportError: no module named pkg")
    assert registry.plugin_names() == ["alpha", "pkg.mod:thing"]
    assert [p.name for p in registry.plugins()] == ["alpha"]
    status = registry.status("pkg.mod:thing")
    assert status.state is PluginLifecycle.FAILED
    assert status.reason == "ImportError: no module named pkg"
    assert (status.version, status.description, status.tools) == ("", "", ())
    assert registry.circuits("pkg.mod:thing") == []
    with pytest.raises(errors.NotFound, match="failed to load: ImportError"):
        registry.plugin("pkg.mod:thing")
    with pytest.raises(errors.RegistrationError, match="already registered"):
        registry.add_failed("pkg.mod:thing", "again")
