"""The plugin registry: which tools exist, each plugin's lifecycle, and each tool's metrics."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum

import msgspec

from jobwarden.errors import NotFound, RegistrationError, ToolNotFound, printable
from jobwarden.histogram import HistogramSnapshot
from jobwarden.plugins.circuit import Circuit, CircuitState, CircuitStatus, Clock
from jobwarden.plugins.metrics import SUCCEEDED, MetricsCell, ToolMetrics, pooled_p95_ms
from jobwarden.plugins.tool import Plugin, Tool
from jobwarden.records import JobRecord

STOPPED = "the supervisor stopped"


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
    description: str = ""
    tools: tuple[str, ...] = ()


class ToolSeries(msgspec.Struct, frozen=True):
    """What Prometheus exposes of a tool beyond its ``ToolMetrics``: jobs ended by outcome, and
    the histograms of execution times and of first attempts' waits in the queue."""

    jobs_by_outcome: dict[str, int]
    durations: HistogramSnapshot
    queue_waits: HistogramSnapshot


def failed_name(source: str) -> str:
    """The name a plugin that failed to load from ``source`` is registered under: ``source``
    itself if it has a ``:`` (``module:attr``), else ``source`` quoted, made ``printable``.

    Failures and plugins share one name space, and a plugin's name never has a ``:`` or a quote,
    so a failure can never clash with a plugin (``--plugin builtin`` with builtin loaded). A
    command-line argument that is not UTF-8 arrives with lone surrogates, which JSON cannot hold.
    """
    return printable(source if ":" in source else repr(source))


class _Entry:
    """A registered plugin, or (``plugin`` None) one that failed to load, named by its source."""

    __slots__ = ("changed_at", "loaded_at", "plugin", "reason", "state")

    def __init__(self, plugin: Plugin | None) -> None:
        self.plugin = plugin
        self.state = PluginLifecycle.LOADED
        self.reason: str | None = None
        self.loaded_at = self.changed_at = time.time()


class PluginRegistry:
    """Holds plugins and tools; counts each execution (begin_execution, record_execution).

    Each outcome also feeds the tool's circuit breaker, if it has one; ``clock`` (wall-clock
    seconds, ``time.time`` by default) is what the breakers read, so tests can move it.
    """

    def __init__(self, plugins: Iterable[Plugin] = (), *, clock: Clock = time.time) -> None:
        self._plugins: dict[str, _Entry] = {}
        self._tools: dict[str, Tool] = {}
        self._metrics: dict[str, MetricsCell] = {}
        self._circuits: dict[str, Circuit] = {}
        self._clock = clock
        # Set by the supervisor as it starts: its startup hooks have been chosen by then.
        self._started = False
        for plugin in plugins:
            self.add(plugin)

    def add(self, plugin: Plugin) -> None:
        """Register a plugin and all its tools; a name clash raises ``RegistrationError``, and so
        does an add once a supervisor has started with this registry (see ``started``)."""
        self._check_open(plugin.name)
        if plugin.name in self._plugins:
            raise RegistrationError(f"plugin {plugin.name!r} is already registered")
        clashes = [t.name for t in plugin.tools.values() if t.name in self._tools]
        if clashes:
            raise RegistrationError(f"tools already registered: {', '.join(clashes)}")
        self._plugins[plugin.name] = _Entry(plugin)
        plugin.registered()
        for tool in plugin.tools.values():
            self._tools[tool.name] = tool
            self._metrics[tool.name] = MetricsCell(tool.name)
            if tool.circuit is not None:
                self._circuits[tool.name] = Circuit(tool.name, tool.circuit, self._clock)

    def add_failed(self, source: str, reason: str) -> None:
        """Record a plugin that could not be loaded (``source``: its ``module:attr``) as failed.

        It has no tools; it shows in ``plugin_names`` and ``status`` with the reason, named by
        ``failed_name(source)``.
        """
        name = failed_name(source)
        self._check_open(name)
        if name in self._plugins:
            raise RegistrationError(f"plugin {name!r} is already registered")
        entry = self._plugins[name] = _Entry(None)
        # The reason may quote the source, lone surrogates and all.
        entry.state, entry.reason = PluginLifecycle.FAILED, printable(reason)

    def started(self) -> None:
        """A supervisor starts with this registry: it runs the startup hooks of the plugins
        registered now, and only theirs, so ``add`` refuses any other from now on."""
        self._started = True

    def tool(self, name: str) -> Tool:
        """The tool called ``name`` (``plugin.tool``), or ``ToolNotFound``."""
        try:
            return self._tools[name]
        except KeyError:
            raise ToolNotFound(f"no tool named {name!r}", tool=name) from None

    def available_tool(self, name: str) -> Tool:
        """The tool called ``name`` if it may take jobs: ``ToolNotFound`` if there is none, or
        if its plugin failed (to start), with the plugin's reason."""
        tool = self.tool(name)
        entry = self._plugins[tool.plugin]
        if entry.state is PluginLifecycle.FAILED:
            raise ToolNotFound(
                f"tool {name!r} is unavailable: plugin {tool.plugin!r} failed: {entry.reason}",
                details={"reason": "plugin_failed"},
                plugin=tool.plugin,
                tool=name,
            )
        return tool

    def tools(self) -> list[Tool]:
        """Every registered tool, in registration order."""
        return list(self._tools.values())

    def available_tools(self) -> list[Tool]:
        """The tools that may take jobs (not those of a plugin that failed), in order."""
        failed = PluginLifecycle.FAILED
        return [t for t in self._tools.values() if self._plugins[t.plugin].state is not failed]

    def plugins(self) -> list[Plugin]:
        """Every loaded plugin, in registration order."""
        return [entry.plugin for entry in self._plugins.values() if entry.plugin is not None]

    def plugin_names(self) -> list[str]:
        """The name of every plugin, loaded or failed to load, in registration order."""
        return list(self._plugins)

    def plugin(self, name: str) -> Plugin:
        """The plugin called ``name``, or ``NotFound`` (also for one that failed to load)."""
        entry = self._entry(name)
        if entry.plugin is None:
            raise NotFound(f"plugin {name!r} failed to load: {entry.reason}", plugin=name)
        return entry.plugin

    def status(self, plugin: str) -> PluginStatus:
        """The lifecycle state of ``plugin``: a running one is unavailable while a circuit of
        one of its tools is not closed, with the circuits' reasons."""
        entry = self._entry(plugin)
        loaded = entry.plugin
        state, reason = entry.state, entry.reason
        if state is PluginLifecycle.RUNNING:
            tripped = [
                f"{c.tool}: {c.reason}"
                for c in self.circuits(plugin)
                if c.state is not CircuitState.CLOSED
            ]
            if tripped:
                state, reason = PluginLifecycle.UNAVAILABLE, "; ".join(tripped)
        return PluginStatus(
            name=plugin,
            version=loaded.version if loaded else "",
            state=state,
            reason=reason,
            loaded_at=datetime.fromtimestamp(entry.loaded_at, UTC),
            changed_at=datetime.fromtimestamp(entry.changed_at, UTC),
            description=loaded.description if loaded else "",
            tools=tuple(t.name for t in loaded.tools.values()) if loaded else (),
        )

    def set_lifecycle(self, plugin: str, state: PluginLifecycle, reason: str | None = None) -> None:
        """Move ``plugin`` to ``state`` with an optional reason."""
        entry = self._entry(plugin)
        entry.state, entry.reason, entry.changed_at = state, reason, time.time()

    def record_hook(self, plugin: str, hook: str, error: str | None) -> None:
        """Record how ``plugin``'s ``startup`` or ``shutdown`` hook ended (``error``: why it
        failed). A startup makes it initialized, or failed with the reason; a shutdown leaves
        it unavailable, with the hook's error if any."""
        if hook == "startup":
            if error is None:
                self.set_lifecycle(plugin, PluginLifecycle.INITIALIZED)
            else:
                self.set_lifecycle(plugin, PluginLifecycle.FAILED, f"startup hook {error}")
            return
        reason = STOPPED if error is None else f"{STOPPED}; its shutdown hook {error}"
        self.set_lifecycle(plugin, PluginLifecycle.UNAVAILABLE, reason)

    def begin_execution(self, tool: str) -> None:
        """Count an execution of ``tool`` as in flight."""
        self._metrics[tool].begin()

    def record_execution(self, tool: str, outcome: str, duration_s: float) -> None:
        """Count one finished execution: ``outcome`` is ``succeeded`` or an error type."""
        self._metrics[tool].finish(outcome, duration_s)
        circuit = self._circuits.get(tool)
        if circuit is None:
            return
        if outcome == SUCCEEDED:
            circuit.succeeded()
        else:
            circuit.failed(outcome)

    def job_started(self, record: JobRecord) -> None:
        """A job entered running: time its wait in the queue (first attempts only)."""
        self._metrics[record.tool].started(record)

    def job_ended(self, record: JobRecord) -> None:
        """A job reached its terminal state; one whose tool is not loaded is not counted."""
        cell = self._metrics.get(record.tool)
        if cell is not None:
            cell.ended_job(record)

    def series(self, tool: str) -> ToolSeries:
        """``tool``'s outcome counts and histograms as of now, or ``ToolNotFound``."""
        self.tool(tool)
        cell = self._metrics[tool]
        return ToolSeries(
            jobs_by_outcome=dict(cell.ended),
            durations=cell.histogram.snapshot(),
            queue_waits=cell.queue_waits.snapshot(),
        )

    def refuses(self, tool: str) -> str | None:
        """Why ``tool``'s circuit is open right now, or None (no side effect, unlike admit)."""
        circuit = self._circuits.get(tool)
        if circuit is None or circuit.state is not CircuitState.OPEN:
            return None
        return circuit.status().reason or "the circuit is open"

    def admit(self, tool: str, job_id: str | None = None) -> str | None:
        """None if a call of ``tool`` may run now; else why its open circuit refuses it.

        ``job_id`` names the job asking, for ``release``.
        """
        circuit = self._circuits.get(tool)
        return None if circuit is None else circuit.admit(job_id)

    def release(self, tool: str, job_id: str) -> None:
        """The job ``admit`` let through will not run: a half-open trial it held is free again."""
        circuit = self._circuits.get(tool)
        if circuit is not None:
            circuit.release(job_id)

    def circuits(self, plugin: str) -> list[CircuitStatus]:
        """The circuit of each tool of ``plugin`` that has a breaker."""
        loaded = self._entry(plugin).plugin
        tools = loaded.tools.values() if loaded else ()
        return [self._circuits[t.name].status() for t in tools if t.name in self._circuits]

    def abandoned_threads(self, tool: str) -> int:
        """How many of ``tool``'s thread-mode calls were abandoned and still run."""
        return self._metrics[tool].abandoned_threads

    def adjust_abandoned(self, tool: str, delta: int) -> None:
        """Count a thread of ``tool`` abandoned (+1), or an abandoned one ended (-1); any thread."""
        self._metrics[tool].adjust_abandoned(delta)

    def p95_ms(self, plugin: str) -> float | None:
        """The p95 duration of ``plugin``'s recent calls, over all its tools together."""
        return pooled_p95_ms(self._metrics[tool] for tool in self.status(plugin).tools)

    def metrics(self, tool: str) -> ToolMetrics:
        """A snapshot of ``tool``'s metrics (with its circuit, if any), or ``ToolNotFound``."""
        self.tool(tool)
        snapshot = self._metrics[tool].snapshot()
        circuit = self._circuits.get(tool)
        if circuit is None:
            return snapshot
        return msgspec.structs.replace(snapshot, circuit=circuit.status())

    def _entry(self, plugin: str) -> _Entry:
        try:
            return self._plugins[plugin]
        except KeyError:
            raise NotFound(f"no plugin named {plugin!r}", plugin=plugin) from None

    def _check_open(self, plugin: str) -> None:
        if self._started:
            raise RegistrationError(
                f"plugin {plugin!r} cannot be added: a supervisor has started with this"
                " registry and ran the startup hooks of the plugins it held then; register every"
                " plugin before the supervisor starts"
            )
