"""Thread mode: abandoned threads are counted in metrics and bounded per tool."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from jobwarden import JobState, Supervisor
from jobwarden.errors import OutcomeType
from tests.fakes import Gates, fake_plugin

pytestmark = pytest.mark.anyio


async def test_abandoned_threads_are_counted_and_bounded() -> None:
    """A cancelled thread counts as abandoned until it returns; at the limit new calls fail fast."""
    gates = Gates()
    with anyio.fail_after(30):
        async with Supervisor(plugins=[fake_plugin(gates)], max_abandoned_threads=1) as sup:
            stuck = await sup.submit("fake.stuck", {"key": "stuck"})
            await gates.wait_entered("stuck")
            assert (await sup.cancel(stuck.id)).state is JobState.CANCELLED
            await anyio.wait_all_tasks_blocked()
            assert sup.registry.metrics("fake.stuck").abandoned_threads == 1

            refused = await sup.submit("fake.stuck", {"key": "refused"})
            done = await sup.wait(refused.id, timeout=10)
            assert done.state is JobState.FAILED
            assert done.error is not None
            assert done.error.type == OutcomeType.RESOURCE_EXHAUSTED
            assert done.error.details == {"abandoned_threads": 1, "limit": 1}

            gates.open("stuck")
            # The abandoned thread returns on its own time: look again at each checkpoint.
            while sup.registry.metrics("fake.stuck").abandoned_threads:
                await anyio.lowlevel.checkpoint()
            gates.open("later")
            later = await sup.submit("fake.stuck", {"key": "later"})
            assert (await sup.wait(later.id, timeout=10)).state is JobState.SUCCEEDED
            metrics = sup.registry.metrics("fake.stuck")
            assert metrics.failures_by_type == {"cancelled": 1, "resource_exhausted": 1}
            assert (metrics.successes, metrics.in_flight) == (1, 0)


async def test_a_timed_out_thread_is_abandoned_and_counted() -> None:
    """A thread call past its deadline ends timed_out and its thread counts as abandoned."""
    gates = Gates()
    with anyio.fail_after(30):
        async with Supervisor(plugins=[fake_plugin(gates)]) as sup:
            rec = await sup.submit("fake.stuck", {"key": "slow"}, timeout_s=0.05)
            assert (await sup.wait(rec.id, timeout=10)).state is JobState.TIMED_OUT
            await anyio.wait_all_tasks_blocked()
            assert sup.registry.metrics("fake.stuck").abandoned_threads == 1
            gates.open("slow")


async def test_an_abandoned_thread_gives_its_slot_back() -> None:
    """With one thread slot, a thread abandoned by a cancel no longer holds it: the next
    thread-mode call runs while the abandoned thread is still stuck."""
    gates = Gates()
    try:
        with anyio.fail_after(30):
            async with Supervisor(plugins=[fake_plugin(gates)], thread_concurrency=1) as sup:
                first = await sup.submit("fake.stuck", {"key": "first"})
                await gates.wait_entered("first")
                assert (await sup.cancel(first.id)).state is JobState.CANCELLED
                second = await sup.submit("fake.stuck", {"key": "second"})
                await gates.wait_entered("second")
                assert sup.registry.metrics("fake.stuck").abandoned_threads == 1
                gates.open("second")
                assert (await sup.wait(second.id)).state is JobState.SUCCEEDED
    finally:
        gates.open("first")
