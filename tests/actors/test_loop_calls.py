"""The clock, events and checkpoint looked up once per loop behave as anyio's own, on every
backend (asyncio through the cached backend, trio through anyio)."""

from __future__ import annotations

import anyio
import pytest

from jobwarden.actors import loop_calls

pytestmark = pytest.mark.anyio


async def test_the_clock_is_anyio_s_clock() -> None:
    """current_time() reads the same clock as anyio.current_time(), between two of its reads."""
    before = anyio.current_time()
    now = loop_calls.current_time()
    after = anyio.current_time()
    assert before <= now <= after


async def test_an_event_wakes_its_waiter() -> None:
    """new_event() makes an anyio Event: a task waiting on it resumes once it is set."""
    event = loop_calls.new_event()
    woke = loop_calls.new_event()
    assert isinstance(event, anyio.Event)

    async def waiter() -> None:
        await event.wait()
        woke.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        assert not woke.is_set()
        event.set()
        await woke.wait()


async def test_a_checkpoint_lets_a_ready_task_run() -> None:
    """checkpoint() yields to other ready tasks: a loop of checkpoints lets a new task run (it
    would spin forever if a checkpoint did not yield)."""
    ran = loop_calls.new_event()

    async def other() -> None:
        ran.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        while not ran.is_set():
            await loop_calls.checkpoint()


async def test_a_checkpoint_is_a_cancellation_point() -> None:
    """checkpoint() raises the cancellation of a scope cancelled before it."""
    with anyio.CancelScope() as scope:
        scope.cancel()
        await loop_calls.checkpoint()
        pytest.fail("the checkpoint did not raise the cancellation")
    assert scope.cancelled_caught
