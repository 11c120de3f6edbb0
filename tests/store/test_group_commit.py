"""GroupCommit (the Redis store's pipelines) under asyncio's own cancellation, which passes through
an anyio shield: a write still completes before its caller sees the cancellation, a cancelled
leader never wedges the writes after it, and a commit cut off halfway is never reported done."""

from __future__ import annotations

import asyncio

import anyio
import pytest
from anyio.lowlevel import checkpoint

from jobwarden.errors import StoreError
from jobwarden.store.group_commit import GroupCommit

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    """Native cancellation (``task.cancel()``) is asyncio's."""
    return "asyncio"


class Store:
    """A commit that records each batch and, while ``held``, waits for ``release``."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.held = False
        self.entered = anyio.Event()
        self.release = anyio.Event()

    async def commit(self, ops: list[int]) -> None:
        if self.held:
            self.entered.set()
            await self.release.wait()
        self.batches.append(list(ops))


async def test_a_leader_cancelled_before_its_commit_still_commits_and_unblocks_others() -> None:
    """A writer cancelled natively at the checkpoint that opens its commit still commits its
    write before the cancellation reaches it, and later writes are not left waiting."""
    store = Store()
    group: GroupCommit[int] = GroupCommit(store.commit)
    leader = asyncio.ensure_future(group.write(1))
    await checkpoint()  # the leader is now at its checkpoint, its commit not begun
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert store.batches == [[1]]
    with anyio.fail_after(5):
        await group.write(2)
    assert store.batches == [[1], [2]]


async def test_a_waiter_cancelled_meanwhile_sees_it_only_once_its_write_is_committed() -> None:
    """A writer whose batch waits behind a commit in flight, cancelled natively, gets the
    cancellation only after a later commit carried its write."""
    store = Store()
    group: GroupCommit[int] = GroupCommit(store.commit)
    store.held = True
    async with anyio.create_task_group() as tg:
        tg.start_soon(group.write, 1)
        await store.entered.wait()
        waiter = asyncio.ensure_future(group.write(2))
        await anyio.wait_all_tasks_blocked()
        waiter.cancel()
        await anyio.wait_all_tasks_blocked()
        early = waiter.done()
        store.held = False
        store.release.set()
    assert not early
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert store.batches == [[1], [2]]


async def test_a_commit_cut_off_halfway_fails_its_batch_instead_of_reporting_it_done() -> None:
    """When the leader is cancelled natively during its commit, the others in its batch get a
    StoreError saying the outcome is unknown, and the next write commits normally."""
    store = Store()
    group: GroupCommit[int] = GroupCommit(store.commit)
    store.held = True
    outcomes: list[BaseException | None] = []

    async def follow() -> None:
        try:
            await group.write(2)
        except StoreError as exc:
            outcomes.append(exc)
        else:
            outcomes.append(None)

    leader = asyncio.ensure_future(group.write(1))
    async with anyio.create_task_group() as tg:
        tg.start_soon(follow)  # joins the leader's batch: the commit has not begun
        await store.entered.wait()
        leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert len(outcomes) == 1
    assert isinstance(outcomes[0], StoreError)
    assert "may or may not be stored" in str(outcomes[0])
    store.held = False
    await group.write(3)
    assert store.batches == [[3]]
