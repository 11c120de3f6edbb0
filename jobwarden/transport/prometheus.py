"""GET /metrics: the registry's metrics and the supervisor's load in Prometheus text format.

A custom collector reads the live figures at scrape time, so nothing is counted twice and no
process-global prometheus registry is involved.
"""

from __future__ import annotations

from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from jobwarden.actors.supervisor import Supervisor
from jobwarden.plugins.metrics import SUCCEEDED
from jobwarden.transport.auth import READ
from jobwarden.transport.context import authorize

routes = web.RouteTableDef()


class SupervisorCollector(Collector):
    """Per-tool counters and gauges, and the supervisor's queue, runners and subscribers."""

    def __init__(self, supervisor: Supervisor) -> None:
        self._sup = supervisor

    def collect(self) -> Iterator[Metric]:
        """Every metric family, read now."""
        sup = self._sup
        jobs = CounterMetricFamily(
            "jobwarden_jobs", "Finished executions by tool and outcome", labels=["tool", "outcome"]
        )
        in_flight = GaugeMetricFamily(
            "jobwarden_jobs_in_flight", "Executions running now", labels=["tool"]
        )
        mean = GaugeMetricFamily(
            "jobwarden_job_duration_mean_seconds", "Mean execution time", labels=["tool"]
        )
        p95 = GaugeMetricFamily(
            "jobwarden_job_duration_p95_seconds",
            "95th percentile of recent execution times",
            labels=["tool"],
        )
        for tool in sup.registry.tools():
            snapshot = sup.registry.metrics(tool.name)
            jobs.add_metric([tool.name, SUCCEEDED], snapshot.successes)
            for outcome, count in sorted(snapshot.failures_by_type.items()):
                jobs.add_metric([tool.name, outcome], count)
            in_flight.add_metric([tool.name], snapshot.in_flight)
            if snapshot.mean_ms is not None:
                mean.add_metric([tool.name], snapshot.mean_ms / 1000)
            if snapshot.p95_ms is not None:
                p95.add_metric([tool.name], snapshot.p95_ms / 1000)
        yield from (jobs, in_flight, mean, p95)
        stats = sup.statistics()
        yield GaugeMetricFamily("jobwarden_queue_depth", "Jobs waiting to run", value=stats.queued)
        yield GaugeMetricFamily("jobwarden_jobs_running", "Jobs running now", value=stats.running)
        yield GaugeMetricFamily(
            "jobwarden_event_subscribers", "Attached event subscribers", value=stats.subscribers
        )
        yield CounterMetricFamily(
            "jobwarden_runner_restarts", "ToolRunners restarted after a crash", value=stats.restarts
        )


PROMETHEUS = web.AppKey("prometheus", CollectorRegistry)


def prometheus_registry(supervisor: Supervisor) -> CollectorRegistry:
    """A registry of its own holding only this supervisor's collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SupervisorCollector(supervisor))
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
