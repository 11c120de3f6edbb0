"""Admission: the queue bound and idempotent duplicates under concurrent submits, and the input
kept as submitted."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from jobwarden import JobState, Plugin, Supervisor, ToolContext, errors
from jobwarden.errors import StoreError
from jobwarden.records import JobEvent, JobRecord
from jobwarden.store.base import JobStore
from jobwarden.store.memory import MemoryStore
from jobwarden.store.sqlite import SqliteStore
from tests.fakes import Gates, fake_plugin

pytestmark = pytest.mark.anyio


class SlowToResume(SqliteStore):
    """Resumes the caller of the first put only after the second put has returned: the loop
    resumes the callers whose puts one commit stored in no fixed order (trio varies it)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.held = anyio.Event()
        self.release = anyio.Event()

    async def put_then(
        self, record: JobRecord, event: JobEvent, committed: Callable[[StoreError | None], None]
    ) -> JobRecord | None:
        earlier = await super().put_then(record, event, committed)
        if not self.held.is_set():
            self.held.set()
            await self.release.wait()
        else:
            self.release.set()
        return earlier


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


async def test_a_duplicate_submit_returns_a_job_it_can_wait_on_at_once(tmp_path: Path) -> None:
    """A submit answered with the earlier job of its idempotency key returns only once that job
    is queued here, so its caller can wait on it at once even if the first submit resumes later."""
    gates = Gates()
    store = SlowToResume(tmp_path / "jobs.db")
    firsts: list[JobRecord] = []
    waited: list[JobRecord] = []

    async def first() -> None:
        firsts.append(await sup.submit("fake.gate", {"key": "g"}, idempotency_key="order-1"))

    async def duplicate() -> None:
        again = await sup.submit("fake.gate", {"key": "g"}, idempotency_key="order-1")
        waited.append(await sup.wait(again.id, timeout=5))

    gates.open("g")
    async with (
        Supervisor(plugins=[fake_plugin(gates)], store=store) as sup,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(first)
        await store.held.wait()
        tg.start_soon(duplicate)
    assert [job.id for job in waited] == [job.id for job in firsts]
    assert waited[0].state is JobState.SUCCEEDED


class Tagged(msgspec.Struct):
    """An input with a nested list, for a caller to change after its submit."""

    text: str
    tags: list[str]


def keeper_plugin() -> Plugin:
    """``keeper.take`` returns its input."""
    plugin = Plugin("keeper", version="1.0.0")

    @plugin.tool(timeout=5.0)
    async def take(inp: Tagged, ctx: ToolContext) -> Tagged:
        """Return the input."""
        return inp

    return plugin


async def test_the_record_keeps_the_input_as_submitted(store: JobStore) -> None:
    """A caller changing its input dict (at the top or nested) after the submit changes neither
    the job's record nor what the store keeps: both say what the tool ran with."""
    submitted = {"text": "original", "tags": ["a"]}
    payload: dict[str, Any] = {"text": "original", "tags": ["a"]}
    async with Supervisor(plugins=[keeper_plugin()], store=store) as sup:
        record = await sup.submit("keeper.take", payload)
        payload["text"] = "changed"
        payload["tags"].append("b")
        payload["extra"] = 1
        done = await sup.wait(record.id, timeout=5)
        kept = await sup.get(record.id)
    assert done.result == submitted
    assert record.input == done.input == kept.input == submitted
