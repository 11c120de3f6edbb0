"""Supervisors sharing one Redis prefix act as one service: jobs run on whichever node is free,
every node sees every event, and get / wait / cancel / caps / idempotency hold across nodes."""

from __future__ import annotations

import anyio
import pytest
import redis

from jobwarden import JobState, Supervisor
from jobwarden.errors import InvalidInput, JobFinished, Overloaded
from jobwarden.plugins.builtin import builtin
from jobwarden.records import JobEvent
from jobwarden.store.redis_queue_scripts import GROUP
from tests.actors.cluster_nodes import cluster_url, nodes, queue_length
from tests.fakes import UNDECODABLE, Gates, fake_plugin
from tests.redis_server import URL


@pytest.fixture
def anyio_backend() -> str:
    """redis-py is asyncio-only."""
    return "asyncio"


def kinds(events: list[JobEvent]) -> list[str]:
    return [event.type.rsplit(".", 1)[1] for event in events]


async def running_event(sup: Supervisor, job_id: str) -> JobEvent:
    """The job's ``running`` event (its source names the node that ran it)."""
    async with sup.subscribe(job_id=job_id) as events:
        async for event in events:
            assert isinstance(event, JobEvent)
            if event.data.state is JobState.RUNNING:
                return event
    raise AssertionError(f"job {job_id} ended without running")


@pytest.mark.anyio
async def test_every_node_sees_every_job_run_once_in_offset_order(redis_prefix: str) -> None:
    """Jobs submitted on both nodes all succeed, each runs exactly once, both nodes' subscribers
    receive the same events in strictly increasing offset order, and no queue entry is left."""
    url = cluster_url(redis_prefix)
    async with (
        nodes(url, ["A", "B"], [builtin]) as (a, b),
        a.subscribe() as on_a,
        b.subscribe() as on_b,
    ):
        jobs = [
            await (a if i % 2 else b).submit("builtin.echo", {"text": str(i)}) for i in range(60)
        ]
        finals = [await (b if i % 2 else a).wait(job.id, timeout=20) for i, job in enumerate(jobs)]
        seen: dict[str, list[JobEvent]] = {}
        for name, sub in (("A", on_a), ("B", on_b)):
            got: list[JobEvent] = []
            async for event in sub:
                assert isinstance(event, JobEvent)
                got.append(event)
                if len(got) == 3 * len(jobs):
                    break
            seen[name] = got
    assert all(final.state is JobState.SUCCEEDED for final in finals)
    offsets = [event.offset for event in seen["A"]]
    assert offsets == sorted(set(offsets))
    assert [e.id for e in seen["B"]] == [e.id for e in seen["A"]]
    running = [e for e in seen["A"] if e.data.state is JobState.RUNNING]
    assert sorted(e.subject for e in running) == sorted(job.id for job in jobs)
    assert {e.source for e in running} <= {"jobwarden://A", "jobwarden://B"}
    assert queue_length(redis_prefix) == 0  # every finished job's entry was acknowledged


@pytest.mark.anyio
async def test_a_busy_node_leaves_the_next_job_to_an_idle_one(redis_prefix: str) -> None:
    """With one runner each, the second job runs on the node the first one did not take, and
    its result can be read and awaited from either node."""
    gates = Gates()
    url = cluster_url(redis_prefix)
    async with nodes(url, ["A", "B"], [fake_plugin(gates)], concurrency=1) as (a, b):
        first = await a.submit("fake.gate", {"key": "one"})
        await gates.wait_entered("one")
        second = await a.submit("fake.gate", {"key": "two"})
        await gates.wait_entered("two")
        ran_first = await running_event(b, first.id)
        ran_second = await running_event(a, second.id)
        gates.open("one")
        gates.open("two")
        done = [await b.wait(first.id, timeout=10), await a.wait(second.id, timeout=10)]
        assert (await a.get(first.id)).result == {"text": "one"}
    assert ran_first.source != ran_second.source
    assert [d.state for d in done] == [JobState.SUCCEEDED, JobState.SUCCEEDED]


@pytest.mark.anyio
@pytest.mark.parametrize("where", ["the other node", "the running node"])
async def test_a_cancel_reaches_the_node_running_the_job(redis_prefix: str, where: str) -> None:
    """Cancelling on either node stops the running call and answers the cancelled record."""
    gates = Gates()
    url = cluster_url(redis_prefix)
    async with nodes(url, ["A", "B"], [fake_plugin(gates)], concurrency=1) as (a, b):
        job = await a.submit("fake.gate", {"key": "held"})
        await gates.wait_entered("held")
        ran = await running_event(a, job.id)
        runner, other = (a, b) if ran.source == "jobwarden://A" else (b, a)
        cancelled = await (other if where == "the other node" else runner).cancel(job.id)
        with pytest.raises(JobFinished):
            await a.cancel(job.id)
        async with b.subscribe(job_id=job.id) as events:
            history = [event async for event in events]
    assert cancelled.state is JobState.CANCELLED
    assert cancelled.error is not None
    assert cancelled.error.type == "cancelled"
    assert kinds([e for e in history if isinstance(e, JobEvent)]) == [
        "queued",
        "running",
        "cancelled",
    ]


@pytest.mark.anyio
async def test_a_queued_job_cancelled_anywhere_never_runs(redis_prefix: str) -> None:
    """A job waiting in the shared queue is cancelled at once from any node, and the node that
    later takes it from the queue drops it without running it."""
    gates = Gates()
    url = cluster_url(redis_prefix)
    async with nodes(url, ["A", "B"], [fake_plugin(gates)], concurrency=1) as (a, b):
        busy = [await a.submit("fake.gate", {"key": key}) for key in ("x", "y")]
        await gates.wait_entered("x")
        await gates.wait_entered("y")
        waiting = await a.submit("fake.gate", {"key": "never"})
        cancelled = await b.cancel(waiting.id)
        gates.open("x")
        gates.open("y")
        for job in busy:
            await a.wait(job.id, timeout=10)
        later = await a.submit("fake.gate", {"key": "after"})
        gates.open("after")
        await b.wait(later.id, timeout=10)
        async with a.subscribe(job_id=waiting.id) as events:
            history = [event async for event in events]
    assert cancelled.state is JobState.CANCELLED
    assert kinds([e for e in history if isinstance(e, JobEvent)]) == ["queued", "cancelled"]


@pytest.mark.anyio
async def test_a_tools_cap_holds_across_nodes(redis_prefix: str) -> None:
    """A tool capped at one call runs one job at a time on the whole cluster, though each node
    has runners to spare: a job that finds the cap reached starts when the slot frees."""
    gates = Gates()
    url = cluster_url(redis_prefix)
    async with (
        nodes(url, ["A", "B"], [fake_plugin(gates, cap=1)], concurrency=4) as (a, b),
        a.subscribe(tool="fake.gate") as events,
    ):
        jobs = {}
        for i, key in enumerate(("k1", "k2", "k3", "k4")):
            record = await (a if i % 2 else b).submit("fake.gate", {"key": key})
            jobs[record.id] = key
        order: list[str] = []
        running: set[str] = set()
        async for event in events:
            assert isinstance(event, JobEvent)
            if event.data.state is JobState.RUNNING:
                assert not running, "two jobs of a capped tool ran at once"
                running.add(event.subject)
                order.append(jobs[event.subject])
                gates.open(jobs[event.subject])
            elif event.data.state is JobState.SUCCEEDED:
                running.discard(event.subject)
                if len(order) == len(jobs) and not running:
                    break
    assert sorted(order) == ["k1", "k2", "k3", "k4"]


@pytest.mark.anyio
async def test_idempotency_keys_hold_across_nodes(redis_prefix: str) -> None:
    """The same principal's key submitted on two nodes names one job."""
    async with nodes(cluster_url(redis_prefix), ["A", "B"], [builtin]) as (a, b):
        first = await a.submit("builtin.echo", {"text": "1"}, idempotency_key="k", owner="al")
        second = await b.submit("builtin.echo", {"text": "2"}, idempotency_key="k", owner="al")
        other = await b.submit("builtin.echo", {"text": "3"}, idempotency_key="k", owner="bo")
        await a.wait(first.id, timeout=10)
        await a.wait(other.id, timeout=10)
    assert second.id == first.id
    assert other.id != first.id


@pytest.mark.anyio
async def test_the_shared_queue_refuses_jobs_beyond_max_queued(redis_prefix: str) -> None:
    """``max_queued`` bounds the jobs the cluster holds unfinished: beyond it, ``Overloaded``."""
    gates = Gates()
    url = cluster_url(redis_prefix)
    async with nodes(url, ["A"], [fake_plugin(gates)], concurrency=1, max_queued=2) as (a,):
        held = [await a.submit("fake.gate", {"key": "full"}) for _ in range(2)]
        with pytest.raises(Overloaded, match="2 jobs wait"):
            await a.submit("fake.gate", {"key": "full"})
        gates.open("full")
        for job in held:
            await a.wait(job.id, timeout=10)
        with anyio.fail_after(10):
            accepted = await a.submit("fake.gate", {"key": "full"})
        await a.wait(accepted.id, timeout=10)


@pytest.mark.anyio
async def test_a_submit_no_json_can_carry_is_invalid_input_on_a_node(redis_prefix: str) -> None:
    """A cluster node refuses an input holding a lone surrogate as InvalidInput: nothing enters
    the shared queue, and the next job runs."""
    async with nodes(cluster_url(redis_prefix), ["A"], [builtin]) as (a,):
        with pytest.raises(InvalidInput, match="the job's input holds a string that is not"):
            await a.submit("builtin.echo", {"text": UNDECODABLE})
        assert queue_length(redis_prefix) == 0
        assert await a.run("builtin.echo", {"text": "next"}) == {"text": "next"}
        assert [job.input for job in (await a.list_jobs()).jobs] == [{"text": "next"}]


@pytest.mark.anyio
async def test_a_wait_on_any_node_can_time_out(redis_prefix: str) -> None:
    """Waiting for a job that does not end in time raises TimeoutError, on any node."""
    gates = Gates()
    url = cluster_url(redis_prefix)
    async with nodes(url, ["A", "B"], [fake_plugin(gates)]) as (a, b):
        job = await a.submit("fake.gate", {"key": "slow"})
        with pytest.raises(TimeoutError):
            await b.wait(job.id, timeout=0.05)
        gates.open("slow")
        assert (await b.wait(job.id, timeout=10)).state is JobState.SUCCEEDED


@pytest.mark.anyio
async def test_nodes_that_stop_cleanly_leave_the_consumer_group(redis_prefix: str) -> None:
    """Each node that ran jobs and stopped cleanly is gone from the work queue's consumer group,
    which would otherwise list one consumer per process that ever ran."""
    url = cluster_url(redis_prefix)
    for names in (["A", "B"], ["C"]):
        async with nodes(url, names, [builtin]) as sups:
            for sup in sups:
                job = await sup.submit("builtin.echo", {"text": "x"})
                await sup.wait(job.id, timeout=20)
    with redis.Redis.from_url(URL) as client:
        assert client.xinfo_consumers(f"{redis_prefix}:queue", GROUP) == []
