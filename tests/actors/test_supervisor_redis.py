"""The Supervisor on the Redis store: jobs run, and events resume after the store is reopened."""

from __future__ import annotations

import asyncio

import anyio
import anyio.lowlevel
import pytest

from jobwarden import JobState, Supervisor
from jobwarden.plugins.builtin import builtin
from jobwarden.store.redis import RedisStore
from tests.redis_server import URL


@pytest.fixture
def anyio_backend() -> str:
    """redis-py is asyncio-only."""
    return "asyncio"


@pytest.mark.anyio
async def test_jobs_run_and_events_resume_after_a_reopen(redis_prefix: str) -> None:
    """Jobs submitted on a Redis store run; a new supervisor on the same prefix replays their
    events from any offset, keeps numbering after them, and honours idempotency keys."""
    url = f"{URL}?prefix={redis_prefix}"
    async with Supervisor(plugins=[builtin], store=RedisStore(url)) as sup:
        first = await sup.submit("builtin.echo", {"text": "one"}, idempotency_key="k", owner="al")
        done = await sup.wait(first.id, timeout=10)
        assert await sup.run("builtin.echo", {"text": "two"}) == {"text": "two"}
    assert done.state is JobState.SUCCEEDED
    assert done.result == {"text": "one"}

    async with Supervisor(plugins=[builtin], store=RedisStore(url)) as sup:
        async with sup.subscribe(job_id=first.id, since=0) as events:
            replayed = [event async for event in events]
        again = await sup.submit("builtin.echo", {"text": "x"}, idempotency_key="k", owner="al")
        third = await sup.submit("builtin.echo", {"text": "three"})
        await sup.wait(third.id, timeout=10)
        async with sup.subscribe(since=int(replayed[-1].id), job_id=third.id) as events:
            later = [event async for event in events]
        listed = await sup.list_jobs()
    assert [e.type.rsplit(".", 1)[1] for e in replayed] == ["queued", "running", "succeeded"]
    assert again.id == first.id
    assert [e.type.rsplit(".", 1)[1] for e in later] == ["queued", "running", "succeeded"]
    # Offsets 1..6: the first two jobs. Redis numbers events as it writes them, so the duplicate
    # submit, which wrote nothing, took no offset.
    assert int(later[0].id) == 7
    assert [j.id for j in listed.jobs][-1] == first.id
    assert len(listed.jobs) == 3


@pytest.mark.anyio
async def test_a_submit_cancelled_by_asyncio_while_its_put_is_sent_still_runs_the_job(
    redis_prefix: str,
) -> None:
    """A submit whose task asyncio cancels (``task.cancel()``, which passes through anyio's
    shield) as its put joins a pipeline raises the cancellation only once the put is stored,
    and the job, in the nodes' shared queue, still runs, with an idempotency key or without."""
    url = f"{URL}?prefix={redis_prefix}"
    async with Supervisor(plugins=[builtin], store=RedisStore(url)) as sup:
        for key in (None, "k1"):
            submit = asyncio.ensure_future(
                sup.submit("builtin.echo", {"text": "hi"}, idempotency_key=key)
            )
            await anyio.lowlevel.checkpoint()  # the put has joined its pipeline: cancel it there
            submit.cancel()
            with pytest.raises(asyncio.CancelledError):
                await submit
        listed = await sup.list_jobs()
        assert len(listed.jobs) == 2
        done = [await sup.wait(job.id, timeout=10) for job in listed.jobs]
        again = await sup.submit("builtin.echo", {"text": "hi"}, idempotency_key="k1")
    assert [job.state for job in done] == [JobState.SUCCEEDED] * 2
    assert again.id in {job.id for job in done}
