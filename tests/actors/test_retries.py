"""Retries and Temporal-style timeouts: backoff, attempts, events, and every way they end."""

from __future__ import annotations

import random
from pathlib import Path

import anyio
import pytest

from jobwarden import JobState, Plugin, Supervisor, ToolContext
from jobwarden.errors import OutcomeType, RegistrationError
from jobwarden.plugins.retry import RetryPolicy
from jobwarden.records import JobEvent
from jobwarden.store.sqlite import SqliteStore
from tests.fakes import Gates, KeyIn, TextOut

pytestmark = pytest.mark.anyio

QUICK = RetryPolicy(max_attempts=3, backoff_s=0.001, jitter=0)


class Flaky:
    """Fails the first ``failures`` calls of each key, then succeeds."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[int] = []

    def plugin(self, gates: Gates, *, retry: RetryPolicy = QUICK) -> Plugin:
        plugin = Plugin("flaky", version="1.0.0")

        @plugin.tool(retry=retry)
        async def sometimes(inp: KeyIn, ctx: ToolContext) -> TextOut:
            """Raise until enough attempts were made."""
            self.calls.append(ctx.attempt)
            if ctx.attempt <= self.failures:
                raise RuntimeError(f"failure {ctx.attempt}")
            return TextOut(text=f"attempt {ctx.attempt}")

        @plugin.tool(retry=retry, timeout=0.01)
        async def slow(inp: KeyIn, ctx: ToolContext) -> TextOut:
            """Never finishes within its 10 ms."""
            await anyio.sleep_forever()
            raise AssertionError("unreachable")

        @plugin.tool(retry=retry)
        async def wrong(inp: KeyIn, ctx: ToolContext) -> TextOut:
            """Returns the wrong type: invalid_output, not retried by default."""
            self.calls.append(ctx.attempt)
            return 5  # type: ignore[return-value]

        # The second attempt comes 10 ms after the first; a third would wait 100 s, far past
        # the 30 s budget however loaded the machine is, so the job fails after two.
        @plugin.tool(
            retry=RetryPolicy(
                max_attempts=5, backoff_s=0.01, multiplier=10_000, max_backoff_s=100, jitter=0
            ),
            total_timeout=30,
        )
        async def budget(inp: KeyIn, ctx: ToolContext) -> TextOut:
            """Always fails; the total timeout stops the retries."""
            self.calls.append(ctx.attempt)
            raise RuntimeError("again")

        @plugin.tool(retry=retry)
        async def second_reports(inp: KeyIn, ctx: ToolContext) -> TextOut:
            """Attempt 1 fails; attempt 2 reports progress, then waits at the gate."""
            if ctx.attempt == 1:
                raise RuntimeError("attempt 1 fails")
            await ctx.progress(0.5, "attempt 2")
            await gates.pass_through(inp.key)
            return TextOut(text="attempt 2")

        # 0.2 s: an attempt that started only after its budget (a loaded machine) would end the
        # job as cancelled before it ran, not cut it.
        @plugin.tool(total_timeout=0.2)
        async def overall(inp: KeyIn, ctx: ToolContext) -> TextOut:
            """Hangs: the total timeout cuts it though it has no per-attempt timeout."""
            await anyio.sleep_forever()
            raise AssertionError("unreachable")

        @plugin.tool(max_concurrency=1, queue_timeout=0.02)
        async def single(inp: KeyIn, ctx: ToolContext) -> TextOut:
            """One at a time, waiting at the gate; a second caller waits in the queue."""
            self.calls.append(ctx.attempt)
            await gates.pass_through(inp.key)
            return TextOut(text=inp.key)

        return plugin


async def events_of(sup: Supervisor, job_id: str) -> list[JobEvent]:
    async with sup.subscribe(job_id=job_id) as events:
        return [e async for e in events if isinstance(e, JobEvent)]


def kinds(events: list[JobEvent]) -> list[str]:
    return [e.type.rsplit(".", 1)[1] for e in events]


async def test_a_failing_call_is_retried_until_it_succeeds() -> None:
    """Two failures then a success: three attempts, two retrying events, one success."""
    flaky = Flaky(failures=2)
    async with Supervisor(plugins=[flaky.plugin(Gates())]) as sup:
        record = await sup.submit("flaky.sometimes", {"key": "a"})
        done = await sup.wait(record.id, timeout=10)
        events = await events_of(sup, record.id)
        metrics = sup.registry.metrics("flaky.sometimes")
        stats = sup.statistics()
    assert (done.state, done.attempt, done.result) == (JobState.SUCCEEDED, 3, {"text": "attempt 3"})
    assert done.error is None
    assert flaky.calls == [1, 2, 3]
    assert kinds(events) == [
        "queued", "running", "retrying", "running", "retrying", "running", "succeeded"
    ]  # fmt: skip
    retrying = [e for e in events if e.type.endswith("retrying")]
    assert [e.data.attempt for e in retrying] == [2, 3]
    assert [e.data.state for e in retrying] == [JobState.QUEUED] * 2
    assert retrying[0].data.error is not None
    assert retrying[0].data.error.type == OutcomeType.PLUGIN_ERROR
    assert retrying[0].data.message is not None
    assert "attempt 1 failed (plugin_error)" in retrying[0].data.message
    assert (metrics.calls, metrics.successes) == (3, 1)
    assert metrics.failures_by_type == {"plugin_error": 2}
    assert (stats.queued, stats.running) == (0, 0)


@pytest.mark.parametrize("store", ["memory", "sqlite"])
async def test_a_retry_runs_without_the_failed_attempts_error(store: str, tmp_path: Path) -> None:
    """The queued retry carries the failed attempt's error, but once attempt 2 starts its
    record, stored and live, and its running and progress events carry none."""
    gates = Gates()
    given = SqliteStore(tmp_path / "jobs.db") if store == "sqlite" else None
    with anyio.fail_after(30):
        async with Supervisor(plugins=[Flaky(0).plugin(gates)], store=given) as sup:
            record = await sup.submit("flaky.second_reports", {"key": "a"})
            async with sup.subscribe(job_id=record.id) as events:
                await gates.wait_entered("a")
                live = await sup.get(record.id)
                stored = await sup.store.get(record.id)
                gates.open("a")
                seen = [e async for e in events if isinstance(e, JobEvent)]
    assert kinds(seen) == ["queued", "running", "retrying", "running", "progress", "succeeded"]
    retrying = seen[2].data.error
    assert retrying is not None
    assert retrying.type == OutcomeType.PLUGIN_ERROR
    assert [e.data.error for e in seen[3:]] == [None, None, None]
    assert stored is not None
    for running in (live, stored):
        assert (running.state, running.attempt, running.error) == (JobState.RUNNING, 2, None)


async def test_attempts_run_out_and_the_last_error_stays() -> None:
    """When every attempt fails, the job fails with the last attempt's error."""
    flaky = Flaky(failures=10)
    async with Supervisor(plugins=[flaky.plugin(Gates())]) as sup:
        done = await sup.wait((await sup.submit("flaky.sometimes", {})).id, timeout=10)
    assert (done.state, done.attempt) == (JobState.FAILED, 3)
    assert done.error is not None
    assert "failure 3" in done.error.message
    assert flaky.calls == [1, 2, 3]


async def test_timeouts_are_retried_per_attempt() -> None:
    """Each attempt gets its own timeout; after the last one the job is timed_out."""
    async with Supervisor(plugins=[Flaky(0).plugin(Gates())]) as sup:
        record = await sup.submit("flaky.slow", {})
        done = await sup.wait(record.id, timeout=10)
        events = await events_of(sup, record.id)
    assert (done.state, done.attempt) == (JobState.TIMED_OUT, 3)
    assert done.error is not None
    assert done.error.type == OutcomeType.TIMEOUT
    assert kinds(events).count("retrying") == 2


async def test_error_types_outside_retry_on_are_not_retried() -> None:
    """invalid_output is not in the default retry_on: one attempt, then failed."""
    flaky = Flaky(0)
    async with Supervisor(plugins=[flaky.plugin(Gates())]) as sup:
        done = await sup.wait((await sup.submit("flaky.wrong", {})).id, timeout=10)
    assert (done.state, done.attempt) == (JobState.FAILED, 1)
    assert done.error is not None
    assert done.error.type == OutcomeType.INVALID_OUTPUT
    assert flaky.calls == [1]


async def test_a_job_waiting_out_its_backoff_can_be_cancelled() -> None:
    """Cancelled during its backoff, a job ends at once, saying it waited for its next attempt
    (not "before it started": one did), and never runs again."""
    flaky = Flaky(failures=10)
    slow_backoff = RetryPolicy(max_attempts=3, backoff_s=3600, jitter=0)
    async with Supervisor(plugins=[flaky.plugin(Gates(), retry=slow_backoff)]) as sup:
        record = await sup.submit("flaky.sometimes", {})
        async with sup.subscribe(job_id=record.id, state=JobState.QUEUED, since=1) as events:
            retrying = await events.__anext__()
        cancelled = await sup.cancel(record.id)
        stats = sup.statistics()
    assert retrying.type == "jobwarden.job.retrying"
    assert (cancelled.state, cancelled.attempt) == (JobState.CANCELLED, 2)
    assert cancelled.error is not None
    assert cancelled.error.message == "cancelled while waiting for attempt 2"
    assert flaky.calls == [1]
    assert (stats.queued, stats.running) == (0, 0)


async def test_the_total_timeout_stops_retries_that_would_start_too_late() -> None:
    """With 30 s in all and backoffs of 10 ms then 100 s, the job fails after its second
    attempt at once, well before its fifth: no retry that could not start within the budget is
    waited for or tried."""
    flaky = Flaky(0)
    async with Supervisor(plugins=[flaky.plugin(Gates())]) as sup:
        done = await sup.wait((await sup.submit("flaky.budget", {})).id, timeout=20)
    assert done.state is JobState.FAILED
    assert done.attempt == 2
    assert flaky.calls == [1, 2]


async def test_the_total_timeout_cuts_a_running_attempt() -> None:
    """A tool without a per-attempt timeout is still stopped by its total timeout."""
    async with Supervisor(plugins=[Flaky(0).plugin(Gates())]) as sup:
        done = await sup.wait((await sup.submit("flaky.overall", {})).id, timeout=10)
    assert done.state is JobState.TIMED_OUT
    assert done.error is not None
    assert "did not finish within its total timeout of 0.2s" in done.error.message


async def test_a_job_that_waits_too_long_in_the_queue_is_cancelled_as_timed_out() -> None:
    """Behind a busy one-at-a-time tool, a job past its queue timeout ends without running."""
    gates = Gates()
    flaky = Flaky(0)
    async with Supervisor(plugins=[flaky.plugin(gates)]) as sup:
        first = await sup.submit("flaky.single", {"key": "first"})
        await gates.wait_entered("first")
        waiting = await sup.submit("flaky.single", {"key": "second"})
        expired = await sup.wait(waiting.id, timeout=10)
        gates.open("first")
        done = await sup.wait(first.id, timeout=10)
        stats = sup.statistics()
    assert expired.state is JobState.CANCELLED
    assert expired.error is not None
    assert expired.error.type == OutcomeType.TIMEOUT
    assert "waited more than 0.02s to start" in expired.error.message
    assert done.state is JobState.SUCCEEDED
    assert flaky.calls == [1]
    assert (stats.queued, stats.running) == (0, 0)


def test_backoff_grows_is_capped_and_jitters_within_bounds() -> None:
    """Delays double from backoff_s up to max_backoff_s, each within +/- jitter of itself."""
    exact = RetryPolicy(backoff_s=1, multiplier=2, max_backoff_s=5, jitter=0, max_attempts=9)
    rng = random.Random(1)
    assert [exact.delay(n, rng) for n in range(1, 6)] == [1, 2, 4, 5, 5]
    spread = RetryPolicy(backoff_s=1, multiplier=2, max_backoff_s=100, jitter=0.5)
    delays = [spread.delay(3, rng) for _ in range(500)]
    assert all(2 <= d <= 6 for d in delays)
    assert max(delays) - min(delays) > 2


def test_retries_respects_attempts_and_types() -> None:
    """retries() says yes only below max_attempts and for a listed error type."""
    policy = RetryPolicy(max_attempts=2, retry_on=frozenset({"timeout"}))
    assert policy.retries(1, "timeout")
    assert not policy.retries(2, "timeout")
    assert not policy.retries(1, "plugin_error")


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"backoff_s": -1}, "backoff_s"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"jitter": 2}, "jitter"),
        ({"retry_on": frozenset({"nope"})}, "retry_on"),
        ({"retry_on": frozenset({"cancelled"})}, "never retried"),
    ],
    ids=str,
)
def test_bad_policies_are_refused(kw: dict[str, object], message: str) -> None:
    """A policy that cannot work is refused when it is made."""
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("option", ["total_timeout", "queue_timeout"])
@pytest.mark.parametrize("value", [0, -1, float("inf")])
def test_bad_timeouts_fail_registration(option: str, value: float) -> None:
    """total_timeout and queue_timeout must be positive, finite seconds."""
    plugin = Plugin("bad")
    with pytest.raises(RegistrationError, match=option):

        @plugin.tool(**{option: value})  # type: ignore[arg-type]
        async def tool(inp: KeyIn, ctx: ToolContext) -> TextOut:
            return TextOut(text="")


async def test_no_retry_once_the_failure_opened_the_tools_circuit() -> None:
    """A failure that opens the tool's circuit breaker ends the job instead of retrying it."""
    plugin = Plugin("fragile", version="1.0.0")
    calls: list[int] = []

    @plugin.tool(retry=QUICK, circuit_failures=1, circuit_cooldown_s=3600)
    async def breaks(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Always fails."""
        calls.append(ctx.attempt)
        raise RuntimeError("down")

    async with Supervisor(plugins=[plugin]) as sup:
        done = await sup.wait((await sup.submit("fragile.breaks", {})).id, timeout=10)
        refusal = sup.registry.refuses("fragile.breaks")
    assert (done.state, done.attempt) == (JobState.FAILED, 1)
    assert calls == [1]
    assert refusal is not None
    assert "1 consecutive failures" in refusal
