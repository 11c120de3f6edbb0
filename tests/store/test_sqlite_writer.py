"""BatchWriter: the SQLite store's writer thread, its batches and its reports to the event loop."""

from __future__ import annotations

import threading

import anyio
import pytest
from structlog.testing import capture_logs

from jobwarden.store.sqlite_writer import BatchWriter, WriterClosed

pytestmark = pytest.mark.anyio


class Recorder:
    """A commit function that records each batch; it can hold a commit or refuse one."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.refuse: set[str] = set()
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, ops: list[str]) -> None:
        self.entered.set()
        self.gate.wait()
        if self.refuse & set(ops):
            raise OSError("refused")
        self.batches.append(list(ops))


async def _started(commit: Recorder) -> BatchWriter[str]:
    writer: BatchWriter[str] = BatchWriter(commit, name="test-writer")
    writer.start()
    return writer


async def test_writes_queued_during_a_commit_share_the_next_one() -> None:
    """While one commit is held, later writes gather and commit together, in arrival order."""
    commit = Recorder()
    writer = await _started(commit)
    commit.gate.clear()
    reported: list[BaseException | None] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.write, "first")
        await anyio.to_thread.run_sync(commit.entered.wait)
        for name in ("a", "b"):
            writer.write_soon(name, reported.append)
        tg.start_soon(writer.write, "c")
        await anyio.wait_all_tasks_blocked()
        commit.gate.set()
    await writer.close()
    assert commit.batches == [["first"], ["a", "b", "c"]]
    assert reported == [None, None]
    assert (writer.statistics().commits, writer.statistics().writes) == (2, 4)


async def test_write_soon_reports_on_the_loop_after_the_commit() -> None:
    """write_soon returns at once; its callback runs on the event loop's thread, committed."""
    commit = Recorder()
    writer = await _started(commit)
    seen: list[tuple[BaseException | None, bool, int]] = []
    done = anyio.Event()
    loop_thread = threading.get_ident()

    def committed(error: BaseException | None) -> None:
        seen.append((error, threading.get_ident() == loop_thread, len(commit.batches)))
        done.set()

    writer.write_soon("behind", committed)
    await done.wait()
    await writer.close()
    assert seen == [(None, True, 1)]


async def test_a_refused_commit_fails_every_write_of_its_batch_only() -> None:
    """Both the awaited and the write-behind writes of a failed batch get its error; the next
    batch commits normally."""
    commit = Recorder()
    writer = await _started(commit)
    commit.refuse = {"bad"}
    commit.gate.clear()
    errors: list[BaseException | None] = []
    failed: list[BaseException] = []

    async def awaited(op: str) -> None:
        try:
            await writer.write(op)
        except OSError as exc:
            failed.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.write, "first")
        await anyio.to_thread.run_sync(commit.entered.wait)
        tg.start_soon(awaited, "bad")
        writer.write_soon("neighbour", errors.append)
        await anyio.wait_all_tasks_blocked()
        commit.gate.set()
    await writer.write("after")
    await writer.close()
    assert [str(exc) for exc in failed] == ["refused"]
    assert [str(error) for error in errors] == ["refused"]
    assert commit.batches == [["first"], ["after"]]


async def test_close_commits_what_is_queued_then_refuses_writes() -> None:
    """close() waits for the queued writes to commit; a write after it raises WriterClosed."""
    commit = Recorder()
    writer = await _started(commit)
    results: list[BaseException | None] = []
    writer.write_soon("queued", results.append)
    await writer.close()
    assert (commit.batches, results) == ([["queued"]], [None])
    with pytest.raises(WriterClosed):
        await writer.write("late")
    with pytest.raises(WriterClosed):
        writer.write_soon("late", results.append)
    await writer.close()  # a second close does nothing


async def test_a_failing_callback_is_logged_and_the_others_still_run() -> None:
    """A commit callback that raises is logged; the batch's other writes are still reported."""
    commit = Recorder()
    writer = await _started(commit)
    commit.gate.clear()
    reported: list[BaseException | None] = []

    def broken(error: BaseException | None) -> None:
        raise RuntimeError("callback bug")

    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer.write, "first")
            await anyio.to_thread.run_sync(commit.entered.wait)
            writer.write_soon("one", broken)
            writer.write_soon("two", reported.append)
            tg.start_soon(writer.write, "three")
            await anyio.wait_all_tasks_blocked()
            commit.gate.set()
        await writer.close()
    assert reported == [None]
    assert [entry["event"] for entry in logs] == ["a commit callback failed"]


async def test_a_cancelled_write_still_completes_before_the_cancel_is_seen() -> None:
    """A write whose task is cancelled while its commit is held returns only after the commit."""
    commit = Recorder()
    writer = await _started(commit)
    commit.gate.clear()

    async def release() -> None:
        await anyio.to_thread.run_sync(commit.entered.wait)
        commit.gate.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(release)
        with anyio.CancelScope() as scope:
            scope.cancel()
            await writer.write("kept")
    assert scope.cancelled_caught
    await writer.close()
    assert commit.batches == [["kept"]]
