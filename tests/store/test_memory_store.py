"""MemoryStore: the shared store conformance suite, plus its bounded event history."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import msgspec
import pytest

from jobwarden.actors.states import TERMINAL_STATES, JobState
from jobwarden.records import JobRecord
from jobwarden.store import JobStore, MemoryStore
from jobwarden.store.base import EventBounds, JobQuery
from tests.store.conformance import T0, Jobs, StoreConformance, ids, list_all, offsets


class TestMemoryStore(StoreConformance):
    """The conformance suite against the in-memory store."""

    async def make_store(self) -> JobStore:
        return MemoryStore()


def test_memory_store_is_not_durable() -> None:
    """MemoryStore says its records do not outlive the process."""
    assert MemoryStore.durable is False
    assert isinstance(MemoryStore(), JobStore)


@pytest.mark.anyio
async def test_retain_events_bounds_the_history() -> None:
    """With retain_events=N only the newest N events are kept; event_bounds().first moves on."""
    store = MemoryStore(retain_events=3)
    jobs = Jobs()
    record = await jobs.put(store)
    await jobs.move(store, record, state=JobState.RUNNING)
    await jobs.put(store)
    assert await store.event_bounds() == EventBounds(first=1, last=3)
    await jobs.put(store)
    await jobs.put(store)
    assert await store.event_bounds() == EventBounds(first=3, last=5)
    assert offsets(await store.read_events(0, 10)) == [3, 4, 5]
    assert offsets(await store.read_events(3, 10)) == [4, 5]
    assert await store.get(record.id) is not None  # records are not bounded by the history


@pytest.mark.anyio
async def test_retain_events_with_gaps() -> None:
    """A bounded history with abandoned offsets still reads every retained event after ``after``."""
    store = MemoryStore(retain_events=3)
    jobs = Jobs()
    for _ in range(3):
        await jobs.put(store)
        jobs.abandon()
    await jobs.put(store)  # written offsets 1, 3, 5, 7; retained 3, 5, 7
    assert await store.event_bounds() == EventBounds(first=3, last=7)
    for after, expected in [(0, [3, 5, 7]), (3, [5, 7]), (4, [5, 7]), (5, [7]), (6, [7])]:
        assert offsets(await store.read_events(after, 10)) == expected, after


@pytest.mark.parametrize("retain", [0, -1])
def test_retain_events_below_one_is_refused(retain: int) -> None:
    """retain_events must be at least 1."""
    with pytest.raises(ValueError, match="retain_events"):
        MemoryStore(retain_events=retain)


def _scan(
    records: dict[str, JobRecord],
    finished_before: datetime | None,
    keep_finished: int | None,
    limit: int,
) -> list[str]:
    """What a purge removes, found the plain way: a scan of every job."""
    finished = sorted(i for i, r in records.items() if r.state in TERMINAL_STATES)
    doomed: set[str] = set()
    if keep_finished is not None:
        doomed.update(finished[: max(0, len(finished) - keep_finished)][:limit])
    if finished_before is not None:
        ended = sorted(
            (r.finished_at, i)
            for i in finished
            if (r := records[i]).finished_at is not None and r.finished_at < finished_before
        )
        doomed.update(i for _, i in ended[:limit])
    return sorted(doomed)[:limit]


TOOLS = ("demo.a", "demo.b", "other.c")
OWNERS = (None, "alice", "bob")
QUERIES = [
    JobQuery(limit=7),
    *(JobQuery(state=state, limit=7) for state in JobState),
    *(JobQuery(tool=tool, limit=7) for tool in TOOLS),
    JobQuery(plugin="demo", limit=7),
    *(JobQuery(owner=owner, limit=7) for owner in ("alice", "bob", "carol")),
    *(JobQuery(owner="alice", state=state, limit=7) for state in JobState),
    JobQuery(owner="bob", tool="demo.a", state=JobState.FAILED, limit=7),
]


async def _check_listings(store: MemoryStore, stored: dict[str, JobRecord]) -> None:
    """Every query in ``QUERIES`` lists what a scan of ``stored`` finds, newest first."""
    for query in QUERIES:
        expected = [
            job_id
            for job_id, r in sorted(stored.items(), reverse=True)
            if (query.state is None or r.state is query.state)
            and (query.tool is None or r.tool == query.tool)
            and (query.plugin is None or r.plugin == query.plugin)
            and (query.owner is None or r.owner == query.owner)
        ]
        assert ids(await list_all(store, query)) == expected, query


@pytest.mark.anyio
async def test_many_small_purges_remove_what_a_scan_would() -> None:
    """Over a few hundred jobs of several tools and owners that finish out of order (some
    never, some after a retry), each small purge removes exactly what a scan of every job
    selects, and every filtered listing and recovery find what a scan finds, until every
    finished job is gone."""
    store = MemoryStore()
    jobs = Jobs()
    rng = random.Random(20261126)
    stored: dict[str, JobRecord] = {}
    running: list[JobRecord] = []
    for round_ in range(40):
        for _ in range(12):
            roll = rng.random()
            minutes = timedelta(minutes=rng.randrange(600))
            fields: dict[str, Any] = {"tool": rng.choice(TOOLS), "owner": rng.choice(OWNERS)}
            if roll < 0.6:
                record = await jobs.put_finished(store, finished_at=T0 + minutes, **fields)
            elif roll < 0.85:
                record = await jobs.put(store, **fields)
                record = await jobs.move(store, record, state=JobState.RUNNING)
                running.append(record)
            else:
                record = await jobs.put(store, **fields)
            stored[record.id] = record
        rng.shuffle(running)
        for record in running[:4]:
            if rng.random() < 0.25:  # a retry: back to queued, then running again
                again = await jobs.move(store, record, state=JobState.QUEUED, attempt=2)
                record = await jobs.move(store, again, state=JobState.RUNNING)
                running.append(record)
            else:
                at = T0 + timedelta(minutes=round_)
                record = await jobs.move(store, record, state=JobState.FAILED, finished_at=at)
            stored[record.id] = record
        del running[:4]
        before = T0 + timedelta(minutes=rng.randrange(600)) if rng.random() < 0.5 else None
        keep = rng.randrange(40) if before is None or rng.random() < 0.5 else None
        limit = rng.randrange(1, 9)
        expected = _scan(stored, before, keep, limit)
        removed = await store.purge(finished_before=before, keep_finished=keep, limit=limit)
        assert removed == len(expected), round_
        for job_id in expected:
            del stored[job_id]
        await _check_listings(store, stored)
        unfinished = [r.id for r in await store.unfinished()]
        assert unfinished == sorted(i for i, r in stored.items() if not r.state.terminal)
    # Draining every finished job, a few at a time, rebuilds the lists of purged ids on the way.
    while expected := _scan(stored, None, 0, 5):
        assert await store.purge(finished_before=None, keep_finished=0, limit=5) == len(expected)
        for job_id in expected:
            del stored[job_id]
        await _check_listings(store, stored)
    assert all(not record.state.terminal for record in stored.values())


@pytest.mark.anyio
async def test_purges_by_age_behind_an_older_job_keep_it_findable() -> None:
    """Jobs purged by age from behind an older finished job that stays are dropped from the
    store's lists; the older job is still listed and is the next one a purge by count takes."""
    store = MemoryStore()
    jobs = Jobs()
    oldest = await jobs.put_finished(store, finished_at=T0 + timedelta(days=1))
    for _ in range(200):
        await jobs.put_finished(store, finished_at=T0)
    before = T0 + timedelta(hours=1)
    removed = [await store.purge(finished_before=before, keep_finished=None, limit=50)]
    while removed[-1]:
        removed.append(await store.purge(finished_before=before, keep_finished=None, limit=50))
    assert removed == [50, 50, 50, 50, 0]
    assert ids(await list_all(store, JobQuery())) == [oldest.id]
    assert await store.purge(finished_before=None, keep_finished=0, limit=50) == 1
    assert await list_all(store, JobQuery()) == []


@pytest.mark.anyio
async def test_a_long_job_that_ends_after_purges_is_the_oldest_finished() -> None:
    """A job started before jobs that were purged since, and finished only then, is the oldest
    finished job: the next purge by count takes it, not a younger one."""
    store = MemoryStore()
    jobs = Jobs()
    long = await jobs.move(store, await jobs.put(store), state=JobState.RUNNING)
    first = [await jobs.put_finished(store) for _ in range(3)]
    last = await jobs.put_finished(store)
    assert await store.purge(finished_before=None, keep_finished=2, limit=2) == 2
    assert await store.purge(finished_before=None, keep_finished=1, limit=1) == 1
    assert await store.get(first[2].id) is None
    await jobs.move(store, long, state=JobState.SUCCEEDED, finished_at=T0)
    assert await store.purge(finished_before=None, keep_finished=1, limit=1) == 1
    assert await store.get(long.id) is None
    assert ids(await list_all(store, JobQuery())) == [last.id]


@pytest.mark.anyio
async def test_a_second_put_of_a_job_replaces_it_and_lists_it_once() -> None:
    """Putting a stored job again (now finished) replaces its record: it is listed once, under
    its new state, and a purge counts it as finished."""
    store = MemoryStore()
    jobs = Jobs()
    record = await jobs.put(store)
    assert await list_all(store, JobQuery(state=JobState.QUEUED)) == [record]
    done = msgspec.structs.replace(record, state=JobState.SUCCEEDED, finished_at=T0)
    await store.put(done, jobs.event(done))
    assert await list_all(store, JobQuery()) == [done]
    assert await list_all(store, JobQuery(state=JobState.QUEUED)) == []
    assert await list_all(store, JobQuery(state=JobState.SUCCEEDED)) == [done]
    assert await store.purge(finished_before=None, keep_finished=0) == 1
