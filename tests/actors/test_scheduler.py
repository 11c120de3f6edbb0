"""The scheduler: start-up waits until every runner is parked; a burst of jobs wakes a runner per
YIELD_EVERY of them and the next only in case a job blocks; a cancelled runner passes its wake-up
on."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from jobwarden import Supervisor, builtin
from jobwarden.actors import scheduler as scheduler_module
from jobwarden.actors.scheduler import Scheduler

pytestmark = pytest.mark.anyio


async def test_wait_runners_parked_returns_once_all_wait_for_work() -> None:
    """wait_runners_parked(n) returns only after n runners are waiting in next()."""
    scheduler = Scheduler(concurrency=64)
    parked = anyio.Event()

    async def runner() -> None:
        await scheduler.next()

    async with anyio.create_task_group() as tg:
        tg.start_soon(runner)

        async def waiter() -> None:
            await scheduler.wait_runners_parked(2)
            parked.set()

        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        assert not parked.is_set()
        tg.start_soon(runner)
        with anyio.fail_after(5):
            await parked.wait()
        scheduler.close()


async def test_supervisor_is_ready_when_it_returns() -> None:
    """After async with Supervisor(...) every runner already waits, so a job starts at once."""
    async with Supervisor(plugins=[builtin], concurrency=50) as sup:
        assert len(sup._scheduler._idle) == 50  # every runner parked
        assert await sup.run("builtin.echo", {"text": "x"}, timeout=5) == {"text": "x"}


class _Tool:
    name = "fake.tool"
    max_concurrency = None


class _Actor:
    """Just enough of a job actor for the scheduler: a tool without a cap."""

    tool = _Tool()


async def test_a_runner_cancelled_while_parked_passes_its_job_to_another() -> None:
    """A job admitted just as the runner it would wake is cancelled goes to the next idle one."""
    scheduler = Scheduler(concurrency=64)
    got: list[object] = []
    job: Any = _Actor()

    async def runner(scope: anyio.CancelScope) -> None:
        with scope:
            got.append(await scheduler.next())

    async with anyio.create_task_group() as tg:
        first = anyio.CancelScope()
        tg.start_soon(runner, first)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(runner, anyio.CancelScope())
        await anyio.wait_all_tasks_blocked()
        first.cancel()
        scheduler.admit(job)  # before the cancelled runner has run again
        with anyio.fail_after(5):
            while not got:
                await anyio.wait_all_tasks_blocked()
        assert got == [job]
        scheduler.close()


async def _run_jobs(
    scheduler: Scheduler,
    name: str,
    taken: list[tuple[str, object]],
    blocks: dict[object, anyio.Event],
) -> None:
    """A runner: take jobs until the scheduler closes, waiting on a job's event if it has one."""
    while (job := await scheduler.next()) is not None:
        taken.append((name, job))
        if job in blocks:
            await blocks[job].wait()
        scheduler.release(job)


@pytest.fixture
def wakes(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every runner wake-up the scheduler makes, in order."""
    woken: list[object] = []
    wake = scheduler_module._wake

    def counted(wakeup: Any) -> bool:
        woken.append(wakeup)
        return wake(wakeup)

    monkeypatch.setattr(scheduler_module, "_wake", counted)
    return woken


async def test_jobs_made_ready_together_wake_one_runner_and_a_spare(wakes: list[object]) -> None:
    """Three jobs admitted in one go wake two of three idle runners (not three): the first takes
    them one after another, the second was woken only in case one of them blocked."""
    scheduler = Scheduler(concurrency=64)
    taken: list[tuple[str, object]] = []
    jobs: list[Any] = [_Actor() for _ in range(3)]
    async with anyio.create_task_group() as tg:
        for name in "abc":
            tg.start_soon(_run_jobs, scheduler, name, taken, {})
        await scheduler.wait_runners_parked(3)
        for job in jobs:
            scheduler.admit(job)
        await anyio.wait_all_tasks_blocked()
        assert [job for _, job in taken] == jobs
        assert len({name for name, _ in taken}) == 1
        assert len(wakes) == 2
        scheduler.close()


async def test_a_long_burst_wakes_a_runner_per_yield_every_jobs(wakes: list[object]) -> None:
    """2 x YIELD_EVERY + 1 jobs admitted in one go wake three runners as they are admitted: each
    takes YIELD_EVERY before it yields, so none of the jobs waits for a later turn."""
    scheduler = Scheduler(concurrency=64)
    taken: list[tuple[str, object]] = []
    jobs: list[Any] = [_Actor() for _ in range(2 * scheduler_module.YIELD_EVERY + 1)]
    async with anyio.create_task_group() as tg:
        for name in "abcd":
            tg.start_soon(_run_jobs, scheduler, name, taken, {})
        await scheduler.wait_runners_parked(4)
        for job in jobs:
            scheduler.admit(job)
        assert len(wakes) == 3
        await anyio.wait_all_tasks_blocked()
        assert [job for _, job in taken] == jobs
        scheduler.close()


async def test_a_job_that_blocks_does_not_hold_up_the_next() -> None:
    """While the runner that took a job waits in it, the job admitted with it goes to another."""
    scheduler = Scheduler(concurrency=64)
    taken: list[tuple[str, object]] = []
    first: Any = _Actor()
    second: Any = _Actor()
    release = anyio.Event()
    async with anyio.create_task_group() as tg:
        for name in ("a", "b"):
            tg.start_soon(_run_jobs, scheduler, name, taken, {first: release})
        await scheduler.wait_runners_parked(2)
        scheduler.admit(first)
        scheduler.admit(second)
        await anyio.wait_all_tasks_blocked()
        assert not release.is_set()
        assert [job for _, job in taken] == [first, second]
        assert taken[0][0] != taken[1][0]
        release.set()
        scheduler.close()


async def _start_ahead(scheduler: Scheduler, starts: list[object], runs: list[object]) -> None:
    """A runner of a write-behind store: a job seen for the first time is started ahead (noted,
    not run, its place kept); one that comes back is run and released."""
    while (job := await scheduler.next()) is not None:
        if job in starts:
            runs.append(job)
            scheduler.release(job)
        else:
            starts.append(job)
            scheduler.ahead_pending()


async def test_starting_ahead_takes_no_more_jobs_than_the_concurrency() -> None:
    """One runner starts queued jobs ahead without waiting, but only as many as the concurrency:
    the rest stay queued until a job started ahead has come back, run and been released."""
    scheduler = Scheduler(concurrency=2)
    starts: list[object] = []
    runs: list[object] = []
    jobs: list[Any] = [_Actor() for _ in range(3)]
    async with anyio.create_task_group() as tg:
        tg.start_soon(_start_ahead, scheduler, starts, runs)
        await scheduler.wait_runners_parked(1)
        for job in jobs:
            scheduler.admit(job)
        await anyio.wait_all_tasks_blocked()
        assert starts == jobs[:2]
        scheduler.ahead_ready(jobs[1])  # commits may land in any order
        await anyio.wait_all_tasks_blocked()
        assert runs == [jobs[1]]
        assert starts == jobs  # its release let the third one in
        scheduler.ahead_ready(jobs[0])
        scheduler.ahead_ready(jobs[2])
        await anyio.wait_all_tasks_blocked()
        assert runs == [jobs[1], jobs[0], jobs[2]]
        scheduler.close()


async def _taken_ahead(scheduler: Scheduler) -> Any:
    """A job admitted, taken and started ahead (its commit not reported yet)."""
    job: Any = _Actor()
    scheduler.admit(job)
    taken = await scheduler.next()
    assert taken == job
    scheduler.ahead_pending()
    return job


async def test_a_job_started_ahead_runs_before_queued_ones() -> None:
    """A committed start is handed out before a queued job that is waiting too."""
    scheduler = Scheduler(concurrency=64)
    early = await _taken_ahead(scheduler)
    queued: Any = _Actor()
    scheduler.admit(queued)
    scheduler.ahead_ready(early)
    assert await scheduler.next() is early
    assert await scheduler.next() is queued


async def test_a_closed_scheduler_still_hands_out_the_jobs_started_ahead() -> None:
    """After close, queued jobs are no longer handed out, but a start still being committed is
    waited for and its job handed out to run; then runners get None."""
    scheduler = Scheduler(concurrency=64)
    started = await _taken_ahead(scheduler)
    left: Any = _Actor()
    scheduler.admit(left)
    scheduler.close()
    got: list[object] = []

    async def runner() -> None:
        while (job := await scheduler.next()) is not None:
            got.append(job)
            scheduler.release(job)

    async with anyio.create_task_group() as tg:
        tg.start_soon(runner)
        await anyio.wait_all_tasks_blocked()
        assert got == []
        assert scheduler.pending_starts == 1
        scheduler.ahead_ready(started)
    assert got == [started]
    assert scheduler.pending_starts == 0
