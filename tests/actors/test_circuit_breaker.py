"""The circuit breaker in the supervisor: an open circuit fails submits fast with circuit_open."""

from __future__ import annotations

import msgspec
import pytest

from jobwarden import JobState, Plugin, PluginLifecycle, PluginRegistry, Supervisor, ToolContext
from jobwarden.plugins.circuit import CircuitState
from tests.plugins.test_circuit import FakeClock

pytestmark = pytest.mark.anyio


class Ask(msgspec.Struct):
    """Whether the call should fail."""

    fail: bool = False


class Done(msgspec.Struct):
    """A successful call's answer."""

    ok: bool


class Broken(RuntimeError):
    """Raised by ``flaky.call`` on request."""


def flaky_plugin() -> Plugin:
    """``flaky.call`` opens its circuit after 2 failures within 60 s, for 30 s."""
    plugin = Plugin("flaky", version="1.0.0")

    @plugin.tool(circuit_failures=2)
    async def call(inp: Ask, ctx: ToolContext) -> Done:
        if inp.fail:
            raise Broken("asked to fail")
        return Done(ok=True)

    @plugin.tool()
    async def other(inp: Ask, ctx: ToolContext) -> Done:
        return Done(ok=True)

    return plugin


async def fail_twice(sup: Supervisor) -> None:
    """Run two failing calls to completion."""
    for _ in range(2):
        rec = await sup.submit("flaky.call", {"fail": True})
        done = await sup.wait(rec.id, timeout=10)
        assert done.error is not None
        assert done.error.type == "plugin_error"


async def test_an_open_circuit_creates_jobs_already_failed_with_circuit_open() -> None:
    """After two failures a submit returns a failed circuit_open job with one failed event."""
    clock = FakeClock()
    registry = PluginRegistry([flaky_plugin()], clock=clock)
    async with Supervisor(registry=registry) as sup:
        await fail_twice(sup)
        refused = await sup.submit("flaky.call", {})
        assert refused.state is JobState.FAILED
        assert refused.error is not None
        assert refused.error.type == "circuit_open"
        assert "2 consecutive failures within 60s (last: plugin_error)" in refused.error.message
        assert (refused.error.job_id, refused.error.tool) == (refused.id, "flaky.call")
        assert refused.finished_at == refused.created_at
        assert await sup.wait(refused.id, timeout=10) == refused
        async with sup.subscribe(job_id=refused.id) as events:
            kinds = [event.type async for event in events]
        assert kinds == ["jobwarden.job.failed"]
        assert await sup.run("flaky.other", {}) == {"ok": True}
        assert sup.registry.metrics("flaky.call").calls == 2
        assert sup.statistics().queued == 0


async def test_health_and_metrics_show_the_open_circuit() -> None:
    """The plugin is unavailable with the circuit's reason; metrics carry the circuit."""
    clock = FakeClock()
    registry = PluginRegistry([flaky_plugin()], clock=clock)
    async with Supervisor(registry=registry) as sup:
        await fail_twice(sup)
        status = sup.registry.status("flaky")
        assert status.state is PluginLifecycle.UNAVAILABLE
        assert status.reason is not None
        assert status.reason.startswith("flaky.call: circuit open: 2 consecutive failures")
        circuit = sup.registry.metrics("flaky.call").circuit
        assert circuit is not None
        assert circuit.state is CircuitState.OPEN
        assert circuit.open_until is not None
        assert circuit.open_until.timestamp() == clock.now + 30
        assert sup.registry.metrics("flaky.other").circuit is None
        assert [c.tool for c in sup.registry.circuits("flaky")] == ["flaky.call"]


async def test_a_successful_trial_after_the_cooldown_closes_the_circuit() -> None:
    """Half-open lets one trial run; its success closes the circuit and the plugin runs again."""
    clock = FakeClock()
    registry = PluginRegistry([flaky_plugin()], clock=clock)
    async with Supervisor(registry=registry) as sup:
        await fail_twice(sup)
        clock.now += 30
        assert sup.registry.circuits("flaky")[0].state is CircuitState.HALF_OPEN
        assert sup.registry.status("flaky").state is PluginLifecycle.UNAVAILABLE
        trial = await sup.submit("flaky.call", {})
        assert trial.state is JobState.QUEUED
        second = await sup.submit("flaky.call", {})
        assert second.error is not None
        assert second.error.type == "circuit_open"
        assert "a trial call is deciding" in second.error.message
        done = await sup.wait(trial.id, timeout=10)
        assert done.state is JobState.SUCCEEDED
        assert sup.registry.circuits("flaky")[0].state is CircuitState.CLOSED
        assert sup.registry.status("flaky").state is PluginLifecycle.RUNNING
        assert await sup.run("flaky.call", {}) == {"ok": True}


async def test_a_failed_trial_opens_the_circuit_again() -> None:
    """Half-open's trial failing re-opens the circuit for another cool-down."""
    clock = FakeClock()
    registry = PluginRegistry([flaky_plugin()], clock=clock)
    async with Supervisor(registry=registry) as sup:
        await fail_twice(sup)
        clock.now += 31
        trial = await sup.submit("flaky.call", {"fail": True})
        done = await sup.wait(trial.id, timeout=10)
        assert done.error is not None
        assert done.error.type == "plugin_error"
        circuit = sup.registry.circuits("flaky")[0]
        assert circuit.state is CircuitState.OPEN
        assert circuit.reason == "circuit open: the trial call failed (plugin_error)"
        refused = await sup.submit("flaky.call", {})
        assert refused.error is not None
        assert refused.error.type == "circuit_open"


async def test_an_idempotent_resubmit_returns_the_earlier_job_not_a_refusal() -> None:
    """An idempotency key already used returns its job even while the circuit is open."""
    clock = FakeClock()
    registry = PluginRegistry([flaky_plugin()], clock=clock)
    async with Supervisor(registry=registry) as sup:
        first = await sup.submit("flaky.call", {"fail": True}, idempotency_key="k")
        await sup.wait(first.id, timeout=10)
        second = await sup.submit("flaky.call", {"fail": True})
        await sup.wait(second.id, timeout=10)
        assert sup.registry.circuits("flaky")[0].state is CircuitState.OPEN
        again = await sup.submit("flaky.call", {"fail": True}, idempotency_key="k")
        assert again.id == first.id
        assert again.error is not None
        assert again.error.type == "plugin_error"


async def test_a_resubmitted_key_leaves_the_half_open_trial_to_the_next_new_job() -> None:
    """After the cool-down, a resubmit answered with its key's earlier job runs nothing and so
    takes no trial: the next new submit is the trial, and its success closes the circuit."""
    clock = FakeClock()
    registry = PluginRegistry([flaky_plugin()], clock=clock)
    async with Supervisor(registry=registry) as sup:
        first = await sup.submit("flaky.call", {}, idempotency_key="order-42")
        await sup.wait(first.id, timeout=10)
        await fail_twice(sup)
        clock.now += 30
        again = await sup.submit("flaky.call", {}, idempotency_key="order-42")
        assert again.id == first.id
        trial = await sup.submit("flaky.call", {})
        assert trial.state is JobState.QUEUED
        assert (await sup.wait(trial.id, timeout=10)).state is JobState.SUCCEEDED
        assert sup.registry.circuits("flaky")[0].state is CircuitState.CLOSED
