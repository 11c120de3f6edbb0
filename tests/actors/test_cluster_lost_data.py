"""A cluster node whose Redis lost its data (restarted empty, rolled back) works on: it takes and
runs new jobs, its subscribers receive their events, and it says at error level what happened."""

from __future__ import annotations

import pytest
import redis
from structlog.testing import capture_logs

from jobwarden import JobState
from jobwarden.plugins.builtin import builtin
from jobwarden.records import JobEvent
from tests import redis_server
from tests.actors.cluster_nodes import cluster_url, eventually, nodes
from tests.fakes import Gates, fake_plugin


@pytest.fixture
def anyio_backend() -> str:
    """redis-py is asyncio-only."""
    return "asyncio"


@pytest.mark.anyio
async def test_a_node_whose_redis_was_emptied_runs_new_jobs_and_delivers_their_events(
    redis_prefix: str,
) -> None:
    """With every key of its prefix gone under it (a Redis restarted without persistence), a
    running node still runs a new submit and its subscriber still receives that job's events."""
    url = cluster_url(redis_prefix)
    async with nodes(url, ["A"], [builtin]) as [node], node.subscribe() as sub:
        before = await node.submit("builtin.echo", {"text": "before"})
        assert (await node.wait(before.id, timeout=20)).state is JobState.SUCCEEDED
        with capture_logs() as logs:
            redis_server.delete_prefix(redis_prefix)
            after = await node.submit("builtin.echo", {"text": "after"})
            done = await node.wait(after.id, timeout=20)
        seen: list[JobEvent] = []
        async for event in sub:
            assert isinstance(event, JobEvent)
            seen.append(event)
            if event.subject == after.id and event.data.state.terminal:
                break
    assert done.state is JobState.SUCCEEDED
    assert done.result == {"text": "after"}
    offsets = [event.offset for event in seen]
    assert offsets == sorted(set(offsets))  # no offset handed out twice, none going back
    assert any("Redis lost" in entry["event"] and entry["log_level"] == "error" for entry in logs)


@pytest.mark.anyio
async def test_a_job_running_when_redis_lost_its_record_is_let_go(redis_prefix: str) -> None:
    """A job whose record Redis lost while it ran here is dropped when it ends, and the node goes
    on running jobs instead of stopping on a write that found no record."""
    gates = Gates()
    plugins = [fake_plugin(gates), builtin]
    async with nodes(cluster_url(redis_prefix), ["A"], plugins) as [node]:
        await node.submit("fake.gate", {"key": "held"})
        await gates.wait_entered("held")
        redis_server.delete_prefix(redis_prefix)
        gates.open("held")
        await eventually(lambda: node.statistics().running == 0)
        later = await node.submit("builtin.echo", {"text": "later"})
        done = await node.wait(later.id, timeout=20)
    assert done.state is JobState.SUCCEEDED


@pytest.mark.anyio
async def test_a_node_whose_redis_rolled_back_delivers_every_event_of_a_new_job(
    redis_prefix: str,
) -> None:
    """After Redis went back to a snapshot older than what a node delivered, a job submitted
    there at once gets offsets past those, so the node's subscriber receives all its events,
    and the node says at error level that Redis lost data."""
    url = cluster_url(redis_prefix)
    async with nodes(url, ["A"], [builtin]) as [node], node.subscribe() as sub:
        before = await node.submit("builtin.echo", {"text": "before"})
        await node.wait(before.id, timeout=20)
        with capture_logs() as logs:
            with redis.Redis.from_url(redis_server.URL) as client:
                # The snapshot was taken before the first job: its log and offsets are gone.
                client.delete(f"{redis_prefix}:events")
                client.hset(f"{redis_prefix}:meta", "last", 0)
            after = await node.submit("builtin.echo", {"text": "after"})
            done = await node.wait(after.id, timeout=20)
            await eventually(lambda: any(entry["log_level"] == "error" for entry in logs))
        seen: list[JobEvent] = []
        async for event in sub:
            assert isinstance(event, JobEvent)
            if event.subject == after.id:
                seen.append(event)
                if event.data.state.terminal:
                    break
    assert done.state is JobState.SUCCEEDED
    assert [event.type.rsplit(".", 1)[1] for event in seen] == ["queued", "running", "succeeded"]
    assert any("Redis lost" in entry["event"] for entry in logs)
