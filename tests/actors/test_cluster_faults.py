"""A cluster node's background loops ride out a store that fails for a while, and a node that
learns it lost a lease lets the job's queue entry go."""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from datetime import datetime
from typing import Any

import anyio
import pytest
import redis
from structlog.testing import capture_logs

from jobwarden import JobState, Supervisor
from jobwarden.errors import StoreError
from jobwarden.plugins.builtin import builtin
from jobwarden.records import JobEvent, JobRecord
from jobwarden.store.redis import RedisStore
from jobwarden.store.redis_queue_scripts import GROUP
from jobwarden.store.shared import Delivery, Followed, Overdue, SharedStore, Verdict
from tests.actors.cluster_nodes import cluster_url, eventually, orphaned, queue_length
from tests.fakes import Gates, fake_plugin
from tests.redis_server import URL


@pytest.fixture
def anyio_backend() -> str:
    """redis-py is asyncio-only."""
    return "asyncio"


class FlakyShared:
    """A node's shared store whose background calls fail the first ``failures[name]`` times,
    whose takes and reclaims lose their reply (done, then failed) the first ``lost[name]``
    times, and whose renewals report every lease lost while ``steal`` is set."""

    def __init__(
        self, real: SharedStore, failures: dict[str, int], lost: dict[str, int] | None = None
    ) -> None:
        self.real = real
        self.lost = dict(lost or {})
        self.lost_jobs: list[str] = []  # the jobs leased by calls whose reply was lost
        self.retaken: list[str] = []  # the jobs retake returned
        self.node = real.node
        self.lease_s = real.lease_s
        self.max_deliveries = real.max_deliveries
        self.failures = dict(failures)
        self.steal = False
        self.forgetful = False
        self.renewed = anyio.Event()
        self.exhausted = anyio.Event()  # set once every planned failure happened
        # Set ``starting`` to hold the write that starts a job until ``start_may_go`` is set.
        self.starting: anyio.Event | None = None
        self.start_may_go = anyio.Event()

    def _fail(self, name: str) -> None:
        if self.failures.get(name, 0) > 0:
            self.failures[name] -= 1
            if not any(self.failures.values()):
                self.exhausted.set()
            raise StoreError(f"the store failed {name} on purpose")

    async def enqueue(
        self,
        record: JobRecord,
        event: JobEvent,
        *,
        max_queued: int,
        start_by: datetime | None = None,
    ) -> JobRecord:
        if self.failures.get("enqueue", 0) > 0:
            self.failures["enqueue"] -= 1
            raise TypeError("a bug in the shared store")
        return await self.real.enqueue(record, event, max_queued=max_queued, start_by=start_by)

    async def overdue(self, now: datetime, count: int, *, skip: int = 0) -> Overdue:
        self._fail("overdue")
        return await self.real.overdue(now, count, skip=skip)

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
        self._fail("change")
        if record.state is JobState.RUNNING and self.starting is not None:
            self.starting.set()
            await self.start_may_go.wait()
        return await self.real.change(
            prior, record, event, cap=cap, dead_letter=dead_letter, start_by=start_by
        )

    def _lose(self, name: str, deliveries: list[Delivery]) -> list[Delivery]:
        if deliveries and self.lost.get(name, 0) > 0:
            self.lost[name] -= 1
            self.lost_jobs += [delivery.job_id for delivery in deliveries]
            raise StoreError(f"the reply to {name} was lost on purpose")
        return deliveries

    async def take(self, count: int, *, block_s: float) -> list[Delivery]:
        self._fail("take")
        return self._lose("take", await self.real.take(count, block_s=block_s))

    async def reclaim(self, count: int) -> list[Delivery]:
        self._fail("reclaim")
        return self._lose("reclaim", await self.real.reclaim(count))

    async def retake(self) -> list[Delivery]:
        self._fail("retake")
        deliveries = await self.real.retake()
        self.retaken += [delivery.job_id for delivery in deliveries]
        return deliveries

    async def renew(self, entries: Sequence[str]) -> list[str]:
        self._fail("renew")
        if self.forgetful:
            return []  # as if the renewals came too late
        lost = list(entries) if self.steal and entries else await self.real.renew(entries)
        if lost:
            self.renewed.set()
        return lost

    async def settle(self, entries: Sequence[str]) -> None:
        self._fail("settle")
        await self.real.settle(entries)

    async def hand_back(self, entries: Sequence[tuple[str, str]]) -> None:
        self._fail("hand_back")
        await self.real.hand_back(entries)

    async def retire(self) -> None:
        await self.real.retire()

    async def request_cancel(self, job_id: str) -> None:
        await self.real.request_cancel(job_id)

    async def follow(self, after: int, *, block_s: float) -> Followed:
        self._fail("follow")
        return await self.real.follow(after, block_s=block_s)


def flaky_store(
    url: str, failures: dict[str, int], lost: dict[str, int] | None = None
) -> tuple[RedisStore, FlakyShared]:
    store = RedisStore(url, node="A")
    flaky = FlakyShared(store.shared, failures, lost)
    store.shared = flaky
    return store, flaky


def warnings(logs: Sequence[MutableMapping[str, Any]]) -> list[str]:
    return [entry["event"] for entry in logs if entry["log_level"] == "warning"]


@pytest.mark.anyio
async def test_the_background_loops_ride_out_store_errors(redis_prefix: str) -> None:
    """Following, taking, renewing, reclaiming, settling and sweeping each fail at first: the
    loops back off and retry, every job still succeeds, and no queue entry is left behind."""
    failures = {
        "follow": 2,
        "take": 2,
        "retake": 1,
        "renew": 1,
        "reclaim": 1,
        "settle": 1,
        "overdue": 1,
    }
    store, flaky = flaky_store(cluster_url(redis_prefix, lease_s=0.3), failures)
    with capture_logs() as logs:
        async with Supervisor(plugins=[builtin], store=store) as sup:
            jobs = [await sup.submit("builtin.echo", {"text": str(i)}) for i in range(5)]
            finals = [await sup.wait(job.id, timeout=20) for job in jobs]
            with anyio.fail_after(20):
                await flaky.exhausted.wait()
    assert all(final.state is JobState.SUCCEEDED for final in finals)
    assert queue_length(redis_prefix) == 0
    said = warnings(logs)
    assert "store unreachable while following the event log; retrying" in said
    assert "store unreachable while taking jobs from the queue; retrying" in said
    assert "could not renew leases" in said
    assert "could not reclaim expired leases" in said
    assert "could not acknowledge finished jobs" in said
    assert "store unreachable while looking for queued jobs out of time; retrying" in said


@pytest.mark.anyio
async def test_jobs_a_take_leased_without_a_reply_run_at_once(redis_prefix: str) -> None:
    """A take whose reply was lost leased its jobs to the node all the same: the node finds them
    among its leases and runs them, long before those leases (a minute) could run out."""
    store, flaky = flaky_store(cluster_url(redis_prefix, lease_s=60), {}, {"take": 1})
    async with Supervisor(plugins=[builtin], store=store) as sup:
        jobs = [await sup.submit("builtin.echo", {"text": str(i)}) for i in range(3)]
        finals = [await sup.wait(job.id, timeout=20) for job in jobs]
    assert flaky.lost_jobs
    assert set(flaky.lost_jobs) <= set(flaky.retaken)
    assert all(final.state is JobState.SUCCEEDED for final in finals)
    assert queue_length(redis_prefix) == 0


@pytest.mark.anyio
async def test_a_job_a_reclaim_leased_without_a_reply_runs_here(redis_prefix: str) -> None:
    """A reclaim whose reply was lost took a dead node's job over all the same: the node finds
    it among its leases and runs it, without waiting out another lease."""
    url = cluster_url(redis_prefix, lease_s=3)
    store, flaky = flaky_store(url, {}, {"reclaim": 1})
    with capture_logs() as logs:
        async with (
            orphaned(url, "builtin.echo", {"text": "lost"}, running=False) as job,
            Supervisor(plugins=[builtin], store=store) as sup,
        ):
            done = await sup.wait(job.id, timeout=20)
    assert flaky.lost_jobs == [job.id]
    assert job.id in flaky.retaken
    assert done.state is JobState.SUCCEEDED
    assert "could not reclaim expired leases" in warnings(logs)


@pytest.mark.anyio
async def test_a_node_that_lost_a_lease_lets_the_entry_go(redis_prefix: str) -> None:
    """When a renewal says a job's lease went to another node, this node stops holding its entry
    (it will not acknowledge what is no longer its own), and still records the job's outcome
    while the stored job is as it left it."""
    gates = Gates()
    store, flaky = flaky_store(cluster_url(redis_prefix, lease_s=0.3), {})
    with capture_logs() as logs:
        async with Supervisor(plugins=[fake_plugin(gates)], store=store) as sup:
            job = await sup.submit("fake.gate", {"key": "stolen"})
            await gates.wait_entered("stolen")
            flaky.steal = True
            await flaky.renewed.wait()
            flaky.steal = False
            gates.open("stolen")
            done = await sup.wait(job.id, timeout=20)
            assert sup._cluster is not None
            assert job.id not in sup._cluster.entries
    assert done.state is JobState.SUCCEEDED
    assert "leases lost to other nodes; their jobs run there" in warnings(logs)
    assert queue_length(redis_prefix) == 1  # the entry waits for the lease's new holder


@pytest.mark.anyio
async def test_a_hand_back_that_fails_is_logged_and_left_to_the_leases(redis_prefix: str) -> None:
    """A node that cannot hand its waiting jobs back at shutdown says so; they come back to the
    queue when their leases expire."""
    store, _ = flaky_store(cluster_url(redis_prefix, lease_s=0.3), {"hand_back": 1})
    with capture_logs() as logs:
        async with Supervisor(plugins=[builtin], store=store) as sup:
            await sup.run("builtin.echo", {"text": "x"}, timeout=20)
    assert "queued jobs not handed back: they return after a lease" in warnings(logs)


@pytest.mark.anyio
async def test_a_takeover_whose_write_fails_is_tried_again_later(redis_prefix: str) -> None:
    """If recording a dead node's job as interrupted fails, the node lets the lease lapse and
    the job is taken over again at the next look, not lost."""
    url = cluster_url(redis_prefix, lease_s=0.3)
    store, _ = flaky_store(url, {"change": 1})
    with capture_logs() as logs:
        async with (
            orphaned(url, "builtin.echo", {"text": "cut"}, running=True) as job,
            Supervisor(plugins=[builtin], store=store) as sup,
        ):
            done = await sup.wait(job.id, timeout=20)
    assert done.state is JobState.FAILED
    assert done.error is not None
    assert done.error.type == "interrupted"
    assert "could not take a job over" in warnings(logs)


@pytest.mark.anyio
async def test_a_cancel_that_meets_the_job_starting_answers_cancelled(redis_prefix: str) -> None:
    """A cancel that arrives while this node is writing the job's start waits for the start, then
    stops the call, and answers the cancelled record (not ``JobFinished``)."""
    gates = Gates()
    store, flaky = flaky_store(cluster_url(redis_prefix), {})
    flaky.starting = anyio.Event()
    async with Supervisor(plugins=[fake_plugin(gates)], store=store) as sup:
        job = await sup.submit("fake.gate", {"key": "racing"})
        await flaky.starting.wait()
        async with anyio.create_task_group() as tg:
            answers: list[JobRecord] = []

            async def cancel() -> None:
                answers.append(await sup.cancel(job.id))

            tg.start_soon(cancel)
            await anyio.wait_all_tasks_blocked()
            flaky.start_may_go.set()
    assert [answer.state for answer in answers] == [JobState.CANCELLED]


@pytest.mark.anyio
async def test_a_node_that_reclaims_its_own_lease_keeps_holding_the_job(redis_prefix: str) -> None:
    """A lease of this node's that expired (its renewals came too late) and comes back to it by
    a reclaim stays held: the entry is not acknowledged while the job still runs."""
    gates = Gates()
    store, flaky = flaky_store(cluster_url(redis_prefix, lease_s=0.3), {})
    flaky.forgetful = True
    queue = f"{redis_prefix}:queue"
    async with Supervisor(plugins=[fake_plugin(gates)], store=store) as sup:
        job = await sup.submit("fake.gate", {"key": "mine"})
        await gates.wait_entered("mine")
        with redis.Redis.from_url(URL) as client:
            # Nothing announces a reclaim: watch its mark, the entry's delivery count.
            await eventually(
                lambda: client.xpending_range(queue, GROUP, "-", "+", 10)[0]["times_delivered"] > 1
            )
            flaky.forgetful = False
            still = client.xpending_range(queue, GROUP, "-", "+", 10)
        gates.open("mine")
        done = await sup.wait(job.id, timeout=20)
    assert [p["consumer"] for p in still] == [b"A"]
    assert done.state is JobState.SUCCEEDED
    assert queue_length(redis_prefix) == 0


@pytest.mark.anyio
async def test_a_shared_stores_own_type_error_is_not_blamed_on_the_input(
    redis_prefix: str,
) -> None:
    """A TypeError from a cluster node's enqueue, for a job every JSON could hold, propagates
    as it is rather than as InvalidInput, and the next submit runs."""
    store, _ = flaky_store(cluster_url(redis_prefix), {"enqueue": 1})
    async with Supervisor(plugins=[builtin], store=store) as sup:
        with pytest.raises(TypeError, match="a bug in the shared store"):
            await sup.submit("builtin.echo", {"text": "lost"})
        kept = await sup.submit("builtin.echo", {"text": "kept"})
        done = await sup.wait(kept.id, timeout=20)
        listed = await sup.list_jobs()
    assert done.state is JobState.SUCCEEDED
    assert [job.id for job in listed.jobs] == [kept.id]


@pytest.mark.anyio
async def test_a_node_follows_past_an_event_that_cannot_be_read(redis_prefix: str) -> None:
    """A damaged entry in the shared event log is logged and skipped: the node still delivers
    the events after it. Before, its follower failed at that entry on every try, forever."""
    store = RedisStore(cluster_url(redis_prefix), node="n1")
    with capture_logs() as logs:
        async with Supervisor(plugins=[builtin], store=store) as sup:
            with redis.Redis.from_url(URL) as client:
                offset = client.hincrby(store.keys.meta, "last", 1)
                client.xadd(store.keys.events, {"job": "x", "body": b"\x00"}, f"{offset}-0")
            async with sup.subscribe() as events:
                job = await sup.submit("builtin.echo", {"text": "after"})
                with anyio.fail_after(10):
                    async for event in events:
                        if not isinstance(event, JobEvent):
                            continue
                        if event.subject == job.id and event.data.state.terminal:
                            break
    assert isinstance(event, JobEvent)
    assert event.data.state is JobState.SUCCEEDED
    skipped = [entry for entry in logs if entry["log_level"] == "error"]
    assert [entry["entry"] for entry in skipped] == [f"{offset}-0"]
