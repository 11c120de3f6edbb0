"""Queue timeouts on a cluster: the time a job waits in the shared queue, before any node takes
it, counts, and the job ends when its time runs out even while every node is busy."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import anyio
import msgspec
import pytest
import redis
from anyio.abc import TaskStatus

from jobwarden import JobState, Plugin, Supervisor, ToolContext
from jobwarden.actors.cluster import SWEEP_BATCH
from jobwarden.errors import OutcomeType
from jobwarden.records import JobEvent, JobRecord
from jobwarden.store.redis import RedisStore
from tests.actors.cluster_nodes import Ghost, cluster_url, nodes
from tests.fakes import Gates, KeyIn, TextOut, fake_plugin, outlive, patient_plugin
from tests.redis_server import URL

WINDOW_S = 0.1


@pytest.fixture
def anyio_backend() -> str:
    """redis-py is asyncio-only."""
    return "asyncio"


def _deadlines(prefix: str) -> int:
    """How many queued jobs the prefix's queue deadlines hold."""
    with redis.Redis.from_url(URL) as client:
        return int(client.zcard(f"{prefix}:queue:deadlines"))


async def _kinds(node: Supervisor, job_id: str) -> list[str]:
    """The kinds of the job's events, from its stream."""
    async with node.subscribe(job_id=job_id) as events:
        return [e.type.rsplit(".", 1)[1] async for e in events if isinstance(e, JobEvent)]


def _bounded_plugin(calls: list[str]) -> Plugin:
    """A plugin named ``bounded`` whose one tool must finish within ``WINDOW_S`` of its submit."""
    plugin = Plugin("bounded", version="0.1.0")

    @plugin.tool(total_timeout=WINDOW_S)
    async def note(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Note the call."""
        calls.append(inp.key)
        return TextOut(text=inp.key)

    return plugin


def _queued(id_digit: str, key: str) -> JobRecord:
    """A queued ``patient.note`` job submitted now, as a node would write it."""
    return JobRecord(
        id=id_digit * 32,
        tool="patient.note",
        plugin="patient",
        state=JobState.QUEUED,
        input={"key": key},
        created_at=datetime.now(UTC),
    )


@asynccontextmanager
async def _ghost(url: str) -> AsyncIterator[Ghost]:
    """A bare store on ``url`` that submits like a node that then went away."""
    store = RedisStore(url, node="ghost")
    await store.open()
    try:
        yield Ghost(store)
    finally:
        await store.close()


async def _ghost_enqueue(ghost: Ghost, record: JobRecord, start_by: datetime | None = None) -> None:
    """Queue ``record`` as the gone node ``ghost`` submitted it, to start by ``start_by``."""
    # Room for every job a test queues: none of these tests is about a full queue.
    await ghost.store.shared.enqueue(
        record, ghost.bus.event(record, "queued"), max_queued=1000, start_by=start_by
    )


@pytest.mark.anyio
async def test_a_job_out_of_time_in_the_shared_queue_ends_while_every_node_is_busy(
    redis_prefix: str,
) -> None:
    """A job that outwaits its queue timeout in the shared queue, the only node busy all along,
    ends cancelled as timeout then, without running, and leaves no deadline behind."""
    gates = Gates()
    calls: list[str] = []
    plugins = [fake_plugin(gates), patient_plugin(WINDOW_S, calls, gates)]
    async with nodes(cluster_url(redis_prefix), ["A"], plugins, concurrency=1) as [node]:
        busy = await node.submit("fake.gate", {"key": "busy"})
        await gates.wait_entered("busy")
        job = await node.submit("patient.note", {"key": "late"})
        expired = await node.wait(job.id, timeout=10)
        assert (await node.get(busy.id)).state is JobState.RUNNING
        gates.open("busy")
        await node.wait(busy.id, timeout=10)
        kinds = await _kinds(node, job.id)
    assert calls == []
    assert (expired.state, expired.started_at) == (JobState.CANCELLED, None)
    assert expired.error is not None
    assert expired.error.type == OutcomeType.TIMEOUT
    assert expired.error.message == f"patient.note waited more than {WINDOW_S}s to start"
    assert expired.finished_at is not None
    assert expired.finished_at - expired.created_at >= timedelta(seconds=WINDOW_S)
    assert kinds == ["queued", "cancelled"]
    assert _deadlines(redis_prefix) == 0


@pytest.mark.anyio
async def test_a_job_submitted_by_a_node_gone_since_ends_by_another_nodes_sweep(
    redis_prefix: str,
) -> None:
    """A job queued by a node that went away, past its time to start while the other node is
    busy, is ended by that node's own look at the queue's deadlines."""
    gates = Gates()
    calls: list[str] = []
    plugins = [fake_plugin(gates), patient_plugin(WINDOW_S, calls, gates)]
    url = cluster_url(redis_prefix)
    async with nodes(url, ["B"], plugins, concurrency=1) as [node]:
        await node.submit("fake.gate", {"key": "busy"})
        await gates.wait_entered("busy")
        async with _ghost(url) as ghost:
            queued = _queued("0", "orphan")
            await _ghost_enqueue(ghost, queued, queued.created_at + timedelta(seconds=WINDOW_S))
        expired = await node.wait(queued.id, timeout=10)
        gates.open("busy")
    assert calls == []
    assert (expired.state, expired.error and expired.error.type) == (
        JobState.CANCELLED,
        OutcomeType.TIMEOUT,
    )
    assert _deadlines(redis_prefix) == 0


@pytest.mark.anyio
async def test_a_job_out_of_its_total_timeout_in_the_shared_queue_says_so(
    redis_prefix: str,
) -> None:
    """A job whose total timeout runs out while it waits in the shared queue ends with the total
    timeout's message."""
    gates = Gates()
    calls: list[str] = []
    plugins = [fake_plugin(gates), _bounded_plugin(calls)]
    async with nodes(cluster_url(redis_prefix), ["A"], plugins, concurrency=1) as [node]:
        await node.submit("fake.gate", {"key": "busy"})
        await gates.wait_entered("busy")
        job = await node.submit("bounded.note", {"key": "late"})
        expired = await node.wait(job.id, timeout=10)
        gates.open("busy")
    assert calls == []
    assert expired.error is not None
    assert expired.error.type == OutcomeType.TIMEOUT
    assert expired.error.message == (
        f"bounded.note did not finish within its total timeout of {WINDOW_S}s"
    )


@pytest.mark.anyio
async def test_a_job_started_in_time_leaves_no_deadline(redis_prefix: str) -> None:
    """A job with a queue timeout that a free node starts at once runs, and its deadline leaves
    the queue's deadlines as it starts."""
    gates = Gates()
    calls: list[str] = []
    plugins = [patient_plugin(60.0, calls, gates)]
    async with nodes(cluster_url(redis_prefix), ["A"], plugins) as [node]:
        done = await node.wait((await node.submit("patient.note", {"key": "k"})).id, timeout=10)
    assert (done.state, calls) == (JobState.SUCCEEDED, ["k#1"])
    assert _deadlines(redis_prefix) == 0


@pytest.mark.anyio
async def test_the_sweep_drops_the_deadlines_of_jobs_no_longer_queued(redis_prefix: str) -> None:
    """A deadline left for a job that is gone or that left the queued state is dropped by the
    next look, which returns neither."""
    url = cluster_url(redis_prefix)
    async with _ghost(url) as ghost:
        shared = ghost.store.shared
        queued = _queued("1", "k")
        now = queued.created_at
        await _ghost_enqueue(ghost, queued, now)
        with redis.Redis.from_url(URL) as client:
            client.zadd(f"{redis_prefix}:queue:deadlines", {"f" * 32: 0})
        overdue = await shared.overdue(now + timedelta(seconds=1), 10)
        assert [record.id for record in overdue.records] == [queued.id]
        started = msgspec.structs.replace(queued, state=JobState.RUNNING, started_at=now)
        await shared.change(queued, started, ghost.bus.event(started, "running"))
        assert _deadlines(redis_prefix) == 0
        assert (await shared.overdue(now + timedelta(seconds=1), 10)).records == []


@pytest.mark.anyio
async def test_a_job_past_its_queue_timeout_is_not_run_by_the_node_taking_it(
    redis_prefix: str,
) -> None:
    """A job a node takes after its queue timeout passed (no sweep ended it: its deadline was
    never noted) ends cancelled as timeout without running."""
    gates = Gates()
    calls: list[str] = []
    plugins = [patient_plugin(WINDOW_S, calls, gates)]
    url = cluster_url(redis_prefix)
    async with _ghost(url) as ghost:
        queued = _queued("2", "k")
        await _ghost_enqueue(ghost, queued)
        await outlive(queued.created_at, WINDOW_S)
    async with nodes(url, ["A"], plugins) as [node]:
        expired = await node.wait(queued.id, timeout=10)
        kinds = await _kinds(node, queued.id)
    assert calls == []
    assert (expired.state, expired.error and expired.error.type) == (
        JobState.CANCELLED,
        OutcomeType.TIMEOUT,
    )
    assert kinds == ["queued", "cancelled"]


async def _run_first_attempt(
    url: str,
    plugins: list[Plugin],
    gates: Gates,
    stop: anyio.Event,
    *,
    task_status: TaskStatus[JobRecord],
) -> None:
    """On a node of its own, run ``patient.second_try`` until its first attempt failed and
    report the queued retry's record; once ``stop`` is set, stop that node, which hands the
    retry (still in its backoff) back to the shared queue."""
    async with Supervisor(plugins=plugins, store=RedisStore(url, node="A"), concurrency=1) as a:
        job = await a.submit("patient.second_try", {"key": "k"})
        async with a.subscribe(job_id=job.id) as events:
            gates.open("k")
            async for event in events:
                if isinstance(event, JobEvent) and event.type.endswith(".retrying"):
                    break
        task_status.started(await a.get(job.id))
        await stop.wait()


@pytest.mark.anyio
async def test_a_retry_handed_back_ends_on_time_while_every_node_is_busy(
    redis_prefix: str,
) -> None:
    """A retry its node handed back as it stopped, whose queue timeout (from its ``retry_at``)
    runs out while the only other node is busy, ends then, cancelled as timeout."""
    gates = Gates()
    calls: list[str] = []
    plugins = [fake_plugin(gates), patient_plugin(WINDOW_S, calls, gates, backoff_s=0.2)]
    url = cluster_url(redis_prefix)
    stop = anyio.Event()
    async with Supervisor(plugins=plugins, store=RedisStore(url, node="B"), concurrency=1) as b:
        await b.submit("fake.gate", {"key": "busy"})
        await gates.wait_entered("busy")
        async with anyio.create_task_group() as tg:
            retry = await tg.start(_run_first_attempt, url, plugins, gates, stop)
            stop.set()
        expired = await b.wait(retry.id, timeout=10)
        gates.open("busy")
    assert calls == ["k#1"]
    assert (expired.state, expired.error and expired.error.type) == (
        JobState.CANCELLED,
        OutcomeType.TIMEOUT,
    )
    assert retry.retry_at is not None
    assert expired.finished_at is not None
    assert expired.finished_at >= retry.retry_at + timedelta(seconds=WINDOW_S)
    assert _deadlines(redis_prefix) == 0


@pytest.mark.anyio
async def test_due_jobs_kept_for_later_hold_back_none_behind_them(redis_prefix: str) -> None:
    """More due jobs than one look takes, each due only by its submitter's clock (ahead of this
    node's), do not keep the sweep from ending a due job that comes after them."""
    gates = Gates()
    calls: list[str] = []
    url = cluster_url(redis_prefix)
    plugins = [fake_plugin(gates), patient_plugin(60.0, calls, gates), _bounded_plugin(calls)]
    async with nodes(url, ["B"], plugins, concurrency=1) as [node]:
        await node.submit("fake.gate", {"key": "busy"})
        await gates.wait_entered("busy")
        # Queued while the node is busy, so it takes none of them.
        async with _ghost(url) as ghost:
            ahead = datetime.now(UTC) - timedelta(seconds=60)
            for index in range(SWEEP_BATCH + 5):
                early = msgspec.structs.replace(_queued("0", "early"), id=f"{index:032x}")
                await _ghost_enqueue(ghost, early, ahead)
        job = await node.submit("bounded.note", {"key": "late"})
        expired = await node.wait(job.id, timeout=10)
        early_state = (await node.get(f"{0:032x}")).state
        gates.open("busy")
    assert calls == []
    assert (expired.state, expired.error and expired.error.type) == (
        JobState.CANCELLED,
        OutcomeType.TIMEOUT,
    )
    assert early_state is JobState.QUEUED


@pytest.mark.anyio
async def test_a_due_job_of_a_tool_this_node_lacks_ends_all_the_same(redis_prefix: str) -> None:
    """A due job whose tool the sweeping node lacks (a deploy half done) ends cancelled as
    timeout, saying no node could start it."""
    gates = Gates()
    url = cluster_url(redis_prefix)
    async with nodes(url, ["B"], [fake_plugin(gates)], concurrency=1) as [node]:
        await node.submit("fake.gate", {"key": "busy"})
        await gates.wait_entered("busy")
        async with _ghost(url) as ghost:
            absent = _queued("3", "k")
            await _ghost_enqueue(ghost, absent, absent.created_at + timedelta(seconds=WINDOW_S))
        expired = await node.wait(absent.id, timeout=10)
        gates.open("busy")
    assert expired.state is JobState.CANCELLED
    assert expired.error is not None
    assert expired.error.type == OutcomeType.TIMEOUT
    assert expired.error.message == (
        "patient.note ran out of time to start while no node could start it"
    )
    assert _deadlines(redis_prefix) == 0
