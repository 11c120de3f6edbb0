"""The deadline watchdog: one task cancelling calls and ringing wait alarms as they come due."""

from __future__ import annotations

import anyio
import pytest

from jobwarden.actors import deadlines as deadlines_module
from jobwarden.actors.deadlines import Deadlines
from jobwarden.plugins.context import ToolContext

pytestmark = pytest.mark.anyio


async def _nothing(fraction: float, message: str | None) -> None:
    return None


def _ctx() -> ToolContext:
    return ToolContext(job_id="j", tool="t.t", attempt=1, progress=_nothing)


async def test_due_scope_is_cancelled_and_marked_timed_out() -> None:
    """A scope whose deadline passes is cancelled and its context says timed_out."""
    watchdog = Deadlines()
    async with anyio.create_task_group() as tg:
        tg.start_soon(watchdog.run)
        ctx = _ctx()
        with anyio.CancelScope() as scope:
            watchdog.watch(anyio.current_time() + 0.01, scope, ctx)
            await anyio.sleep_forever()
        assert scope.cancelled_caught
        assert ctx.timed_out
        assert ctx.cancel_requested
        tg.cancel_scope.cancel()


async def test_an_earlier_deadline_wakes_the_watchdog() -> None:
    """A new deadline earlier than the one the watchdog sleeps towards fires on time."""
    watchdog = Deadlines()
    async with anyio.create_task_group() as tg:
        tg.start_soon(watchdog.run)
        far = anyio.CancelScope()
        watchdog.watch(anyio.current_time() + 3600, far, _ctx())
        await anyio.wait_all_tasks_blocked()
        with anyio.fail_after(5), anyio.CancelScope() as near:
            watchdog.watch(anyio.current_time() + 0.01, near, _ctx())
            await anyio.sleep_forever()
        assert near.cancelled_caught
        assert not far.cancel_called
        tg.cancel_scope.cancel()


async def test_finished_calls_are_not_cancelled_and_the_heap_is_compacted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A call marked done is never cancelled, and finished entries do not pile up."""
    monkeypatch.setattr(deadlines_module, "COMPACT_AT", 4)
    watchdog = Deadlines()
    async with anyio.create_task_group() as tg:
        tg.start_soon(watchdog.run)
        scopes = [anyio.CancelScope() for _ in range(10)]
        entries = [watchdog.watch(anyio.current_time() + 0.01, s, _ctx()) for s in scopes]
        for entry in entries:
            watchdog.done(entry)
        watchdog.done(entries[0])  # twice is harmless
        assert len(watchdog._heap) < 10  # compaction is the point
        assert not watchdog._pending  # nothing of a finished call stays referenced
        with anyio.CancelScope() as last:
            watchdog.watch(anyio.current_time() + 0.02, last, _ctx())
            await anyio.sleep_forever()
        assert not any(s.cancel_called for s in scopes)
        tg.cancel_scope.cancel()


async def test_no_deadline_means_no_entry() -> None:
    """An infinite deadline is not watched at all."""
    assert Deadlines().watch(float("inf"), anyio.CancelScope(), _ctx()) is None


async def test_an_alarm_sets_its_event_at_the_deadline() -> None:
    """An alarm sets its event once its deadline passes, and a finished alarm never does."""
    watchdog = Deadlines()
    async with anyio.create_task_group() as tg:
        tg.start_soon(watchdog.run)
        rung, silenced = anyio.Event(), anyio.Event()
        watchdog.done(watchdog.alarm(anyio.current_time() + 0.01, silenced))
        watchdog.alarm(anyio.current_time() + 0.02, rung)
        with anyio.fail_after(5):
            await rung.wait()
        assert not silenced.is_set()
        assert watchdog.alarm(float("inf"), silenced) is None
        tg.cancel_scope.cancel()
