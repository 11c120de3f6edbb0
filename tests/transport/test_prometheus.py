"""GET /metrics scraped from a real server after known jobs, read by prometheus-client's parser."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from jobwarden import Plugin, PluginRegistry
from jobwarden.store.sqlite import SqliteStore
from tests.actors.test_circuit_breaker import flaky_plugin
from tests.fakes import Gates
from tests.plugins.test_circuit import FakeClock
from tests.transport.conftest import Server, auth, default_plugins, next_sse, serve

pytestmark = pytest.mark.anyio

Families = dict[str, Metric]


def with_flaky(gates: Gates) -> Iterable[Plugin]:
    """The transport tests' plugins and ``flaky``, whose ``call`` tool has a circuit breaker."""
    return [*default_plugins(gates), flaky_plugin()]


async def scrape(srv: Server) -> Families:
    """GET /metrics as a reader, parsed into families by name."""
    async with srv.http.get(srv.url("/metrics"), headers=auth("reader")) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = await resp.text()
    return {family.name: family for family in text_string_to_metric_families(text)}


def values(family: Metric, sample: str, *label_names: str) -> dict[tuple[str, ...], float]:
    """The values of ``family``'s samples called ``sample``, keyed by the given labels' values."""
    return {
        tuple(s.labels[name] for name in label_names): s.value
        for s in family.samples
        if s.name == sample
    }


def gauge(families: Families, name: str, **labels: str) -> float:
    """The value of the one sample of gauge ``name`` with exactly these labels."""
    family = families[name]
    assert family.type == "gauge", family
    [value] = [s.value for s in family.samples if s.labels == labels]
    return value


def check_histograms(family: Metric, label: str) -> dict[str, tuple[float, float]]:
    """Assert every series of ``family`` is a sound histogram; return (count, sum) by label.

    Sound: bucket bounds strictly increasing and ending at +Inf, cumulative counts
    non-decreasing, the +Inf bucket equal to _count, and a _sum present.
    """
    assert family.type == "histogram", family
    buckets: dict[str, list[tuple[float, float]]] = {}
    counts: dict[str, float] = {}
    sums: dict[str, float] = {}
    for s in family.samples:
        key = s.labels[label]
        if s.name.endswith("_bucket"):
            buckets.setdefault(key, []).append((float(s.labels["le"]), s.value))
        elif s.name.endswith("_count"):
            counts[key] = s.value
        elif s.name.endswith("_sum"):
            sums[key] = s.value
    assert set(buckets) == set(counts) == set(sums)
    for key, series in buckets.items():
        bounds = [bound for bound, _ in series]
        assert bounds == sorted(set(bounds)), (key, bounds)
        assert math.isinf(bounds[-1])
        cumulative = [count for _, count in series]
        assert cumulative == sorted(cumulative), (key, cumulative)
        assert cumulative[-1] == counts[key], key
        assert sums[key] >= 0
    return {key: (counts[key], sums[key]) for key in counts}


async def test_metrics_after_known_jobs(tmp_path: Path) -> None:
    """Successes, a failure, a timeout, cancels (queued and running) and a refused call show in
    their counters, histograms and gauges, with the Prometheus types and labels."""
    clock = FakeClock()
    store = SqliteStore(tmp_path / "jobs.db")
    async with serve(
        plugins=with_flaky, concurrency=1, registry=PluginRegistry(clock=clock), store=store
    ) as srv:
        for text in ("a", "b"):
            await srv.submit("alice", "builtin.echo", {"text": text}, wait=5)
        await srv.submit("alice", "builtin.fail", {}, wait=5)
        timed_out = await srv.submit("alice", "fake.hang", {"key": "never"}, wait=5)
        assert timed_out["state"] == "timed_out"
        for _ in range(2):
            await srv.submit("alice", "flaky.call", {"fail": True}, wait=5)
        refused = await srv.submit("alice", "flaky.call", {})
        assert refused["error"]["type"] == "circuit_open"

        held = await srv.hold("alice", "held")
        waiting = await srv.submit("alice", "fake.gate", {"key": "waiting"})
        dropped = await srv.submit("alice", "fake.gate", {"key": "dropped"})
        async with srv.http.post(
            srv.url(f"/v1/jobs/{dropped['id']}/cancel"), headers=auth("alice")
        ) as resp:
            assert resp.status == 200
        async with (
            srv.http.ws_connect(srv.ws_url("/v1/events?since=0"), headers=auth("alice")) as ws,
            srv.http.get(
                srv.url("/v1/events?since=0"),
                headers={**auth("alice"), "Accept": "text/event-stream"},
            ) as sse,
        ):
            await ws.receive_json()  # both streams are subscribed once they deliver an event
            assert await next_sse(sse) is not None
            during = await scrape(srv)
        async with srv.http.post(
            srv.url(f"/v1/jobs/{held['id']}/cancel"), headers=auth("alice")
        ) as resp:
            assert resp.status == 200
        srv.gates.open("waiting")
        await srv.finished(waiting["id"])
        after = await scrape(srv)

    assert gauge(during, "jobwarden_stream_connections", protocol="websocket") == 1
    assert gauge(during, "jobwarden_stream_connections", protocol="sse") == 1
    assert gauge(during, "jobwarden_event_subscribers") == 2
    assert gauge(during, "jobwarden_queue_depth") == 1
    assert gauge(during, "jobwarden_jobs_running") == 1
    assert gauge(during, "jobwarden_jobs_in_flight", tool="fake.gate") == 1
    assert gauge(after, "jobwarden_jobs_in_flight", tool="fake.gate") == 0
    assert gauge(after, "jobwarden_queue_depth") == 0

    jobs = after["jobwarden_jobs"]
    assert jobs.type == "counter"
    assert values(jobs, "jobwarden_jobs_total", "tool", "outcome") == {
        ("builtin.echo", "succeeded"): 2,
        ("builtin.fail", "plugin_error"): 1,
        ("fake.hang", "timeout"): 1,
        ("flaky.call", "plugin_error"): 2,
        ("flaky.call", "circuit_open"): 1,
        ("fake.gate", "cancelled"): 2,
        ("fake.gate", "succeeded"): 1,
    }
    executions = after["jobwarden_executions"]
    assert executions.type == "counter"
    by_outcome = values(executions, "jobwarden_executions_total", "tool", "outcome")
    assert by_outcome[("fake.gate", "cancelled")] == 1  # the queued cancel never executed
    assert by_outcome[("fake.gate", "succeeded")] == 1
    assert by_outcome[("fake.hang", "timeout")] == 1
    assert ("flaky.call", "circuit_open") not in by_outcome

    durations = check_histograms(after["jobwarden_job_duration_seconds"], "tool")
    assert durations["builtin.echo"][0] == 2
    assert durations["fake.gate"][0] == 2
    assert durations["fake.hang"][0] == 1
    assert durations["fake.hang"][1] > 0
    assert durations["builtin.sleep"] == (0, 0)
    waits = check_histograms(after["jobwarden_job_queue_wait_seconds"], "tool")
    assert waits["builtin.echo"][0] == 2
    assert waits["fake.gate"][0] == 2  # the dropped job never started
    store_ops = check_histograms(after["jobwarden_store_operation_duration_seconds"], "operation")
    assert store_ops["put"][0] == 10  # one per job
    assert store_ops["transition"][0] == 17  # two per job that ran, one per queued cancel
    assert store_ops["commit"][0] >= 1

    assert gauge(after, "jobwarden_circuit_state", tool="flaky.call", state="open") == 1
    assert gauge(after, "jobwarden_circuit_state", tool="flaky.call", state="closed") == 0
    assert not [
        s for s in after["jobwarden_circuit_state"].samples if s.labels["tool"] != "flaky.call"
    ]
    assert gauge(after, "jobwarden_abandoned_threads", tool="fake.stuck") == 0
    assert gauge(after, "jobwarden_plugin_state", plugin="builtin", state="running") == 1
    assert gauge(after, "jobwarden_plugin_state", plugin="builtin", state="failed") == 0
    assert gauge(after, "jobwarden_plugin_state", plugin="flaky", state="unavailable") == 1
    restarts = after["jobwarden_runner_restarts"]
    assert restarts.type == "counter"
    assert values(restarts, "jobwarden_runner_restarts_total") == {(): 0}
    [info] = after["jobwarden_build_info"].samples
    assert info.value == 1
    assert info.labels["version"]


async def test_the_memory_store_has_no_latency_family() -> None:
    """A store that keeps no timings (the memory store) adds no store histogram to the scrape."""
    async with serve() as srv:
        families = await scrape(srv)
    assert "jobwarden_store_operation_duration_seconds" not in families
    assert "jobwarden_jobs" in families


async def test_metrics_need_a_read_key() -> None:
    """Without a key /metrics is 401 with an error envelope, like every other read."""
    async with serve() as srv, srv.http.get(srv.url("/metrics")) as resp:
        assert resp.status == 401
        body = await resp.json()
    assert body["error"]["type"] == "unauthorized"
