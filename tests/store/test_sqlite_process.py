"""WriterProcess: the SQLite store's writer process, its frames, its transactions and its end.

The child is the real one on a real file. A commit is held by stopping the child (SIGSTOP) and
released by continuing it (SIGCONT): frames sent meanwhile wait in the pipe, as they would behind
a slow commit.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import anyio
import msgspec
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from structlog.testing import capture_logs

from jobwarden.actors.states import JobState
from jobwarden.errors import StoreError
from jobwarden.store import sqlite_process
from jobwarden.store.sqlite_ops import Put, Transition
from jobwarden.store.sqlite_process import (
    HEADER,
    PIPE_SIZE,
    Transaction,
    WriterClosed,
    WriterProcess,
)
from jobwarden.store.sqlite_schema import migrate
from jobwarden.store.timings import StoreTimings
from tests.store.conformance import Jobs

pytestmark = pytest.mark.anyio

Change = tuple[int | None, int | None, int, bool, int | None]


class Writer:
    """A WriterProcess on a migrated file, with what its transactions reported."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.jobs = Jobs()
        self.changes: list[Change] = []
        self.timings = StoreTimings()
        self.lock = os.open(path, os.O_RDWR)
        self.process = WriterProcess(
            path,
            synchronous="normal",
            max_bytes=None,
            applied=self._applied,
            timings=self.timings,
        )

    def _applied(self, done: Transaction) -> None:
        assert done.seconds >= 0
        self.changes.append(done[:5])

    async def start(self) -> WriterProcess:
        await anyio.to_thread.run_sync(self.process.spawn, self.lock)
        await self.process.start()
        return self.process

    def put(self, **fields: object) -> Put:
        return self.put_in(self.jobs, **fields)

    @staticmethod
    def put_in(jobs: Jobs, **fields: object) -> Put:
        record = jobs.record(**fields)  # type: ignore[arg-type]
        return Put(record, jobs.event(record))

    def stored(self) -> set[str]:
        """The ids of the jobs in the file, read on a connection of the test's own."""
        with sqlite3.connect(self.path) as db:
            return {row[0] for row in db.execute("SELECT id FROM jobs")}

    @contextmanager
    def held(self) -> Iterator[None]:
        """The child stopped (no commit goes on) inside the block, continued after it."""
        pid = self.process.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            with suppress(ProcessLookupError):  # killed, or exited once continued
                os.kill(pid, signal.SIGCONT)


def _job_id(op: Put) -> str:
    job_id = op.job_row[1]
    assert isinstance(job_id, str)
    return job_id


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[Writer]:
    """A started writer on a new file; closed after the test."""
    path = tmp_path / "jobs.db"
    with sqlite3.connect(path, isolation_level=None) as db:
        db.execute("PRAGMA journal_mode = WAL")
        migrate(db, str(path))
    made = Writer(path)
    await made.start()
    try:
        yield made
    finally:
        await made.process.close()
        os.close(made.lock)


async def test_writes_of_one_turn_go_out_as_one_frame(writer: Writer) -> None:
    """Writes queued without yielding in between are one frame, so one transaction."""
    reported: list[BaseException | None] = []
    ops = [writer.put() for _ in range(5)]
    for op in ops[:-1]:
        writer.process.write_soon(op, reported.append)
    await writer.process.write(ops[-1])
    assert reported == [None] * 4
    assert writer.changes == [(1, 5, 0, False, None)]
    stats = writer.process.statistics()
    assert (stats.commits, stats.writes) == (1, 5)
    assert writer.stored() == {_job_id(op) for op in ops}


async def test_every_write_is_timed_once_in_its_series(writer: Writer) -> None:
    """Each write counts once in its own latency histogram (put, transition), timed per frame."""
    ops = [writer.put() for _ in range(3)]
    for op in ops[:-1]:
        writer.process.write_soon(op, lambda error: None)
    await writer.process.write(ops[-1])
    record = writer.jobs.record()
    await writer.process.write(Put(record, writer.jobs.event(record)))
    running = msgspec.structs.replace(record, state=JobState.RUNNING)
    await writer.process.write(Transition(running, writer.jobs.event(running)))
    timings = writer.timings.snapshot()
    assert (timings["put"].count, timings["transition"].count) == (4, 1)
    assert timings["put"].sum >= 0
    assert timings["commit"].count == 0  # the store's own bookkeeping times commits


async def test_frames_waiting_together_commit_as_one_transaction(writer: Writer) -> None:
    """Frames sent while a commit is held (one per loop turn) are committed together, in order,
    and each write is reported once that transaction is in the file."""
    ops = [writer.put() for _ in range(4)]
    seen: list[bool] = []
    with writer.held():
        async with anyio.create_task_group() as tg:
            for op in ops:
                tg.start_soon(writer.process.write, op)
                await anyio.wait_all_tasks_blocked()
                writer.process.flush()  # its own frame, in the pipe
            writer.process.write_soon(
                writer.put(), lambda error: seen.append(_job_id(ops[0]) in writer.stored())
            )
            writer.process.flush()
            assert writer.changes == []
            os.kill(writer.process.pid or 0, signal.SIGCONT)
    assert seen == [True]
    assert writer.changes == [(1, 5, 0, False, None)]
    stats = writer.process.statistics()
    assert (stats.commits, stats.writes) == (1, 5)


async def test_write_soon_reports_on_the_loop_after_the_commit(writer: Writer) -> None:
    """write_soon returns at once; its callback runs on the event loop's thread, committed."""
    op = writer.put()
    seen: list[tuple[BaseException | None, bool, bool]] = []
    done = anyio.Event()
    loop_thread = threading.get_ident()

    def committed(error: BaseException | None) -> None:
        seen.append((error, threading.get_ident() == loop_thread, _job_id(op) in writer.stored()))
        done.set()

    writer.process.write_soon(op, committed)
    assert seen == []
    await done.wait()
    assert seen == [(None, True, True)]


async def test_results_reach_their_own_frames_ops(writer: Writer) -> None:
    """Two frames in one transaction: the second frame's keyed put gets the record the first
    frame's keyed put stored under the same key."""
    first = writer.put(owner="alice", key="k")
    again = writer.put(owner="alice", key="k")
    with writer.held():
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer.process.write, first)
            await anyio.wait_all_tasks_blocked()
            writer.process.flush()
            tg.start_soon(writer.process.write, again)
            await anyio.wait_all_tasks_blocked()
            writer.process.flush()
            os.kill(writer.process.pid or 0, signal.SIGCONT)
    assert writer.process.statistics().commits == 1
    assert first.existing is None
    assert again.existing == first.job_row[7]
    assert writer.stored() == {_job_id(first)}


async def test_a_failing_transaction_fails_only_its_frames(writer: Writer) -> None:
    """Both frames of a refused transaction fail with SQLite's message and neither is in the
    file; the transactions before and after it commit."""
    with sqlite3.connect(writer.path) as db:
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON jobs WHEN NEW.tool = 'bad.tool'"
            " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
    before = writer.put()
    await writer.process.write(before)
    bad, neighbour, after = writer.put(tool="bad.tool"), writer.put(), writer.put()
    failed: list[BaseException] = []
    reported: list[BaseException | None] = []

    async def awaited() -> None:
        try:
            await writer.process.write(bad)
        except StoreError as exc:
            failed.append(exc)

    with writer.held():
        async with anyio.create_task_group() as tg:
            tg.start_soon(awaited)
            await anyio.wait_all_tasks_blocked()
            writer.process.flush()
            writer.process.write_soon(neighbour, reported.append)
            writer.process.flush()
            os.kill(writer.process.pid or 0, signal.SIGCONT)
    await writer.process.write(after)
    assert [str(exc) for exc in failed] == [
        f"the job store {writer.path} refused a write: refused by the test"
    ]
    assert [str(error) for error in reported] == [str(failed[0])]
    assert writer.stored() == {_job_id(before), _job_id(after)}
    assert writer.changes == [(1, 1, 0, False, None), (4, 4, 0, False, None)]


async def test_frames_bigger_than_the_pipe_go_out_without_blocking_the_loop(
    writer: Writer,
) -> None:
    """Frames several times the pipe's size, queued while the child is stopped, wait in the
    loop's buffer (the loop goes on running) and are all committed once it runs again."""
    big = "x" * (3 * PIPE_SIZE)
    ops = [writer.put(input={"text": big, "n": n}) for n in range(3)]
    small = writer.put()
    with writer.held():
        async with anyio.create_task_group() as tg:
            for op in ops:
                tg.start_soon(writer.process.write, op)
                await anyio.wait_all_tasks_blocked()
                writer.process.flush()
            writer.process.write_soon(small, lambda error: None)
            await anyio.wait_all_tasks_blocked()  # the loop still runs: nothing blocked it
            os.kill(writer.process.pid or 0, signal.SIGCONT)
        await writer.process.write(writer.put())
    assert {_job_id(op) for op in [*ops, small]} <= writer.stored()
    with sqlite3.connect(writer.path) as db:
        sizes = [row[0] for row in db.execute("SELECT length(record) FROM jobs ORDER BY seq")]
    assert all(size > len(big) for size in sizes[:3])


async def test_a_transition_in_the_same_frame_as_its_put_leaves_the_last_record(
    writer: Writer,
) -> None:
    """A put and two transitions of one job in one frame store its last record, count it
    finished once and keep all three events."""
    from jobwarden.actors.states import JobState
    from tests.store.conformance import T0

    record = writer.jobs.record()
    put = Put(record, writer.jobs.event(record))
    running = msgspec.structs.replace(record, state=JobState.RUNNING, started_at=T0)
    done = msgspec.structs.replace(running, state=JobState.SUCCEEDED, finished_at=T0)
    writer.process.write_soon(put, lambda error: None)
    writer.process.write_soon(Transition(running, writer.jobs.event(running)), lambda e: None)
    await writer.process.write(Transition(done, writer.jobs.event(done)))
    assert writer.changes == [(1, 3, 1, False, None)]
    with sqlite3.connect(writer.path) as db:
        assert db.execute("SELECT state FROM jobs").fetchall() == [("succeeded",)]
        assert db.execute("SELECT count(*) FROM events").fetchone() == (3,)


async def test_close_commits_what_is_queued_then_refuses_writes(writer: Writer) -> None:
    """close() sends the open frame and waits for every reply, even for frames held behind a
    stopped child; a write after it raises WriterClosed, and the child has exited."""
    results: list[BaseException | None] = []
    ops = [writer.put() for _ in range(3)]
    process = writer.process
    pid = process.pid
    assert pid is not None
    with writer.held():
        process.write_soon(ops[0], results.append)
        process.flush()
        process.write_soon(ops[1], results.append)
        process.flush()
        process.write_soon(ops[2], results.append)  # still in the open frame
        async with anyio.create_task_group() as tg:
            tg.start_soon(process.close)
            await anyio.wait_all_tasks_blocked()
            assert results == []
            os.kill(pid, signal.SIGCONT)
    assert results == [None, None, None]
    assert writer.stored() == {_job_id(op) for op in ops}
    assert process.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # exited and reaped: not even a zombie is left
    with pytest.raises(WriterClosed):
        await process.write(writer.put())
    with pytest.raises(WriterClosed):
        process.write_soon(writer.put(), results.append)
    await process.close()  # a second close does nothing


async def test_close_sends_an_open_frame_bigger_than_the_pipe(writer: Writer) -> None:
    """A frame too big for the pipe, still open when close() is called behind a stopped child,
    goes out in pieces as the child reads, and is committed before close() returns."""
    results: list[BaseException | None] = []
    big = writer.put(input={"text": "x" * (3 * PIPE_SIZE)})
    process = writer.process
    pid = process.pid
    assert pid is not None

    async def write_then_close() -> None:
        process.write_soon(big, results.append)
        await process.close()  # in the same turn: close() itself sends the open frame

    with writer.held():
        async with anyio.create_task_group() as tg:
            tg.start_soon(write_then_close)
            await anyio.wait_all_tasks_blocked()
            assert results == []
            os.kill(pid, signal.SIGCONT)
    assert results == [None]
    assert writer.stored() == {_job_id(big)}


async def test_a_killed_child_fails_pending_and_later_writes(writer: Writer) -> None:
    """When the child is killed, the writes waiting on it and every later one fail with a
    StoreError naming the signal, wait_failed() returns that error, and close() still returns."""
    process = writer.process
    pid = process.pid
    assert pid is not None
    failed: list[BaseException] = []
    reported: list[BaseException | None] = []

    async def awaited() -> None:
        try:
            await process.write(writer.put())
        except StoreError as exc:
            failed.append(exc)

    with capture_logs() as logs, writer.held():
        async with anyio.create_task_group() as tg:
            tg.start_soon(awaited)
            await anyio.wait_all_tasks_blocked()
            process.write_soon(writer.put(), reported.append)
            os.kill(pid, signal.SIGKILL)
    assert [str(exc) for exc in failed] == [
        f"the writer process of the job store {writer.path} was killed by SIGKILL"
    ]
    assert [str(error) for error in reported] == [str(failed[0])]
    assert str(await process.wait_failed()) == str(failed[0])
    with pytest.raises(StoreError, match="killed by SIGKILL"):
        await process.write(writer.put())
    with pytest.raises(StoreError, match="killed by SIGKILL"):
        process.write_soon(writer.put(), reported.append)
    assert [entry["event"] for entry in logs] == ["the SQLite writer process ended"]
    with anyio.fail_after(10):
        await process.close()


async def test_a_crashed_child_fails_pending_writes_with_its_exit_status(writer: Writer) -> None:
    """A child that crashes (here on a frame that is not marshal data) fails the write waiting
    on it and the later ones with a StoreError naming its exit status."""
    process = writer.process
    failed: list[BaseException] = []

    async def awaited() -> None:
        try:
            await process.write(writer.put())
        except StoreError as exc:
            failed.append(exc)

    with writer.held(), capture_logs():
        async with anyio.create_task_group() as tg:
            tg.start_soon(awaited)
            await anyio.wait_all_tasks_blocked()
            process.flush()
            garbage = b"\xff" * 8
            os.write(process._requests, HEADER.pack(len(garbage)) + garbage)
            os.kill(process.pid or 0, signal.SIGCONT)
    assert [str(exc) for exc in failed] == [
        f"the writer process of the job store {writer.path} exited with status 1"
    ]
    with pytest.raises(StoreError, match="exited with status 1"):
        await process.write(writer.put())


def _unstarted(path: Path) -> WriterProcess:
    """A writer on ``path`` whose transactions nobody looks at."""
    return WriterProcess(
        path, synchronous="full", max_bytes=None, applied=lambda done: None, timings=StoreTimings()
    )


async def test_a_child_that_cannot_open_the_file_fails_start(tmp_path: Path) -> None:
    """start() raises StoreError with SQLite's reason when the child cannot open the file."""
    lock = os.open(tmp_path, os.O_RDONLY)
    try:
        process = _unstarted(tmp_path)
        await anyio.to_thread.run_sync(process.spawn, lock)
        with pytest.raises(StoreError, match="unusable: unable to open database file"):
            await process.start()
        assert process.pid is None
    finally:
        os.close(lock)


async def test_a_child_spawned_but_never_started_is_ended_by_close(tmp_path: Path) -> None:
    """close() on a writer whose opening stopped between spawn and start ends the child and
    reaps it."""
    path = tmp_path / "jobs.db"
    with sqlite3.connect(path, isolation_level=None) as db:
        migrate(db, str(path))
    lock = os.open(path, os.O_RDWR)
    try:
        process = _unstarted(path)
        await anyio.to_thread.run_sync(process.spawn, lock)
        pid = process.pid
        assert pid is not None
        await process.close()
        assert process.pid is None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        with pytest.raises(WriterClosed):
            process.write_soon(Writer.put_in(Jobs()), print)
    finally:
        os.close(lock)


async def test_a_failing_callback_is_logged_and_the_others_still_run(writer: Writer) -> None:
    """A commit callback that raises is logged; the frame's other writes are still reported."""
    reported: list[BaseException | None] = []

    def broken(error: BaseException | None) -> None:
        raise RuntimeError("callback bug")

    with capture_logs() as logs:
        writer.process.write_soon(writer.put(), broken)
        writer.process.write_soon(writer.put(), reported.append)
        await writer.process.write(writer.put())
    assert reported == [None]
    assert [entry["event"] for entry in logs] == ["a commit callback failed"]


async def test_a_cancelled_write_still_completes_before_the_cancel_is_seen(
    writer: Writer,
) -> None:
    """A write whose task is cancelled while its commit is held returns only after the commit."""
    op = writer.put()
    with writer.held():

        async def release() -> None:
            await anyio.wait_all_tasks_blocked()
            os.kill(writer.process.pid or 0, signal.SIGCONT)

        async with anyio.create_task_group() as tg:
            tg.start_soon(release)
            with anyio.CancelScope() as scope:
                scope.cancel()
                await writer.process.write(op)
            assert _job_id(op) in writer.stored()
    assert scope.cancelled_caught


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_write_cancelled_twice_by_asyncio_still_waits_for_its_commit(
    writer: Writer,
) -> None:
    """Task.cancel() twice while the commit is held (a shield stops neither): the write still
    returns only after the commit."""
    op = writer.put()
    with writer.held():
        task = asyncio.ensure_future(writer.process.write(op))
        for _ in range(2):
            await anyio.wait_all_tasks_blocked()
            task.cancel()
        await anyio.wait_all_tasks_blocked()
        assert not task.done()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _job_id(op) in writer.stored()


_PARENT = """
import sys, anyio
from jobwarden.store.sqlite import SqliteStore
from tests.store.conformance import Jobs

async def main():
    store = SqliteStore(sys.argv[1])
    await store.open()
    jobs = Jobs()
    record = jobs.record()
    await store.put(record, jobs.event(record))
    print(store._commits.pid, record.id, flush=True)
    await anyio.sleep_forever()

anyio.run(main)
"""


async def test_the_child_exits_when_its_parent_is_killed(tmp_path: Path) -> None:
    """A parent process killed with SIGKILL leaves no writer process behind: the child sees the
    end of its input and exits; what the parent committed is in the file."""
    path = tmp_path / "jobs.db"
    root = Path(__file__).parents[2]
    parent = await anyio.open_process(
        [sys.executable, "-c", _PARENT, str(path)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stderr=None,
    )
    try:
        assert parent.stdout is not None
        with anyio.fail_after(30):
            line = await BufferedByteReceiveStream(parent.stdout).receive_until(b"\n", 1000)
        child, job_id = line.split()
        pidfd = os.pidfd_open(int(child))
    finally:
        parent.kill()
        await parent.aclose()
    try:
        with anyio.fail_after(10):
            await anyio.wait_readable(pidfd)  # readable once the child has exited
    finally:
        os.close(pidfd)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT id FROM jobs").fetchall() == [(job_id.decode(),)]


async def test_a_writer_that_does_not_exit_is_killed_by_close(
    writer: Writer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """close() waits CLOSE_TIMEOUT_S for a child that does not exit (here: stopped), then kills
    it, says so in the log, and returns with the child reaped."""
    monkeypatch.setattr(sqlite_process, "CLOSE_TIMEOUT_S", 0.2)
    pid = writer.process.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    with capture_logs() as logs, anyio.fail_after(10):
        await writer.process.close()
    assert writer.process.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    [killed] = [e for e in logs if "did not exit" in e["event"]]
    assert (killed["log_level"], killed["pid"]) == ("error", pid)


async def test_a_writer_process_that_cannot_start_is_a_store_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child that cannot be started at all (no Python to run it) is a StoreError naming the
    file and the reason, and leaves no pipe open."""
    path = tmp_path / "jobs.db"
    with sqlite3.connect(path, isolation_level=None) as db:
        migrate(db, str(path))
    lock = os.open(path, os.O_RDWR)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))
    try:
        before = _pipes()
        process = _unstarted(path)
        expected = re.escape(f"cannot start the writer process of {path}: ")
        with pytest.raises(StoreError, match=expected):
            process.spawn(lock)
        # New pipes only: an earlier test's socket the gc closes meanwhile is no leak of this one.
        assert _pipes() - before == set()
        assert process.pid is None
    finally:
        os.close(lock)


def _pipes() -> set[str]:
    """This process's open pipes, as /proc names them (``pipe:[inode]``)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:  # closed since it was listed
            continue
        if target.startswith("pipe:"):
            found.add(target)
    return found
