"""``SqliteStore.put_then``: a put whose callback hears of the commit as the reply is read, before
the waiting task is resumed."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jobwarden.errors import StoreError
from jobwarden.store.sqlite import SqliteStore
from tests.store.conformance import Jobs

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "jobs.db")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def test_the_callback_runs_once_committed_before_the_put_returns(
    store: SqliteStore,
) -> None:
    """The callback gets None while the file already holds the job, before put_then returns."""
    jobs = Jobs()
    record = jobs.record()
    returned = False
    seen: list[tuple[StoreError | None, bool, bool]] = []

    def committed(error: StoreError | None) -> None:
        with sqlite3.connect(store.path) as db:
            stored = db.execute("SELECT count(*) FROM jobs WHERE id = ?", (record.id,)).fetchone()
        seen.append((error, stored == (1,), returned))

    await store.put_then(record, jobs.event(record), committed)
    returned = True
    assert seen == [(None, True, False)]
    assert await store.get(record.id) == record


async def test_a_refused_put_reports_the_error_and_raises_it(tmp_path: Path) -> None:
    """When the file refuses the put, the callback gets the StoreError and put_then raises it;
    no job is stored."""
    store = SqliteStore(tmp_path / "jobs.db")
    await store.open()
    with sqlite3.connect(store.path) as db:
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON jobs"
            " BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        )
    jobs = Jobs()
    record = jobs.record()
    seen: list[StoreError | None] = []
    try:
        with pytest.raises(StoreError, match="disk is full"):
            await store.put_then(record, jobs.event(record), seen.append)
        assert await store.get(record.id) is None
    finally:
        await store.close()
    assert len(seen) == 1
    assert isinstance(seen[0], StoreError)


async def test_a_closed_store_refuses_at_once_without_calling_back(store: SqliteStore) -> None:
    """On a closed store put_then raises StoreError and never calls the callback."""
    await store.close()
    jobs = Jobs()
    record = jobs.record()
    seen: list[StoreError | None] = []
    with pytest.raises(StoreError, match="is closed"):
        await store.put_then(record, jobs.event(record), seen.append)
    assert seen == []


async def test_a_keyed_put_reports_a_new_job_and_returns_none(store: SqliteStore) -> None:
    """With an idempotency key not used before, the callback gets None and put_then None."""
    jobs = Jobs()
    record = jobs.record(key="k1")
    seen: list[StoreError | None] = []
    assert await store.put_then(record, jobs.event(record), seen.append) is None
    assert seen == [None]
    assert await store.get(record.id) == record


async def test_a_keyed_put_naming_an_earlier_job_returns_it_without_calling_back(
    store: SqliteStore,
) -> None:
    """When the owner's key names an earlier job, put_then returns that job, stores nothing and
    never calls the callback (nothing of the new job was stored)."""
    jobs = Jobs()
    first = jobs.record(key="k1")
    await store.put(first, jobs.event(first))
    second = jobs.record(key="k1")
    seen: list[StoreError | None] = []
    assert await store.put_then(second, jobs.event(second), seen.append) == first
    assert seen == []
    assert await store.get(second.id) is None
