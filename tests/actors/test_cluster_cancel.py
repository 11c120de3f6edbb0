"""A cancel on a cluster node answers for what that very request did, however the reads it makes
interleave with the job's own writes."""

from __future__ import annotations

from datetime import datetime

import anyio
import pytest

from jobwarden import JobState, Supervisor
from jobwarden.records import JobEvent, JobRecord
from jobwarden.store.redis import RedisStore
from jobwarden.store.redis_node import RedisNode
from jobwarden.store.shared import Verdict
from tests.actors.cluster_nodes import cluster_url
from tests.fakes import Gates, fake_plugin


@pytest.fixture
def anyio_backend() -> str:
    """redis-py is asyncio-only."""
    return "asyncio"


class HeldNode(RedisNode):
    """A node whose write moving job ``job`` into state ``state`` waits until ``release``;
    ``prior`` is the record that write replaces, once it is ``reached``."""

    def __init__(self, store: RedisStore, node: str) -> None:
        super().__init__(store, node)
        self.job = ""
        self.state: JobState | None = None
        self.prior: JobRecord | None = None
        self.reached = anyio.Event()
        self.release = anyio.Event()

    async def change(
        self,
        prior: JobRecord,
        record: JobRecord,
        event: JobEvent,
        *,
        cap: int | None = None,
        dead_letter: int | None = None,
        start_by: datetime | None = None,
    ) -> Verdict:
        if record.id == self.job and record.state is self.state:
            self.prior = prior
            self.reached.set()
            await self.release.wait()
        return await super().change(
            prior, record, event, cap=cap, dead_letter=dead_letter, start_by=start_by
        )


class StaleReads(RedisStore):
    """A store whose node holds a write (``held``) and whose reads of that job answer as reads
    that crossed writes in flight: ``stale`` first, then (once the held write is reached) the
    record it replaces until it is released; no round trip either way."""

    def __init__(self, url: str, node: str) -> None:
        super().__init__(url, node=node)
        self.held = HeldNode(self, node)
        self.shared = self.held
        self.stale: JobRecord | None = None

    async def open(self) -> None:
        await super().open()
        await self.held.prepare()

    async def get(self, job_id: str) -> JobRecord | None:
        held = self.held
        if job_id != held.job or held.release.is_set():
            return await super().get(job_id)
        if self.stale is not None:
            stale, self.stale = self.stale, None
            return stale
        await held.reached.wait()
        return held.prior


@pytest.mark.anyio
async def test_a_cancel_that_stopped_a_running_call_answers_its_cancelled_record(
    redis_prefix: str,
) -> None:
    """A cancel that read the job still queued but found its call running here answers the
    cancelled record once the call ends, not 409 "is already cancelled" from asking the actor
    again as it stopped."""
    gates = Gates()
    store = StaleReads(cluster_url(redis_prefix), "A")
    async with Supervisor(plugins=[fake_plugin(gates)], store=store) as sup:
        queued = await sup.submit("fake.gate", {"key": "held"})
        await gates.wait_entered("held")
        # The cancel's first read crossed the start; the later ones, the cancelled write.
        store.held.job, store.held.state = queued.id, JobState.CANCELLED
        store.stale = queued
        answers: list[JobRecord] = []
        failures: list[Exception] = []

        async def cancel() -> None:
            try:
                answers.append(await sup.cancel(queued.id))
            except Exception as exc:
                failures.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel)
            await store.held.reached.wait()
            # The cancel task's reads make no round trip, so once every task waits, it waits
            # for the job's end (or, asking the actor again, for its turn in the mailbox).
            await anyio.wait_all_tasks_blocked()
            store.held.release.set()
    assert failures == []
    [answer] = answers
    assert answer.state is JobState.CANCELLED
    assert answer.error is not None
    assert answer.error.type == "cancelled"
