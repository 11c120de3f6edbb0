"""The supervisor's own duties: admission, caps, crash recovery, shutdown and its lifecycle."""

from __future__ import annotations

import gc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from jobwarden import JobState, PluginLifecycle, Supervisor, builtin, errors
from jobwarden.actors.supervisor import COLLECT_AFTER_RUNNERS
from jobwarden.errors import OutcomeType
from jobwarden.store.sqlite import SqliteStore
from tests.fakes import Crash, FlakyStore, Gates, fake_plugin

pytestmark = pytest.mark.anyio


async def test_overload_refuses_beyond_max_queued() -> None:
    """With max_queued jobs waiting, submit raises Overloaded and the queued jobs are intact."""
    gates = Gates()
    async with Supervisor(plugins=[fake_plugin(gates)], concurrency=1, max_queued=2) as sup:
        running = await sup.submit("fake.gate", {"key": "r"})
        await gates.wait_entered("r")
        waiting = [await sup.submit("fake.gate", {"key": "r"}) for _ in range(2)]
        with pytest.raises(errors.Overloaded) as caught:
            await sup.submit("fake.gate", {"key": "r"})
        assert caught.value.status == 429
        assert caught.value.retry_after_s > 0
        assert sup.statistics().queued == 2
        gates.open("r")
        for rec in [running, *waiting]:
            assert (await sup.wait(rec.id, timeout=5)).state is JobState.SUCCEEDED
        assert (await sup.submit("fake.gate", {"key": "r"})).state is JobState.QUEUED


async def test_global_concurrency_cap() -> None:
    """No more jobs run at once than there are runners."""
    gates = Gates()
    async with Supervisor(plugins=[fake_plugin(gates)], concurrency=3) as sup:
        recs = [await sup.submit("fake.gate", {"key": str(n)}) for n in range(6)]
        for n in range(3):
            await gates.wait_entered(str(n))
        await anyio.wait_all_tasks_blocked()
        assert sup.statistics().running == 3
        assert [r.state for r in [await sup.get(r.id) for r in recs]].count(JobState.RUNNING) == 3
        for n in range(6):
            gates.open(str(n))
        for rec in recs:
            await sup.wait(rec.id, timeout=5)


async def test_per_tool_cap_does_not_block_other_tools() -> None:
    """A tool at its max_concurrency parks its jobs while other tools keep running."""
    gates = Gates()
    async with Supervisor(plugins=[fake_plugin(gates, cap=2), builtin], concurrency=8) as sup:
        capped = [await sup.submit("fake.gate", {"key": str(n)}) for n in range(4)]
        await gates.wait_entered("0")
        await gates.wait_entered("1")
        await anyio.wait_all_tasks_blocked()
        assert sup.registry.metrics("fake.gate").in_flight == 2
        assert (await sup.get(capped[2].id)).state is JobState.QUEUED
        assert await sup.run("builtin.echo", {"text": "x"}, timeout=5) == {"text": "x"}
        await sup.cancel(capped[2].id)
        gates.open("0")
        await gates.wait_entered("3")
        assert sup.registry.metrics("fake.gate").in_flight == 2
        for n in range(4):
            gates.open(str(n))
        states = [(await sup.wait(r.id, timeout=5)).state for r in capped]
        assert states.count(JobState.SUCCEEDED) == 3


async def test_crashed_runner_is_restarted_and_the_job_requeued() -> None:
    """A runner that crashes starting a job is replaced, the job runs later, the crash is logged."""
    store = FlakyStore(fail_state="running", times=1)
    with capture_logs() as logs:
        async with Supervisor(plugins=[builtin], store=store, concurrency=1) as sup:
            rec = await sup.submit("builtin.echo", {"text": "x"})
            done = await sup.wait(rec.id, timeout=5)
            assert done.state is JobState.SUCCEEDED
            assert sup.statistics().restarts == 1
    assert any(e["event"] == "tool runner crashed; restarting it" for e in logs)


async def test_runner_crash_while_finishing_fails_the_job_as_crashed() -> None:
    """A crash recording a job's outcome is retried by recovery as a crashed failure."""
    store = FlakyStore(fail_state="succeeded", times=1)
    async with Supervisor(plugins=[builtin], store=store, concurrency=1) as sup:
        rec = await sup.submit("builtin.echo", {"text": "x"})
        done = await sup.wait(rec.id, timeout=5)
        assert done.state is JobState.FAILED
        assert done.error is not None
        assert done.error.type == OutcomeType.CRASHED
        assert sup.registry.metrics("builtin.echo").calls == 1


async def test_restart_intensity_exceeded_stops_the_supervisor() -> None:
    """More crashes than the restart intensity allows stop everything with SupervisorCrashed."""
    store = FlakyStore(fail_state="running", times=100)
    with pytest.raises(errors.SupervisorCrashed) as caught:
        async with Supervisor(
            plugins=[builtin], store=store, concurrency=1, max_restarts=2, restart_window_s=60
        ) as sup:
            rec = await sup.submit("builtin.echo", {"text": "x"})
            await sup.wait(rec.id)
    assert isinstance(caught.value.__cause__, Crash)
    assert "3 runner crashes" in str(caught.value)


async def test_shutdown_lets_running_jobs_finish_within_grace() -> None:
    """On exit, running jobs get the grace period, queued ones are cancelled, nothing is left."""
    gates = Gates()
    sup = Supervisor(plugins=[fake_plugin(gates)], concurrency=1, shutdown_grace_s=30)
    async with sup:
        running = await sup.submit("fake.gate", {"key": "g"})
        queued = await sup.submit("fake.gate", {"key": "q"})
        await gates.wait_entered("g")
        gates.open("g")
    assert (await sup.get(running.id)).state is JobState.SUCCEEDED
    final = await sup.get(queued.id)
    assert final.state is JobState.CANCELLED
    assert final.error is not None
    assert "before the job started" in final.error.message
    with pytest.raises(errors.ShuttingDown):
        await sup.submit("fake.gate", {})


async def test_shutdown_cancels_jobs_still_running_after_grace() -> None:
    """Jobs still running when the grace period ends are cancelled and recorded as such."""
    gates = Gates()
    sup = Supervisor(plugins=[fake_plugin(gates)], shutdown_grace_s=0.01)
    async with sup:
        rec = await sup.submit("fake.gate", {"key": "never"})
        await gates.wait_entered("never")
    final = await sup.get(rec.id)
    assert final.state is JobState.CANCELLED
    assert final.error is not None
    assert "shut down" in final.error.message
    assert sup.registry.metrics("fake.gate").cancellations == 1
    assert sup.registry.status("fake").state is PluginLifecycle.UNAVAILABLE


async def test_body_exception_propagates_unwrapped_and_cancels_jobs() -> None:
    """An exception in the async with body comes out as itself; running jobs are cancelled."""
    gates = Gates()
    sup = Supervisor(plugins=[fake_plugin(gates)])
    with pytest.raises(KeyError):
        async with sup:
            rec = await sup.submit("fake.gate", {"key": "b"})
            await gates.wait_entered("b")
            raise KeyError("boom")
    assert (await sup.get(rec.id)).state is JobState.CANCELLED


async def test_a_grace_longer_than_any_float_lets_running_jobs_finish() -> None:
    """shutdown_grace_s=10**400 (too large for a float) is no limit, as infinity is: the stop
    waits for the running job, where it raised OverflowError."""
    gates = Gates()
    sup = Supervisor(plugins=[fake_plugin(gates)], shutdown_grace_s=10**400)

    async def open_once_stopping() -> None:
        await gates.wait_entered("held")
        await anyio.wait_all_tasks_blocked()
        gates.open("held")

    async with anyio.create_task_group() as tg:
        tg.start_soon(open_once_stopping)
        async with sup:
            held = await sup.submit("fake.gate", {"key": "held"})
            await gates.wait_entered("held")
    assert (await sup.get(held.id)).state is JobState.SUCCEEDED


async def test_lifecycle_misuse_is_refused() -> None:
    """Submitting before start and starting twice both fail with a clear message."""
    sup = Supervisor(plugins=[builtin])
    with pytest.raises(errors.ShuttingDown, match="not started"):
        await sup.submit("builtin.echo", {"text": "x"})
    async with sup:
        assert sup.registry.status("builtin").state is PluginLifecycle.RUNNING
        assert sup.statistics().accepting
    with pytest.raises(RuntimeError, match="only once"):
        async with sup:
            pass


@pytest.mark.parametrize("durable", [False, True])
@pytest.mark.parametrize("call", ["get", "wait", "cancel", "list_jobs"])
async def test_reading_before_start_is_refused(durable: bool, call: str, tmp_path: Path) -> None:
    """get, wait, cancel and list_jobs before the supervisor has started raise ShuttingDown
    saying so, with the memory store (JobNotFound before) and the SQLite store ("is closed")
    alike."""
    store = SqliteStore(tmp_path / "jobs.db") if durable else None
    sup = Supervisor(plugins=[builtin], store=store)
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "get": lambda: sup.get("j1"),
        "wait": lambda: sup.wait("j1", timeout=1),
        "cancel": lambda: sup.cancel("j1"),
        "list_jobs": sup.list_jobs,
    }
    with pytest.raises(errors.ShuttingDown) as info:
        await calls[call]()
    assert type(info.value) is errors.ShuttingDown
    assert str(info.value) == "the supervisor is not started: use `async with Supervisor(...)`"


@pytest.mark.parametrize("durable", [False, True])
@pytest.mark.parametrize(
    "filters", [{}, {"since": 0}, {"tool": "builtin.echo"}, {"job_id": "j1", "since": 0}]
)
async def test_subscribing_before_start_is_refused(
    durable: bool, filters: dict[str, Any], tmp_path: Path
) -> None:
    """A subscribe before the supervisor has started raises ShuttingDown, as a submit does,
    with the memory store (where it waited forever) and a durable one alike."""
    store = SqliteStore(tmp_path / "jobs.db") if durable else None
    sup = Supervisor(plugins=[builtin], store=store)
    with pytest.raises(errors.ShuttingDown, match="not started"):
        async with sup.subscribe(**filters):
            raise AssertionError("unreachable: the subscribe is refused")
    assert sup.statistics().subscribers == 0


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("concurrency", "concurrency, thread_concurrency"),
        ("thread_concurrency", "thread_concurrency"),
        ("max_abandoned_threads", "max_abandoned_threads"),
        ("process_workers", "process_workers must be >= 1"),
        ("max_queued", "max_queued must be >= 1"),
        ("subscriber_buffer", "subscriber_buffer must be >= 1"),
    ],
)
def test_invalid_settings_are_refused(setting: str, message: str) -> None:
    """Each count a supervisor needs at least one of is refused at 0, naming it."""
    settings: dict[str, Any] = {setting: 0}
    with pytest.raises(ValueError, match=message):
        Supervisor(**settings)


@pytest.mark.parametrize("grace", [float("nan"), -1.0])
def test_a_shutdown_grace_that_is_no_duration_is_refused(grace: float) -> None:
    """A NaN or negative shutdown_grace_s is refused at construction, not when the supervisor
    stops (a NaN deadline there raised on asyncio and broke trio's cancel scopes)."""
    with pytest.raises(ValueError, match="shutdown_grace_s must be a number >= 0"):
        Supervisor(shutdown_grace_s=grace)


async def test_many_jobs_all_succeed_and_metrics_agree() -> None:
    """A burst of jobs all succeed, counted exactly once each, with nothing left in flight."""
    async with Supervisor(plugins=[builtin], concurrency=4) as sup:
        recs = [await sup.submit("builtin.echo", {"text": str(n)}) for n in range(500)]
        for rec in recs:
            assert (await sup.wait(rec.id, timeout=10)).state is JobState.SUCCEEDED
        metrics = sup.registry.metrics("builtin.echo")
        assert (metrics.calls, metrics.successes, metrics.in_flight) == (500, 500, 0)
        stats = sup.statistics()
        assert (stats.queued, stats.running) == (0, 0)


@pytest.mark.parametrize(("runners", "collections"), [(64, 0), (COLLECT_AFTER_RUNNERS, 1)])
async def test_thousands_of_runners_are_collected_once_at_start(
    runners: int, collections: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A supervisor that spawned thousands of runners runs one full collection before it takes
    work (so the cyclic gc's next full pass comes later); a small one leaves the gc alone."""
    calls: list[int] = []

    def collect(generation: int = 2) -> int:
        calls.append(generation)
        return 0

    monkeypatch.setattr(gc, "collect", collect)
    async with Supervisor(plugins=[builtin], concurrency=runners) as sup:
        started = list(calls)
        assert await sup.run("builtin.echo", {"text": "ok"}) == {"text": "ok"}
    assert started == [2] * collections
