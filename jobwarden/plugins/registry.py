"""The plugin registry: which tools exist, each plugin's lifecycle, and each tool's metrics."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum

import msgspec

from jobwarden.errors import NotFound, RegistrationError, ToolNotFound
from jobwarden.plugins.metrics import MetricsCell, ToolMetrics
from jobwarden.plugins.tool import Plugin, Tool


class PluginLifecycle(StrEnum):
    """Where a plugin is in its life. Success and error are metrics, never lifecycle states."""

    LOADED = "loaded"
    INITIALIZED = "initialized"
    RUNNING = "running"
    FAILED = "failed"
    UNAVAILABLE = "unavailable"


class PluginStatus(msgspec.Struct, frozen=True):
    """A plugin's lifecycle state, why it is there, and since when."""

    name: str
    version: str
    state: PluginLifecycle
    reason: str | None
    loaded_at: datetime
    changed_at: datetime


class _Entry:
    __slots__ = ("changed_at", "loaded_at", "plugin", "reason", "state")

    def __init__(self, plugin: Plugin) -> None:
        self.plugin = plugin
        self.state = PluginLifecycle.LOADED
        self.reason: str | None = None
        self.loaded_at = self.changed_at = time.time()


class PluginRegistry:
    """Holds plugins and tools; counts each execution (begin_execution, record_execution)."""

    def __init__(self, plugins: Iterable[Plugin] = ()) -> None:
        self._plugins: dict[str, _Entry] = {}
        self._tools: dict[str, Tool] = {}
        self._metrics: dict[str, MetricsCell] = {}
        for plugin in plugins:
            self.add(plugin)

    def add(self, plugin: Plugin) -> None:
        """Register a plugin and all its tools; a name clash raises ``RegistrationError``."""
        if plugin.name in self._plugins:
            raise RegistrationError(f"plugin {plugin.name!r} is already registered")
        clashes = [t.name for t in plugin.tools.values() if t.name in self._tools]
        if clashes:
            raise RegistrationError(f"tools already registered: {', '.join(clashes)}")
        self._plugins[plugin.name] = _Entry(plugin)
        for tool in plugin.tools.values():
            self._tools[tool.name] = tool
            self._metrics[tool.name] = MetricsCell(tool.name)

    def tool(self, name: str) -> Tool:
        """The tool called ``name`` (``plugin.tool``), or ``ToolNotFound``."""
        try:
            return self._tools[name]
        except KeyError:
            raise ToolNotFound(f"no tool named {name!r}", tool=name) from None

    def tools(self) -> list[Tool]:
        """Every registered tool, in registration order."""
        return list(self._tools.values())

    def plugins(self) -> list[Plugin]:
        """Every registered plugin, in registration order."""
        return [entry.plugin for entry in self._plugins.values()]

    def plugin(self, name: str) -> Plugin:
        """The plugin called ``name``, or ``NotFound``."""
        return self._entry(name).plugin

    def status(self, plugin: str) -> PluginStatus:
        """The lifecycle state of ``plugin``."""
        entry = self._entry(plugin)
        return PluginStatus(
            name=plugin,
            version=entry.plugin.version,
            state=entry.state,
            reason=entry.reason,
            loaded_at=datetime.fromtimestamp(entry.loaded_at, UTC),
            changed_at=datetime.fromtimestamp(entry.changed_at, UTC),
        )

    def set_lifecycle(self, plugin: str, state: PluginLifecycle, reason: str | None = None) -> None:
        """Move ``plugin`` to ``state`` with an optional reason."""
        entry = self._entry(plugin)
        entry.state, entry.reason, entry.changed_at = state, reason, time.time()

    def begin_execution(self, tool: str) -> None:
        """Count an execution of ``tool`` as in flight."""
        self._metrics[tool].begin()

    def record_execution(self, tool: str, outcome: str, duration_s: float) -> None:
        """Count one finished execution: ``outcome`` is ``succeeded`` or an error type."""
        self._metrics[tool].finish(outcome, duration_s)

    def abandoned_threads(self, tool: str) -> int:
        """How many of ``tool``'s thread-mode calls were abandoned and still run."""
        return self._metrics[tool].abandoned_threads

    def adjust_abandoned(self, tool: str, delta: int) -> None:
        """Count a thread of ``tool`` abandoned (+1), or an abandoned one ended (-1); any thread."""
        self._metrics[tool].adjust_abandoned(delta)

    def metrics(self, tool: str) -> ToolMetrics:
        """A snapshot of ``tool``'s metrics, or ``ToolNotFound``."""
        self.tool(tool)
        return self._metrics[tool].snapshot()

    def _entry(self, plugin: str) -> _Entry:
        try:
            return self._plugins[plugin]
        except KeyError:
            raise NotFound(f"no plugin named {plugin!r}", plugin=plugin) from None
