"""GET /metrics: the registry's metrics, the supervisor's load, the live streams and the store's
latency, in Prometheus text format.

A custom collector reads the live figures at scrape time, so nothing is counted twice, nothing
from prometheus_client runs on a job's path, and no process-global prometheus registry is
involved. docs/observability.md lists every family.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from jobwarden import __version__
from jobwarden.histogram import HistogramSnapshot
from jobwarden.plugins.circuit import CircuitState
from jobwarden.plugins.metrics import SUCCEEDED
from jobwarden.plugins.registry import PluginLifecycle, PluginRegistry
from jobwarden.store.timings import StoreTimings
from jobwarden.transport.auth import READ
from jobwarden.transport.context import SUPERVISOR, WEBSOCKETS, authorize
from jobwarden.transport.streams import SSE_STREAMS

routes = web.RouteTableDef()


class JobwardenCollector(Collector):
    """Every jobwarden metric family of one application, read when collected."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def collect(self) -> Iterator[Metric]:
        """Every metric family, read now."""
        app = self._app
        sup = app[SUPERVISOR]
        info = GaugeMetricFamily(
            "jobwarden_build_info", "Always 1; the version serving", labels=["version"]
        )
        info.add_metric([__version__], 1)
        yield info
        yield from _per_tool(sup.registry)
        yield _plugin_states(sup.registry)
        stats = sup.statistics()
        yield GaugeMetricFamily("jobwarden_queue_depth", "Jobs waiting to run", value=stats.queued)
        yield GaugeMetricFamily("jobwarden_jobs_running", "Jobs running now", value=stats.running)
        yield CounterMetricFamily(
            "jobwarden_runner_restarts", "ToolRunners restarted after a crash", value=stats.restarts
        )
        yield GaugeMetricFamily(
            "jobwarden_event_subscribers",
            "Event subscribers attached (in-process, websocket and SSE)",
            value=stats.subscribers,
        )
        streams = GaugeMetricFamily(
            "jobwarden_stream_connections", "Open event streams by protocol", labels=["protocol"]
        )
        streams.add_metric(["websocket"], len(app[WEBSOCKETS]))
        streams.add_metric(["sse"], len(app[SSE_STREAMS]))
        yield streams
        timings = getattr(sup.store, "timings", None)
        if isinstance(timings, StoreTimings):
            store = HistogramMetricFamily(
                "jobwarden_store_operation_duration_seconds",
                "Store operations by kind; writes as their callers waited (group commit included)",
                labels=["operation"],
            )
            for operation, snapshot in timings.snapshot().items():
                _add_histogram(store, [operation], snapshot)
            yield store


def _per_tool(registry: PluginRegistry) -> Iterable[Metric]:
    jobs = CounterMetricFamily(
        "jobwarden_jobs", "Jobs that ended, by tool and outcome", labels=["tool", "outcome"]
    )
    executions = CounterMetricFamily(
        "jobwarden_executions",
        "Tool executions (attempts) that ended, by tool and outcome",
        labels=["tool", "outcome"],
    )
    durations = HistogramMetricFamily(
        "jobwarden_job_duration_seconds", "Execution time of each attempt", labels=["tool"]
    )
    waits = HistogramMetricFamily(
        "jobwarden_job_queue_wait_seconds",
        "Time from submit to the start of a job's first attempt",
        labels=["tool"],
    )
    in_flight = GaugeMetricFamily(
        "jobwarden_jobs_in_flight", "Executions running now", labels=["tool"]
    )
    abandoned = GaugeMetricFamily(
        "jobwarden_abandoned_threads",
        "Threads of thread-mode calls abandoned (timed out or cancelled) and still running",
        labels=["tool"],
    )
    circuits = GaugeMetricFamily(
        "jobwarden_circuit_state",
        "1 for the state each tool's circuit breaker is in, 0 for the others",
        labels=["tool", "state"],
    )
    for tool in registry.tools():
        name = tool.name
        snapshot = registry.metrics(name)
        series = registry.series(name)
        for outcome, count in sorted(series.jobs_by_outcome.items()):
            jobs.add_metric([name, outcome], count)
        executions.add_metric([name, SUCCEEDED], snapshot.successes)
        for outcome, count in sorted(snapshot.failures_by_type.items()):
            executions.add_metric([name, outcome], count)
        _add_histogram(durations, [name], series.durations)
        _add_histogram(waits, [name], series.queue_waits)
        in_flight.add_metric([name], snapshot.in_flight)
        abandoned.add_metric([name], snapshot.abandoned_threads)
        if snapshot.circuit is not None:
            for state in CircuitState:
                circuits.add_metric([name, state.value], float(state is snapshot.circuit.state))
    return (jobs, executions, durations, waits, in_flight, abandoned, circuits)


def _plugin_states(registry: PluginRegistry) -> Metric:
    states = GaugeMetricFamily(
        "jobwarden_plugin_state",
        "1 for the lifecycle state each plugin is in, 0 for the others",
        labels=["plugin", "state"],
    )
    for plugin in registry.plugin_names():
        current = registry.status(plugin).state
        for state in PluginLifecycle:
            states.add_metric([plugin, state.value], float(state is current))
    return states


def _add_histogram(
    family: HistogramMetricFamily, labels: list[str], snapshot: HistogramSnapshot
) -> None:
    bounds = [repr(bound) for bound in snapshot.bounds] + ["+Inf"]
    family.add_metric(labels, list(zip(bounds, snapshot.cumulative, strict=True)), snapshot.sum)


PROMETHEUS = web.AppKey("prometheus", CollectorRegistry)


def prometheus_registry(app: web.Application) -> CollectorRegistry:
    """A registry of its own holding only this application's collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobwardenCollector(app))
    return registry


@routes.get("/metrics")
async def metrics_text(request: web.Request) -> web.Response:
    """The Prometheus text exposition."""
    authorize(request, READ)
    body = generate_latest(request.app[PROMETHEUS])
    response = web.Response(body=body)
    response.content_type = "text/plain"
    response.headers["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
    return response
