"""Write-behind outcomes on the SQLite store: a runner does not wait for its job's terminal commit,
yet nothing about the job's end is visible before that commit lands, and a lost one stops the
supervisor."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import anyio
import msgspec
import pytest

from jobwarden import JobState, Plugin, Supervisor, ToolContext
from jobwarden.errors import JobFinished, StoreError, SupervisorCrashed
from jobwarden.store.sqlite import SqliteStore
from jobwarden.store.sqlite_ops import Transition, WriteOp

pytestmark = pytest.mark.anyio


def _ends_a_job(ops: list[WriteOp]) -> bool:
    return any(type(op) is Transition and op.job_row[2] is not None for op in ops)


class HeldStore(SqliteStore):
    """A SQLite store whose writer holds every batch that finishes a job until ``release``."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.holding = threading.Event()
        self.gate = threading.Event()

    def _commit(self, ops: list[WriteOp]) -> None:
        if _ends_a_job(ops):
            self.holding.set()
            self.gate.wait()
        super()._commit(ops)


class FullAtTheEnd(SqliteStore):
    """A SQLite store whose disk fills up exactly when a job's outcome is to be written."""

    def _commit(self, ops: list[WriteOp]) -> None:
        if _ends_a_job(ops):
            raise sqlite3.OperationalError("database or disk is full")
        super()._commit(ops)


class TextIn(msgspec.Struct):
    text: str


def _leaky_plugin(contexts: list[ToolContext]) -> Plugin:
    plugin = Plugin("leaky", version="1.0.0")

    @plugin.tool(timeout=5.0)
    async def keep(inp: TextIn, ctx: ToolContext) -> TextIn:
        """Return at once, keeping the context (as a tool leaking it to a late callback would)."""
        contexts.append(ctx)
        return inp

    return plugin


async def test_a_jobs_end_is_seen_only_once_committed(tmp_path: Path) -> None:
    """While the terminal commit is held the job reads as running, its succeeded event and
    waiters wait, and a late progress report or cancel cannot change the outcome."""
    store = HeldStore(tmp_path / "jobs.db")
    contexts: list[ToolContext] = []
    async with Supervisor(plugins=[_leaky_plugin(contexts)], store=store) as sup:
        record = await sup.submit("leaky.keep", {"text": "hi"})
        async with sup.subscribe(job_id=record.id) as events:
            await anyio.to_thread.run_sync(store.holding.wait)
            assert (await sup.get(record.id)).state is JobState.RUNNING
            await contexts[0].progress(0.9, "late")
            outcome: list[BaseException] = []

            async def cancel() -> None:
                try:
                    await sup.cancel(record.id)
                except JobFinished as exc:
                    outcome.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(cancel)
                await anyio.wait_all_tasks_blocked()
                assert outcome == []
                store.gate.set()
            final = await sup.wait(record.id)
            kinds = [event.type.rsplit(".", 1)[1] async for event in events]
    assert final.state is JobState.SUCCEEDED
    assert (final.result, final.progress) == ({"text": "hi"}, None)
    assert kinds == ["queued", "running", "succeeded"]
    assert "finished succeeded first" in str(outcome[0])


async def test_a_lost_write_behind_outcome_stops_the_supervisor(tmp_path: Path) -> None:
    """A terminal commit that fails stops the supervisor with SupervisorCrashed, as an awaited
    one does."""
    store = FullAtTheEnd(tmp_path / "jobs.db")
    contexts: list[ToolContext] = []
    with pytest.raises(SupervisorCrashed, match=r"the job store failed: .*disk is full") as info:
        async with Supervisor(
            plugins=[_leaky_plugin(contexts)], store=store, max_restarts=100
        ) as sup:
            record = await sup.submit("leaky.keep", {"text": "never recorded"})
            with anyio.fail_after(10):
                await sup.wait(record.id)
    assert isinstance(info.value.__cause__, StoreError)
