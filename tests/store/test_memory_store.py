"""MemoryStore: the shared store conformance suite, plus its bounded event history."""

from __future__ import annotations

import pytest

from jobwarden.actors.states import JobState
from jobwarden.store import JobStore, MemoryStore
from jobwarden.store.base import EventBounds
from tests.store.conformance import Jobs, StoreConformance, offsets


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
