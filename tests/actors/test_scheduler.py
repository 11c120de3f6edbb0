"""The scheduler's readiness signal: start-up waits until every runner is parked."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from jobwarden import Supervisor, builtin
from jobwarden.actors.scheduler import Scheduler

pytestmark = pytest.mark.anyio


async def test_wait_runners_parked_returns_once_all_wait_for_work() -> None:
    """wait_runners_parked(n) returns only after n runners are waiting in next()."""
    scheduler = Scheduler()
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
    scheduler = Scheduler()
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
