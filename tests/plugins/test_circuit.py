"""The per-tool circuit breaker on a fake clock: closed, open, half-open, closed again."""

from __future__ import annotations

import pytest

from jobwarden.errors import RegistrationError
from jobwarden.plugins.circuit import Circuit, CircuitPolicy, CircuitState
from jobwarden.plugins.context import ToolContext
from jobwarden.plugins.tool import Plugin
from tests.plugins.test_registry import Text


class FakeClock:
    """Wall-clock seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: FakeClock, failures: int = 3) -> Circuit:
    """A circuit on ``clock``: ``failures`` within 10 s open it for 5 s."""
    return Circuit("demo.t", CircuitPolicy(failures=failures, window_s=10, cooldown_s=5), clock)


def test_consecutive_failures_within_the_window_open_the_circuit() -> None:
    """Three failures within the window open it, and submits are refused with a reason."""
    clock = FakeClock()
    circuit = breaker(clock)
    for outcome in ("plugin_error", "timeout"):
        circuit.failed(outcome)
        assert circuit.admit() is None
    circuit.failed("crashed")
    status = circuit.status()
    assert status.state is CircuitState.OPEN
    assert status.consecutive_failures == 3
    assert status.open_until is not None
    assert status.open_until.timestamp() == 1_005.0
    refusal = circuit.admit()
    assert refusal is not None
    assert "3 consecutive failures within 10s (last: crashed)" in refusal
    assert "refusing calls until" in refusal


def test_a_success_resets_the_count() -> None:
    """A success between failures means they were not consecutive."""
    circuit = breaker(FakeClock())
    circuit.failed("plugin_error")
    circuit.failed("plugin_error")
    circuit.succeeded()
    circuit.failed("invalid_output")
    assert circuit.status().state is CircuitState.CLOSED
    assert circuit.status().consecutive_failures == 1


def test_failures_older_than_the_window_do_not_count() -> None:
    """Failures spread wider than the window never open the circuit."""
    clock = FakeClock()
    circuit = breaker(clock, failures=2)
    circuit.failed("plugin_error")
    clock.now += 10
    circuit.failed("plugin_error")
    assert circuit.status().state is CircuitState.CLOSED
    clock.now += 9.5
    circuit.failed("resource_exhausted")
    assert circuit.status().state is CircuitState.OPEN


def test_cancelled_and_interrupted_calls_neither_count_nor_reset() -> None:
    """Outcomes that are not the tool's fault leave the count as it was."""
    circuit = breaker(FakeClock(), failures=2)
    circuit.failed("plugin_error")
    circuit.failed("cancelled")
    circuit.failed("interrupted")
    assert circuit.status().consecutive_failures == 1
    circuit.failed("plugin_error")
    assert circuit.status().state is CircuitState.OPEN


def test_after_the_cooldown_one_trial_passes_and_its_success_closes() -> None:
    """Half-open admits exactly one trial; its success closes the circuit."""
    clock = FakeClock()
    circuit = breaker(clock, failures=1)
    circuit.failed("plugin_error")
    clock.now += 5
    assert circuit.status().state is CircuitState.HALF_OPEN
    assert circuit.admit() is None
    second = circuit.admit()
    assert second is not None
    assert "a trial call is deciding" in second
    circuit.succeeded()
    status = circuit.status()
    assert (status.state, status.reason, status.open_until) == (CircuitState.CLOSED, None, None)
    assert circuit.admit() is None


def test_a_failed_trial_opens_the_circuit_for_another_cooldown() -> None:
    """The trial's failure re-opens the circuit from the moment it failed."""
    clock = FakeClock()
    circuit = breaker(clock, failures=1)
    circuit.failed("plugin_error")
    clock.now += 6
    assert circuit.admit() is None
    circuit.failed("timeout")
    status = circuit.status()
    assert status.state is CircuitState.OPEN
    assert status.reason == "circuit open: the trial call failed (timeout)"
    assert status.open_until is not None
    assert status.open_until.timestamp() == clock.now + 5


def test_a_trial_that_never_reports_is_replaced_after_a_cooldown() -> None:
    """A trial cancelled before it ran holds the half-open slot for one cool-down only."""
    clock = FakeClock()
    circuit = breaker(clock, failures=1)
    circuit.failed("plugin_error")
    clock.now += 5
    assert circuit.admit() is None
    clock.now += 4
    assert circuit.admit() is not None
    clock.now += 1
    assert circuit.admit() is None


def test_a_released_trial_goes_to_the_next_call_and_only_its_holder_releases_it() -> None:
    """A trial given back by the job that held it is the next call's at once; a release by
    any other job leaves the held trial alone."""
    clock = FakeClock()
    circuit = breaker(clock, failures=1)
    circuit.failed("plugin_error")
    clock.now += 5
    assert circuit.admit("a") is None
    circuit.release("other")
    assert circuit.admit("b") is not None
    circuit.release("a")
    assert circuit.admit("c") is None
    assert circuit.admit("d") is not None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"circuit_failures": 0}, "circuit_failures must be >= 1"),
        ({"circuit_failures": 2, "circuit_window_s": 0}, "circuit_window_s must be > 0 seconds"),
        ({"circuit_failures": 2, "circuit_cooldown_s": -1}, "circuit_cooldown_s must be > 0"),
    ],
)
def test_an_invalid_policy_fails_at_registration(options: dict[str, float], message: str) -> None:
    """A breaker option out of range is a RegistrationError naming the tool."""
    plugin = Plugin("demo")

    async def t(inp: Text, ctx: ToolContext) -> Text:
        return inp

    with pytest.raises(RegistrationError, match=f"tool demo.t: {message}"):
        plugin.tool(**options)(t)  # type: ignore[arg-type]


def test_the_decorator_defaults_to_no_breaker_and_fills_in_defaults() -> None:
    """Without circuit_failures a tool has no breaker; with it, window 60 s and cool-down 30 s."""
    plugin = Plugin("demo")

    async def plain(inp: Text, ctx: ToolContext) -> Text:
        return inp

    async def guarded(inp: Text, ctx: ToolContext) -> Text:
        return inp

    plugin.tool()(plain)
    plugin.tool(circuit_failures=4)(guarded)
    assert plugin.tools["plain"].circuit is None
    assert plugin.tools["guarded"].circuit == CircuitPolicy(
        failures=4, window_s=60.0, cooldown_s=30.0
    )
