"""The circuit breaker over HTTP: a refused submit, plugin health and the JSON metrics."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from jobwarden import Plugin, PluginRegistry
from tests.actors.test_circuit_breaker import flaky_plugin
from tests.fakes import Gates
from tests.plugins.test_circuit import FakeClock
from tests.transport.conftest import serve

pytestmark = pytest.mark.anyio


def flaky_only(gates: Gates) -> Iterable[Plugin]:
    """Just the ``flaky`` plugin, whose ``call`` tool has a breaker."""
    return [flaky_plugin()]


async def test_an_open_circuit_shows_in_submit_health_and_metrics() -> None:
    """A submit while open is a 200 failed job (circuit_open); health and metrics show why."""
    clock = FakeClock()
    async with serve(plugins=flaky_only, registry=PluginRegistry(clock=clock)) as srv:
        for _ in range(2):
            job = await srv.submit("alice", "flaky.call", {"fail": True}, wait=5)
            assert job["error"]["type"] == "plugin_error"
        refused = await srv.submit("alice", "flaky.call", {})
        health = await srv.get_json("alice", "/v1/plugins/flaky/health")
        listed = await srv.get_json("alice", "/v1/plugins")
        metrics = await srv.get_json("reader", "/v1/metrics")
        clock.now += 30
        trial = await srv.submit("alice", "flaky.call", {}, wait=5)
        closed = await srv.get_json("alice", "/v1/plugins/flaky/health")
    assert refused["state"] == "failed"
    assert refused["error"]["type"] == "circuit_open"
    assert health["state"] == "unavailable"
    assert health["reason"].startswith("flaky.call: circuit open: 2 consecutive failures")
    [circuit] = health["circuits"]
    assert circuit["tool"] == "flaky.call"
    assert circuit["state"] == "open"
    assert circuit["consecutive_failures"] == 2
    assert circuit["policy"] == {"failures": 2, "window_s": 60.0, "cooldown_s": 30.0}
    assert circuit["open_until"].startswith("1970-01-01T00:17:10")
    assert listed["plugins"][0]["state"] == "unavailable"
    tools = {m["tool"]: m for m in metrics["tools"]}
    assert tools["flaky.call"]["circuit"]["state"] == "open"
    assert tools["flaky.other"]["circuit"] is None
    assert trial["state"] == "succeeded"
    assert closed["state"] == "running"
    assert closed["circuits"][0]["state"] == "closed"
    assert closed["circuits"][0]["open_until"] is None
