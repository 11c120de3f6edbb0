"""Retention: finished jobs are purged by age and count, in batches, in the background."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from jobwarden import JobState, Supervisor, builtin
from jobwarden.actors.retention import MAX_COUNT, Retainer, Retention
from jobwarden.errors import JobNotFound
from jobwarden.records import StreamReset
from jobwarden.store.base import JobQuery
from jobwarden.store.memory import MemoryStore
from jobwarden.store.sqlite import SqliteStore
from tests.store.conformance import Jobs

pytestmark = pytest.mark.anyio


class CountingStore(MemoryStore):
    """A memory store that records each purge call's limit, and can fail the first ones."""

    def __init__(self, failures: int = 0) -> None:
        super().__init__()
        self.calls: list[int | None] = []
        self.failures = failures

    async def purge(
        self,
        *,
        finished_before: datetime | None,
        keep_finished: int | None,
        limit: int | None = None,
    ) -> int:
        self.calls.append(limit)
        if self.failures:
            self.failures -= 1
            raise OSError("disk went away")
        return await super().purge(
            finished_before=finished_before, keep_finished=keep_finished, limit=limit
        )


async def test_a_sweep_purges_beyond_the_count_in_batches() -> None:
    """max_jobs=2 with batch=3 purges the 7 oldest of 9 finished jobs in three calls."""
    store = CountingStore()
    jobs = Jobs()
    made = [await jobs.put_finished(store) for _ in range(9)]
    live = await jobs.put(store)
    retainer = Retainer(store, Retention(max_age_s=None, max_jobs=2, batch=3))
    assert await retainer.sweep() == 7
    assert store.calls == [3, 3, 3]
    left = (await store.list_jobs(JobQuery())).jobs
    assert [r.id for r in left] == [live.id, made[8].id, made[7].id]
    assert (retainer.sweeps, retainer.purged) == (1, 7)


async def test_a_sweep_purges_by_age() -> None:
    """max_age_s purges finished jobs that ended longer ago, and keeps unfinished ones."""
    store = MemoryStore()
    jobs = Jobs()
    old = await jobs.put_finished(store)  # finished at T0, long ago
    live = await jobs.put(store)
    retainer = Retainer(store, Retention(max_age_s=60, max_jobs=None))
    assert await retainer.sweep() == 1
    assert await store.get(old.id) is None
    assert await store.get(live.id) == live


async def test_no_criteria_means_no_purge() -> None:
    """With both criteria off, a sweep does not touch the store."""
    store = CountingStore()
    await Jobs().put_finished(store)
    assert await Retainer(store, Retention(max_age_s=None, max_jobs=None)).sweep() == 0
    assert store.calls == []


async def test_the_supervisor_sweeps_in_the_background() -> None:
    """A supervisor with retention purges finished jobs on its own, at every interval."""
    store = MemoryStore()
    policy = Retention(max_age_s=None, max_jobs=0, interval_s=0.001)
    async with Supervisor(plugins=[builtin], store=store, retention=policy) as sup:
        assert sup.retainer is not None
        record = await sup.submit("builtin.echo", {"text": "gone soon"})
        assert (await sup.wait(record.id)).state is JobState.SUCCEEDED
        await sup.retainer.wait_swept(sup.retainer.sweeps + 2)
        assert await store.get(record.id) is None


async def test_a_failing_sweep_is_logged_and_retried() -> None:
    """A sweep that raises is logged with its traceback and the next interval tries again."""
    store = CountingStore(failures=1)
    policy = Retention(max_age_s=None, max_jobs=0, interval_s=0.001)
    with capture_logs() as logs:
        async with Supervisor(plugins=[builtin], store=store, retention=policy) as sup:
            assert sup.retainer is not None
            await sup.retainer.wait_swept(1)
    failures = [e for e in logs if e["event"].startswith("retention sweep failed")]
    assert len(failures) == 1
    assert failures[0]["log_level"] == "error"
    assert len(store.calls) >= 2


async def test_retention_none_runs_no_sweeper() -> None:
    """retention=None: no retainer, finished jobs stay."""
    store = MemoryStore()
    async with Supervisor(plugins=[builtin], store=store, retention=None) as sup:
        assert sup.retainer is None
        await sup.run("builtin.echo", {"text": "kept"})
    assert len((await store.list_jobs(JobQuery())).jobs) == 1


@pytest.mark.parametrize(
    "kw",
    [
        {"max_age_s": -1.0},
        {"max_age_s": float("nan")},
        {"max_age_s": float("inf")},
        {"max_age_s": 1e11},
        {"max_jobs": -1},
        {"max_jobs": 2**63},
        {"interval_s": 0.0},
        {"interval_s": float("nan")},
        {"interval_s": 10**400},
        {"batch": 0},
        {"batch": 2**63},
    ],
    ids=lambda kw: str(kw)[:40],
)
def test_bad_policies_are_refused(kw: dict[str, float]) -> None:
    """Negative, NaN or past-a-century ages (whose cut-off no date can hold: every sweep failed,
    max_jobs never applied), negative counts, counts past 64 bits (which SQLite cannot bind:
    every purge failed), a zero, NaN or past-a-century interval (which anyio cannot sleep) and
    an empty batch are refused."""
    with pytest.raises(ValueError, match="must be"):
        Retention(**kw)  # type: ignore[arg-type]


async def test_the_largest_counts_a_policy_takes_sweep_on_the_sqlite_store(tmp_path: Path) -> None:
    """max_jobs and batch at their bound (2**63 - 1) reach SQLite as integers it can bind: the
    sweep purges by age as any other."""
    policy = Retention(max_age_s=0.0, max_jobs=MAX_COUNT, batch=MAX_COUNT)
    store = SqliteStore(tmp_path / "jobs.db")
    await store.open()
    try:
        old = await Jobs().put_finished(store)
        assert await Retainer(store, policy).sweep() == 1
        assert await store.get(old.id) is None
    finally:
        await store.close()


async def test_a_purged_job_is_gone_and_old_resumers_are_told(tmp_path: Path) -> None:
    """After a sweep on the SQLite store, a purged job is JobNotFound and since=0 gets a reset."""
    policy = Retention(max_age_s=None, max_jobs=1, interval_s=3600)
    store = SqliteStore(tmp_path / "jobs.db")
    async with Supervisor(plugins=[builtin], store=store, retention=policy) as sup:
        assert sup.retainer is not None
        first = await sup.submit("builtin.echo", {"text": "old"})
        await sup.wait(first.id)
        second = await sup.submit("builtin.echo", {"text": "new"})
        await sup.wait(second.id)
        assert await sup.retainer.sweep() == 1
        with pytest.raises(JobNotFound):
            await sup.get(first.id)
        assert (await sup.get(second.id)).state is JobState.SUCCEEDED
        async with sup.subscribe(since=0) as events:
            reset = await events.__anext__()
            replayed = await events.__anext__()
    assert isinstance(reset, StreamReset)
    assert reset.data.first_retained == 4
    assert (replayed.offset, replayed.subject) == (4, second.id)
