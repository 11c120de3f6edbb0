"""The scheduler's readiness signal: start-up waits until every runner is parked."""

from __future__ import annotations

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
