"""A supervisor that has stopped answers every call at once: reads of a closed durable store are
StoreUnavailable, waits for a job it left queued are JobNotFinished, subscriptions end."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from jobwarden import JobState, MemoryStore, Supervisor, builtin, errors
from jobwarden.store.sqlite import SqliteStore
from tests.fakes import Gates, fake_plugin

pytestmark = pytest.mark.anyio


async def test_reads_of_a_closed_sqlite_store_are_store_unavailable(tmp_path: Path) -> None:
    """After the stop, reads the store must answer say the store is closed (they raised a bare
    IndexError), and the next supervisor on the file reads the jobs."""
    async with Supervisor(plugins=[builtin], store=SqliteStore(tmp_path / "jobs.db")) as sup:
        done = await sup.wait((await sup.submit("builtin.echo", {"text": "x"})).id, timeout=5)
    closed = f"the job store {tmp_path / 'jobs.db'} is closed"
    with pytest.raises(errors.StoreUnavailable, match=closed):
        await sup.list_jobs()
    with pytest.raises(errors.StoreUnavailable, match=closed):
        await sup.get("0" * 26)
    with pytest.raises(errors.StoreUnavailable, match=closed):
        async with sup.subscribe(since=0) as events:
            await anext(events)
    async with Supervisor(plugins=[builtin], store=SqliteStore(tmp_path / "jobs.db")) as again:
        assert [job.id for job in (await again.list_jobs()).jobs] == [done.id]


@pytest.mark.parametrize("wait_s", [None, 3600.0])
async def test_waits_for_a_job_left_queued_end_when_the_supervisor_stops(
    tmp_path: Path, wait_s: float | None
) -> None:
    """A job the stop leaves queued in a durable store ends every wait for it, timed or not:
    one waiting when the stop came (an untimed one hung forever, a timed one waited its timeout
    out), and any later; the next start runs the job."""
    gates = Gates()
    store = SqliteStore(tmp_path / "jobs.db")
    waited: list[BaseException] = []

    async def wait_for(sup: Supervisor, job_id: str) -> None:
        with pytest.raises(errors.JobNotFinished) as caught:
            await sup.wait(job_id, timeout=wait_s)
        waited.append(caught.value)

    with anyio.fail_after(30):  # a wait nothing would ever end fails here instead of hanging
        async with (
            anyio.create_task_group() as tg,
            Supervisor(
                plugins=[fake_plugin(gates)], store=store, concurrency=1, shutdown_grace_s=0
            ) as sup,
        ):
            await sup.submit("fake.gate", {"key": "held"})
            await gates.wait_entered("held")
            left = await sup.submit("fake.gate", {"key": "left"})
            tg.start_soon(wait_for, sup, left.id)
            await anyio.wait_all_tasks_blocked()
    says = f"job {left.id} is left queued for the next start: the supervisor has stopped"
    assert [str(exc) for exc in waited] == [says]
    assert (await sup.get(left.id)).state is JobState.QUEUED
    with pytest.raises(errors.JobNotFinished, match=says):
        await sup.wait(left.id, timeout=wait_s)
    async with Supervisor(plugins=[fake_plugin(gates)], store=SqliteStore(store.path)) as again:
        gates.open("left")
        assert (await again.wait(left.id, timeout=5)).state is JobState.SUCCEEDED


async def test_a_subscription_opened_after_the_stop_replays_then_ends() -> None:
    """On a store still readable (memory), a subscription opened after the stop gets the
    history and then ends, rather than waiting forever for events that cannot come."""
    async with Supervisor(plugins=[builtin], store=MemoryStore()) as sup:
        job = await sup.submit("builtin.echo", {"text": "x"})
        await sup.wait(job.id, timeout=5)
    with anyio.fail_after(5):
        async with sup.subscribe(since=0) as events:
            seen = [event.type async for event in events]
    assert seen == ["jobwarden.job.queued", "jobwarden.job.running", "jobwarden.job.succeeded"]


async def test_a_subscription_to_a_state_that_is_none_is_refused() -> None:
    """A state filter naming no state is InvalidRequest, where it matched nothing forever; a
    state's plain name is taken."""
    async with Supervisor(plugins=[builtin]) as sup:
        with pytest.raises(errors.InvalidRequest, match="state must be a JobState, not 'bogus'"):
            async with sup.subscribe(state="bogus"):
                pass
        async with sup.subscribe(state="succeeded") as events:
            job = await sup.submit("builtin.echo", {"text": "x"})
            assert (await anext(events)).subject == job.id
