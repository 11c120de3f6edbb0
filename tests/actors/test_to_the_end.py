"""to_the_end: work that finishes whoever cancels its caller, the cancellation raised after."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from jobwarden.actors.to_the_end import to_the_end

pytestmark = pytest.mark.anyio


class Work:
    """Work held at a gate until the test lets it go on; it records that it finished."""

    def __init__(self, fails: bool = False) -> None:
        self.gate = anyio.Event()
        self.finished = False
        self.fails = fails

    async def __call__(self) -> str:
        await self.gate.wait()
        self.finished = True
        if self.fails:
            raise ValueError("the work failed")
        return "done"


async def test_the_work_s_result_is_returned() -> None:
    """Uncancelled, it is ``await work()``."""
    work = Work()
    work.gate.set()
    assert await to_the_end(work) == "done"


async def test_a_cancelled_scope_waits_for_the_work_then_cancels() -> None:
    """A scope cancelled meanwhile (both backends) takes effect once the work has finished."""
    work = Work()
    scope = anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_cancel_then_release, scope, work)
        with scope:
            await to_the_end(work)
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert work.finished


async def _cancel_then_release(scope: anyio.CancelScope, work: Work) -> None:
    await anyio.wait_all_tasks_blocked()
    scope.cancel()
    await anyio.wait_all_tasks_blocked()
    work.gate.set()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("cancels", [1, 2])
async def test_task_cancel_waits_for_the_work_then_raises(cancels: int) -> None:
    """asyncio's Task.cancel(), once or again, is raised only after the work has finished."""
    work = Work()
    task = asyncio.ensure_future(to_the_end(work))
    for _ in range(cancels):
        await anyio.wait_all_tasks_blocked()
        task.cancel()
    await anyio.wait_all_tasks_blocked()
    assert not task.done()
    work.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert work.finished


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_work_s_own_error_wins_over_a_cancel() -> None:
    """Work that failed while its caller was cancelled raises its own error, not the cancel."""
    work = Work(fails=True)
    task = asyncio.ensure_future(to_the_end(work))
    await anyio.wait_all_tasks_blocked()
    task.cancel()
    await anyio.wait_all_tasks_blocked()
    work.gate.set()
    with pytest.raises(ValueError, match="the work failed"):
        await task
