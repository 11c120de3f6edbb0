"""The plugin registry: tools by name, plugin lifecycle, and per-tool metrics."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from jobwarden import JobState, errors
from jobwarden.plugins.context import ToolContext
from jobwarden.plugins.registry import PluginLifecycle, PluginRegistry
from jobwarden.plugins.tool import Plugin
from jobwarden.records import JobRecord


class Text(msgspec.Struct):
    """Some text."""

    text: str


def make_plugin(name: str, *tools: str, version: str = "1.0.0") -> Plugin:
    """A plugin called ``name`` with one echo-like tool per name in ``tools``."""
    plugin = Plugin(name, version=version)
    for tool in tools:

        async def run(inp: Text, ctx: ToolContext) -> Text:
            return inp

        plugin.tool(name=tool)(run)
    return plugin


def test_lifecycle_values_are_exactly_the_documented_ones() -> None:
    """PluginLifecycle has exactly loaded, initialized, running, failed, unavailable."""
    assert [s.value for s in PluginLifecycle] == [
        "loaded",
        "initialized",
        "running",
        "failed",
        "unavailable",
    ]


def test_add_registers_the_plugin_and_its_tools() -> None:
    """add() makes every tool reachable by its full name."""
    alpha = make_plugin("alpha", "one", "two")
    registry = PluginRegistry()
    registry.add(alpha)
    assert registry.tool("alpha.one") is alpha.tools["one"]
    assert registry.tool("alpha.two") is alpha.tools["two"]
    assert registry.plugins() == [alpha]


def test_constructor_adds_plugins_in_order() -> None:
    """PluginRegistry(plugins) registers each plugin; tools() and plugins() keep that order."""
    alpha = make_plugin("alpha", "b", "a")
    beta = make_plugin("beta", "z")
    gamma = make_plugin("gamma")
    registry = PluginRegistry([beta, alpha, gamma])
    assert registry.plugins() == [beta, alpha, gamma]
    assert [t.name for t in registry.tools()] == ["beta.z", "alpha.b", "alpha.a"]


def test_duplicate_plugin_raises_and_keeps_the_first() -> None:
    """A second plugin with a registered name raises RegistrationError; the first stays."""
    first = make_plugin("alpha", "one")
    registry = PluginRegistry([first])
    with pytest.raises(errors.RegistrationError, match="'alpha' is already registered"):
        registry.add(make_plugin("alpha", "other"))
    assert registry.plugins() == [first]
    with pytest.raises(errors.ToolNotFound):
        registry.tool("alpha.other")


def test_clashing_tools_across_plugins_raise_and_register_nothing() -> None:
    """A plugin bringing a tool name already registered is refused as a whole."""
    alpha = make_plugin("alpha", "one")
    beta = make_plugin("beta", "mine")
    beta.tools["one"] = alpha.tools["one"]  # a tool named alpha.one, carried by beta
    registry = PluginRegistry([alpha])
    with pytest.raises(errors.RegistrationError, match=r"tools already registered: alpha\.one"):
        registry.add(beta)
    assert registry.plugins() == [alpha]
    assert [t.name for t in registry.tools()] == ["alpha.one"]
    with pytest.raises(errors.ToolNotFound):
        registry.tool("beta.mine")
    with pytest.raises(errors.NotFound):
        registry.status("beta")


def test_a_tool_declared_after_its_plugin_was_registered_is_refused() -> None:
    """Declaring a tool on a registered plugin raises RegistrationError, so a plugin's status
    never lists a tool the registry cannot run; a plugin refused by a registry may still grow."""
    alpha = make_plugin("alpha", "one")
    registry = PluginRegistry([alpha])

    async def late(inp: Text, ctx: ToolContext) -> Text:
        return inp

    with pytest.raises(errors.RegistrationError, match="plugin 'alpha' is registered already"):
        alpha.tool(name="two")(late)
    assert registry.status("alpha").tools == ("alpha.one",)
    assert list(alpha.tools) == ["one"]
    clash = make_plugin("alpha", "one")
    with pytest.raises(errors.RegistrationError, match="already registered"):
        registry.add(clash)
    clash.tool(name="two")(late)
    assert list(clash.tools) == ["one", "two"]


def test_unknown_tool_raises_tool_not_found() -> None:
    """tool() with an unknown name raises ToolNotFound naming the tool."""
    registry = PluginRegistry([make_plugin("alpha", "one")])
    with pytest.raises(errors.ToolNotFound, match=r"alpha\.two") as info:
        registry.tool("alpha.two")
    assert info.value.tool == "alpha.two"
    assert (info.value.type, info.value.status) == ("tool_not_found", 404)


def test_lifecycle_defaults_to_loaded() -> None:
    """A freshly added plugin is loaded, with no reason, changed when it was loaded."""
    registry = PluginRegistry([make_plugin("alpha", "one", version="2.5.0")])
    status = registry.status("alpha")
    assert status.name == "alpha"
    assert status.version == "2.5.0"
    assert status.state is PluginLifecycle.LOADED
    assert status.reason is None
    assert isinstance(status.loaded_at, datetime)
    assert status.loaded_at.tzinfo is not None
    assert status.changed_at == status.loaded_at


def test_set_lifecycle_with_reason() -> None:
    """set_lifecycle() moves the plugin to a state with a reason and updates changed_at."""
    registry = PluginRegistry([make_plugin("alpha", "one")])
    loaded = registry.status("alpha")
    registry.set_lifecycle("alpha", PluginLifecycle.FAILED, "init raised OSError")
    status = registry.status("alpha")
    assert status.state is PluginLifecycle.FAILED
    assert status.reason == "init raised OSError"
    assert status.loaded_at == loaded.loaded_at
    assert status.changed_at >= loaded.changed_at
    registry.set_lifecycle("alpha", PluginLifecycle.RUNNING)
    status = registry.status("alpha")
    assert (status.state, status.reason) == (PluginLifecycle.RUNNING, None)


def test_status_of_unknown_plugin_raises_not_found() -> None:
    """status() and set_lifecycle() of an unknown plugin raise NotFound (not ToolNotFound)."""
    registry = PluginRegistry()
    with pytest.raises(errors.NotFound) as info:
        registry.status("ghost")
    assert type(info.value) is errors.NotFound
    assert info.value.plugin == "ghost"
    assert (info.value.type, info.value.status) == ("not_found", 404)
    with pytest.raises(errors.NotFound):
        registry.set_lifecycle("ghost", PluginLifecycle.RUNNING)


def test_metrics_of_unknown_tool_raises_tool_not_found() -> None:
    """metrics() of an unknown tool raises ToolNotFound."""
    with pytest.raises(errors.ToolNotFound):
        PluginRegistry().metrics("alpha.one")


def test_metrics_count_executions_per_tool() -> None:
    """begin_execution/record_execution feed that tool's metrics and no other's."""
    registry = PluginRegistry([make_plugin("alpha", "one", "two")])
    assert registry.metrics("alpha.one").calls == 0
    registry.begin_execution("alpha.one")
    assert registry.metrics("alpha.one").in_flight == 1
    registry.record_execution("alpha.one", "succeeded", 0.5)
    registry.begin_execution("alpha.one")
    registry.record_execution("alpha.one", "timeout", 1.5)
    one = registry.metrics("alpha.one")
    assert (one.tool, one.calls, one.successes, one.timeouts, one.in_flight) == (
        "alpha.one",
        2,
        1,
        1,
        0,
    )
    assert one.mean_ms == 1000.0
    assert registry.metrics("alpha.two").calls == 0


def _ended(tool: str) -> JobRecord:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return JobRecord(
        id="j1",
        tool=tool,
        plugin=tool.partition(".")[0],
        state=JobState.SUCCEEDED,
        input={},
        created_at=now,
        started_at=now,
        finished_at=now,
    )


def test_series_holds_a_tool_s_ended_jobs_and_histograms() -> None:
    """job_started and job_ended feed that tool's series; a tool no longer loaded is skipped."""
    registry = PluginRegistry([make_plugin("alpha", "one")])
    registry.job_started(_ended("alpha.one"))
    registry.job_ended(_ended("alpha.one"))
    registry.job_ended(_ended("gone.tool"))
    registry.begin_execution("alpha.one")
    registry.record_execution("alpha.one", "succeeded", 0.5)
    series = registry.series("alpha.one")
    assert series.jobs_by_outcome == {"succeeded": 1}
    assert (series.queue_waits.count, series.queue_waits.sum) == (1, 0.0)
    assert (series.durations.count, series.durations.sum) == (1, 0.5)


def test_series_of_unknown_tool_raises_tool_not_found() -> None:
    """series() of an unknown tool raises ToolNotFound."""
    with pytest.raises(errors.ToolNotFound):
        PluginRegistry().series("alpha.one")
