"""A store that refuses writes: submits and cancels are refused cleanly; a lost outcome stops
the supervisor with the reason instead of restarting into the same failure."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import anyio
import pytest

from jobwarden import JobState, Supervisor, builtin
from jobwarden.errors import ShuttingDown, StoreError, StoreUnavailable, SupervisorCrashed
from jobwarden.store.base import JobQuery
from jobwarden.store.sqlite import SqliteStore
from tests.fakes import FullStore, Gates, fake_plugin

pytestmark = pytest.mark.anyio


async def test_a_refused_put_is_a_503_and_creates_nothing() -> None:
    """submit() raises StoreUnavailable (503 shutting_down, reason store_unavailable)."""
    store = FullStore()
    async with Supervisor(plugins=[builtin], store=store) as sup:
        kept = await sup.run("builtin.echo", {"text": "before"})
        store.fail_puts = True
        with pytest.raises(StoreUnavailable) as info:
            await sup.submit("builtin.echo", {"text": "lost?"})
        store.fail_puts = False
        after = await sup.run("builtin.echo", {"text": "after"})
        assert sup.statistics().queued == 0
        offsets = [e.offset for e in await store.read_events(0, 100)]
    assert isinstance(info.value, ShuttingDown)
    envelope = info.value.info()
    assert (envelope.type, info.value.status) == ("shutting_down", 503)
    assert envelope.details == {"reason": "store_unavailable"}
    assert "disk is full" in envelope.message
    assert info.value.retry_after_s > 0
    assert (kept, after) == ({"text": "before"}, {"text": "after"})
    assert len((await store.list_jobs(JobQuery())).jobs) == 2
    assert offsets == [1, 2, 3, 5, 6, 7]  # the refused job's offset was never written


async def test_a_store_that_cannot_be_read_is_a_503_not_a_crash() -> None:
    """get() and list_jobs() on an unreadable store raise StoreUnavailable (503), and the
    supervisor keeps working once the store answers again."""
    store = FullStore()
    async with Supervisor(plugins=[builtin], store=store) as sup:
        done = await sup.run("builtin.echo", {"text": "kept"})
        job = (await sup.list_jobs()).jobs[0]
        store.unreadable = True
        with pytest.raises(StoreUnavailable, match="could not be read") as got:
            await sup.get(job.id)
        with pytest.raises(StoreUnavailable, match="could not be listed"):
            await sup.list_jobs(JobQuery())
        store.unreadable = False
        assert (await sup.get(job.id)).result == done
    assert got.value.info().details == {"reason": "store_unavailable"}


async def test_a_refused_cancel_is_a_503_and_the_job_keeps_its_state() -> None:
    """cancel() of a queued job whose cancel cannot be stored raises StoreUnavailable."""
    gates = Gates()
    store = FullStore(fail_state=JobState.CANCELLED)
    async with Supervisor(plugins=[fake_plugin(gates, cap=1)], store=store) as sup:
        first = await sup.submit("fake.gate", {"key": "a"})
        queued = await sup.submit("fake.gate", {"key": "b"})
        with pytest.raises(StoreUnavailable):
            await sup.cancel(queued.id)
        assert (await sup.get(queued.id)).state is JobState.QUEUED
        store.fail_state = None
        gates.open("a")
        gates.open("b")
        assert (await sup.wait(first.id)).state is JobState.SUCCEEDED
        assert (await sup.wait(queued.id)).state is JobState.SUCCEEDED


async def test_an_outcome_that_cannot_be_stored_stops_the_supervisor() -> None:
    """A runner whose result cannot be written stops the supervisor with SupervisorCrashed."""
    store = FullStore(fail_state=JobState.SUCCEEDED)
    with pytest.raises(SupervisorCrashed, match=r"the job store failed: .*disk is full") as info:
        async with Supervisor(plugins=[builtin], store=store, max_restarts=100) as sup:
            record = await sup.submit("builtin.echo", {"text": "never recorded"})
            with anyio.fail_after(10):
                await sup.wait(record.id)
    assert isinstance(info.value.__cause__, StoreError)


@pytest.mark.parametrize("durable", [True, False])
async def test_jobs_running_when_the_store_failed_are_left_for_recovery(durable: bool) -> None:
    """When an outcome cannot be stored, the jobs still running are left running in a durable
    store (the next start ends them interrupted, or runs a restartable one again), not written
    cancelled: that small write could fit where the outcome did not, replacing a result. A
    store that keeps nothing across a restart still gets the cancel."""
    gates = Gates()
    store = FullStore(fail_state=JobState.SUCCEEDED)
    store.durable = durable
    with pytest.raises(SupervisorCrashed, match="disk is full"):
        async with Supervisor(plugins=[fake_plugin(gates), builtin], store=store) as sup:
            held = await sup.submit("fake.gate", {"key": "held"})
            await gates.wait_entered("held")
            lost = await sup.submit("builtin.echo", {"text": "its outcome is refused"})
            with anyio.fail_after(10):
                await sup.wait(lost.id)
    left = (await store.get(held.id), await store.get(lost.id))
    assert [record.state for record in left if record is not None] == (
        [JobState.RUNNING] * 2 if durable else [JobState.CANCELLED] * 2
    )


@pytest.mark.parametrize("busy", [False, True])
async def test_a_killed_sqlite_writer_stops_the_supervisor_at_once(
    busy: bool, tmp_path: Path
) -> None:
    """A SQLite writer process killed while the supervisor is idle (or while a job runs) stops
    it with SupervisorCrashed naming the signal, without waiting for a job to write, and the
    running job is left for the next start to recover."""
    gates = Gates()
    store = SqliteStore(tmp_path / "jobs.db")
    held = None
    with pytest.raises(SupervisorCrashed, match="killed by SIGKILL") as info:
        async with Supervisor(plugins=[fake_plugin(gates), builtin], store=store) as sup:
            await sup.run("builtin.echo", {"text": "before"})
            if busy:
                held = await sup.submit("fake.gate", {"key": "held"})
                await gates.wait_entered("held")
            pid = store._commits.pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            with anyio.fail_after(10):
                await anyio.sleep_forever()  # until the crash cancels the body
    assert isinstance(info.value.__cause__, StoreError)
    assert str(info.value) == (
        f"the job store failed: the writer process of the job store {store.path} was killed"
        " by SIGKILL"
    )
    async with Supervisor(
        plugins=[fake_plugin(gates), builtin], store=SqliteStore(store.path)
    ) as again:
        assert again.recovered.interrupted == (1 if busy else 0)
        if held is not None:
            assert (await again.get(held.id)).state is JobState.FAILED


@pytest.mark.parametrize("how", ["removed", "replaced"])
async def test_a_removed_or_replaced_sqlite_file_acknowledges_nothing_more(
    how: str, tmp_path: Path
) -> None:
    """Once the SQLite files are removed (or replaced by another database, as a backup restored
    under a running server) the next submit is refused rather than acknowledged into a file no
    start opens again, and the supervisor stops with SupervisorCrashed saying so."""
    path = tmp_path / "jobs.db"
    backup = tmp_path / "backup.db"
    async with Supervisor(plugins=[builtin], store=SqliteStore(backup)) as other:
        restored = await other.submit("builtin.echo", {"text": "in the backup"})
    store = SqliteStore(path)
    gone = f"the job store file {path} was removed or replaced while in use"
    with pytest.raises(SupervisorCrashed, match="removed or replaced") as info:
        async with Supervisor(plugins=[builtin], store=store) as sup:
            await sup.run("builtin.echo", {"text": "before"})
            for suffix in ("", "-wal", "-shm"):
                path.with_name(path.name + suffix).unlink()
            if how == "replaced":
                os.replace(backup, path)
            with pytest.raises(StoreUnavailable, match="removed or replaced") as refused:
                await sup.submit("builtin.echo", {"text": "never acknowledged"})
            with anyio.fail_after(10):
                await anyio.sleep_forever()  # until the crash cancels the body
    assert str(refused.value) == f"the job was not accepted: {gone}" + (
        " (No such file or directory)" if how == "removed" else ""
    )
    assert str(info.value).startswith(f"the job store failed: {gone}")
    async with Supervisor(plugins=[builtin], store=SqliteStore(path)) as again:
        listed = [job.id for job in (await again.list_jobs()).jobs]
    assert listed == ([restored.id] if how == "replaced" else [])
