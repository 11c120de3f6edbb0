"""Leases on a cluster's jobs: a dead node's jobs are taken over, a job that keeps killing its
nodes is dead-lettered, a stopping node hands its waiting jobs back, and a node rides out a
Redis that stops answering writes for a while."""

from __future__ import annotations

import os
import socket
from typing import Any

import anyio
import msgspec
import pytest
import redis
from anyio.abc import TaskStatus

from jobwarden import JobState, Plugin, Supervisor, ToolContext
from jobwarden.actors.cluster import CANCELLED_AWAY, INTERRUPTED
from jobwarden.errors import StoreUnavailable
from jobwarden.plugins.builtin import builtin
from jobwarden.plugins.retry import RetryPolicy
from jobwarden.records import JobEvent
from jobwarden.store.redis import RedisStore
from tests.actors.cluster_nodes import cluster_url, nodes, orphaned, queue_length
from tests.fakes import Gates, fake_plugin
from tests.redis_server import private_redis


@pytest.fixture
def anyio_backend() -> str:
    """redis-py is asyncio-only."""
    return "asyncio"


class TextIn(msgspec.Struct):
    text: str


def resumable() -> Plugin:
    """A tool that may run again after its node died (``retry_on_interrupt``)."""
    plugin = Plugin("ha")

    @plugin.tool(retry_on_interrupt=True)
    async def echo(inp: TextIn, ctx: ToolContext) -> dict[str, Any]:
        """Return the text and the attempt that produced it."""
        return {"text": inp.text, "attempt": ctx.attempt}

    return plugin


@pytest.mark.anyio
async def test_a_job_a_dead_node_took_but_never_started_runs_elsewhere(redis_prefix: str) -> None:
    """Once the dead node's lease expires, a live node takes the queued job over and runs it."""
    url = cluster_url(redis_prefix, lease_s=1)
    async with (
        orphaned(url, "builtin.echo", {"text": "orphan"}, running=False) as job,
        nodes(url, ["A"], [builtin]) as (a,),
    ):
        done = await a.wait(job.id, timeout=20)
    assert done.state is JobState.SUCCEEDED
    assert done.attempt == 1
    assert queue_length(redis_prefix) == 0


@pytest.mark.anyio
async def test_a_job_cut_off_by_a_dead_node_fails_as_interrupted(redis_prefix: str) -> None:
    """A job found running under an expired lease fails with ``interrupted`` when its tool may
    not run twice."""
    url = cluster_url(redis_prefix, lease_s=1)
    async with (
        orphaned(url, "builtin.echo", {"text": "cut"}, running=True) as job,
        nodes(url, ["A"], [builtin]) as (a,),
    ):
        done = await a.wait(job.id, timeout=20)
        assert a.registry.series("builtin.echo").jobs_by_outcome == {"interrupted": 1}
    assert done.state is JobState.FAILED
    assert done.error is not None
    assert (done.error.type, done.error.message) == ("interrupted", INTERRUPTED)
    assert done.error.details == {"attempt": 1}


@pytest.mark.anyio
async def test_a_resumable_job_cut_off_by_a_dead_node_runs_again(redis_prefix: str) -> None:
    """A ``retry_on_interrupt`` tool's job is run again as its next attempt, after a
    ``retrying`` event saying why."""
    url = cluster_url(redis_prefix, lease_s=1)
    async with (
        orphaned(url, "ha.echo", {"text": "again"}, running=True) as job,
        nodes(url, ["A"], [resumable()]) as (a,),
    ):
        done = await a.wait(job.id, timeout=20)
        async with a.subscribe(job_id=job.id) as events:
            history = [event async for event in events]
    assert done.state is JobState.SUCCEEDED
    assert done.result == {"text": "again", "attempt": 2}
    assert [e.type.rsplit(".", 1)[1] for e in history] == [
        "queued",
        "running",
        "retrying",
        "running",
        "succeeded",
    ]


@pytest.mark.parametrize("tool", ["ha.echo", "builtin.echo"])
@pytest.mark.anyio
async def test_a_cancel_of_a_job_whose_node_died_ends_it_cancelled(
    redis_prefix: str, tool: str
) -> None:
    """A cancel of a job running on a node that then died is answered once a live node takes
    the job over: it ends the job cancelled, without running it again (a tool that may rerun)
    or failing it as interrupted; before, the cancel met the rerun or the failure (409)."""
    url = cluster_url(redis_prefix, lease_s=1)
    async with (
        orphaned(url, tool, {"text": "cut"}, running=True) as job,
        nodes(url, ["A"], [resumable(), builtin]) as (a,),
    ):
        with anyio.fail_after(20):
            cancelled = await a.cancel(job.id)
        async with a.subscribe(job_id=job.id) as events:
            history = [event.type.rsplit(".", 1)[1] async for event in events]
        runs = a.registry.metrics(tool).calls
    assert cancelled.state is JobState.CANCELLED
    assert cancelled.error is not None
    assert (cancelled.error.type, cancelled.error.message) == ("cancelled", CANCELLED_AWAY)
    assert history == ["queued", "running", "cancelled"]
    assert runs == 0


@pytest.mark.anyio
async def test_a_job_that_keeps_killing_its_nodes_is_dead_lettered(redis_prefix: str) -> None:
    """A job handed out more than ``max_deliveries`` times fails as ``crashed`` with the count,
    and is noted in the dead-letter stream, instead of killing another node."""
    url = cluster_url(redis_prefix, lease_s=1, max_deliveries=2)
    async with (
        orphaned(url, "ha.echo", {"text": "poison"}, running=True, deliveries=2) as job,
        nodes(url, ["A"], [resumable()]) as (a,),
    ):
        done = await a.wait(job.id, timeout=20)
    assert done.state is JobState.FAILED
    assert done.error is not None
    assert done.error.type == "crashed"
    assert done.error.details == {"attempt": 1, "deliveries": 3}
    with redis.Redis.from_url(url.split("?")[0]) as client:
        [(_, fields)] = client.xrange(f"{redis_prefix}:dead")
    assert fields == {b"job": job.id.encode(), b"deliveries": b"3", b"node": b"A"}


@pytest.mark.anyio
async def test_a_job_whose_tool_this_node_lacks_is_cancelled_with_the_reason(
    redis_prefix: str,
) -> None:
    """A node that takes over a job of a tool it does not have cancels it, saying so."""
    url = cluster_url(redis_prefix, lease_s=1)
    async with (
        orphaned(url, "gone.tool", {}, running=False) as job,
        nodes(url, ["A"], [builtin]) as (a,),
    ):
        done = await a.wait(job.id, timeout=20)
    assert done.state is JobState.CANCELLED
    assert done.error is not None
    assert done.error.type == "interrupted"
    assert "cannot run on node A" in done.error.message


@pytest.mark.anyio
async def test_a_stopping_node_hands_its_waiting_jobs_back(redis_prefix: str) -> None:
    """A job waiting out a retry delay on a node that stops goes back to the queue at once and
    runs on another node when its retry is due (not before), without waiting for a lease to
    expire."""
    url = cluster_url(redis_prefix, lease_s=60)
    flaky = Plugin("flaky")
    calls: list[int] = []

    @flaky.tool(
        # A delay longer than a node's stop takes, far shorter than the lease.
        retry=RetryPolicy(max_attempts=2, backoff_s=2.0, retry_on=frozenset({"plugin_error"}))
    )
    async def once(inp: TextIn, ctx: ToolContext) -> str:
        """Fail the first attempt, succeed the second."""
        calls.append(ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        return inp.text

    stop_a = anyio.Event()

    async def run_a(*, task_status: TaskStatus[Supervisor]) -> None:
        async with nodes(url, ["A"], [flaky]) as (a,):
            task_status.started(a)
            await stop_a.wait()

    async with anyio.create_task_group() as tg:
        a: Supervisor = await tg.start(run_a)
        async with a.subscribe() as events:
            job = await a.submit("flaky.once", {"text": "later"})
            async for event in events:
                if event.type.endswith("retrying"):
                    break
        retry = await a.get(job.id)
        # B joins only now, so the first attempt (and its retry delay) was A's.
        async with nodes(url, ["B"], [flaky]) as (b,):
            stop_a.set()
            done = await b.wait(job.id, timeout=20)
    assert done.state is JobState.SUCCEEDED
    assert done.attempt == 2
    assert calls == [1, 2]
    assert retry.retry_at is not None
    assert done.started_at is not None
    assert done.started_at >= retry.retry_at


@pytest.mark.anyio
async def test_a_node_rides_out_redis_refusing_writes() -> None:
    """While Redis takes no writes, a submit fails with ``StoreUnavailable`` (a 503); the job
    that finished meanwhile is recorded once Redis is back, and its subscriber misses nothing."""
    gates = Gates()
    with private_redis() as (_, base):
        url = f"{base}?prefix=pause&socket_timeout=0.2&lease_s=30"
        async with nodes(url, ["A"], [fake_plugin(gates)]) as (a,), a.subscribe() as events:
            job = await a.submit("fake.gate", {"key": "through"})
            await gates.wait_entered("through")
            with redis.Redis.from_url(base) as admin:
                admin.execute_command("CLIENT", "PAUSE", 60_000, "WRITE")
                try:
                    with pytest.raises(StoreUnavailable):
                        await a.submit("fake.gate", {"key": "refused"})
                    gates.open("through")
                finally:
                    admin.execute_command("CLIENT", "UNPAUSE")
            done = await a.wait(job.id, timeout=30)
            seen = []
            async for event in events:
                assert isinstance(event, JobEvent)
                seen.append(event)
                if event.subject == job.id and event.data.state.terminal:
                    break
    assert done.state is JobState.SUCCEEDED
    # The refused submit's write, held by the paused server, may still land once it resumes (a
    # timed-out request is ambiguous: retry with an idempotency key); ours are all there.
    assert [e.type.rsplit(".", 1)[1] for e in seen if e.subject == job.id] == [
        "queued",
        "running",
        "succeeded",
    ]
    offsets = [int(e.id) for e in seen]
    assert offsets == sorted(set(offsets))


@pytest.mark.anyio
async def test_a_store_node_is_named_after_the_host_and_process(redis_prefix: str) -> None:
    """Without a name, a node is ``<hostname>-<pid>``, and its events say so in ``source``."""
    store = RedisStore(cluster_url(redis_prefix))
    async with Supervisor(plugins=[builtin], store=store) as sup:
        job = await sup.submit("builtin.echo", {"text": "who"})
        await sup.wait(job.id, timeout=10)
        async with sup.subscribe(job_id=job.id) as events:
            sources = {event.source async for event in events}
    assert sources == {f"jobwarden://{socket.gethostname()}-{os.getpid()}"}
