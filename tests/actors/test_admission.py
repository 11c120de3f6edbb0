"""Admission under concurrent submits: the queue bound, idempotent duplicates, the input kept."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from jobwarden import JobState, Supervisor, errors
from jobwarden.store.base import JobStore
from jobwarden.store.memory import MemoryStore
from jobwarden.store.sqlite import SqliteStore
from tests.fakes import Gates, fake_plugin

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> JobStore:
    if request.param == "memory":
        return MemoryStore()
    return SqliteStore(tmp_path / "jobs.db")


async def test_concurrent_submits_accept_no_more_than_max_queued(store: JobStore) -> None:
    """Submits racing one another are refused beyond max_queued even while their puts commit, and
    each finished submit gives its place back."""
    gates = Gates()
    accepted: list[str] = []
    refused = 0

    async def submit() -> None:
        nonlocal refused
        try:
            accepted.append((await sup.submit("fake.gate", {"key": "q"})).id)
        except errors.Overloaded:
            refused += 1

    async with Supervisor(
        plugins=[fake_plugin(gates)], store=store, concurrency=1, max_queued=3
    ) as sup:
        await sup.submit("fake.gate", {"key": "busy"})
        await gates.wait_entered("busy")
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(submit)
        assert (len(accepted), refused) == (3, 7)
        assert sup.statistics().queued == 3
        gates.open("busy")
        gates.open("q")
        for job_id in accepted:
            assert (await sup.wait(job_id, timeout=5)).state is JobState.SUCCEEDED
        accepted.clear()
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(submit)
        assert (len(accepted), refused) == (3, 7)
