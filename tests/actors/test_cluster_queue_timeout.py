"""Queue timeouts on a cluster: the time a job waits in the shared queue, before any node takes
it, counts."""

from __future__ import annotations

import pytest

from jobwarden import JobState
from jobwarden.errors import OutcomeType
from jobwarden.records import JobEvent
from tests.actors.cluster_nodes import cluster_url, nodes
from tests.fakes import Gates, fake_plugin, outlive, patient_plugin

WINDOW_S = 0.1


@pytest.fixture
def anyio_backend() -> str:
    """redis-py is asyncio-only."""
    return "asyncio"


@pytest.mark.anyio
async def test_a_job_past_its_queue_timeout_in_the_shared_queue_never_runs(
    redis_prefix: str,
) -> None:
    """A job that outwaited its queue timeout in the shared queue while the only node was busy
    ends cancelled as timeout when the node takes it, without running."""
    gates = Gates()
    calls: list[str] = []
    plugins = [fake_plugin(gates), patient_plugin(WINDOW_S, calls, gates)]
    async with nodes(cluster_url(redis_prefix), ["A"], plugins, concurrency=1) as [node]:
        await node.submit("fake.gate", {"key": "busy"})
        await gates.wait_entered("busy")
        job = await node.submit("patient.note", {"key": "late"})
        await outlive(job.created_at, WINDOW_S)
        # Still in the shared queue: the node takes no job while its one runner is busy.
        assert (await node.get(job.id)).state is JobState.QUEUED
        gates.open("busy")
        expired = await node.wait(job.id, timeout=10)
        async with node.subscribe(job_id=job.id) as events:
            kinds = [e.type.rsplit(".", 1)[1] async for e in events if isinstance(e, JobEvent)]
    assert calls == []
    assert (expired.state, expired.started_at) == (JobState.CANCELLED, None)
    assert expired.error is not None
    assert expired.error.type == OutcomeType.TIMEOUT
    assert expired.error.message == f"patient.note waited more than {WINDOW_S}s to start"
    assert kinds == ["queued", "cancelled"]
