"""Group commit: many concurrent writers share one commit (the Redis store's pipelines).

A write joins the open batch and waits until a commit containing it has finished. There is no
background task: the first waiter that finds no commit in flight becomes the leader and commits
the whole open batch; writes arriving meanwhile gather in the next batch, whose first waiter leads
once the current commit is done. So one writer alone pays one round trip (to the server) per
write, and a hundred concurrent writers pay about one between them. Batches commit one at a time
and each keeps its writes in arrival order, so writes reach the store in the order they were made.

Waiting is shielded from cancellation: a write that was handed over completes (or fails) before
its caller sees anything else, so the caller's in-memory state never diverges from the store.
asyncio's own cancellation (``task.cancel()``, ``asyncio.timeout``) passes through an anyio shield,
so a write cancelled that way waits again until its batch is committed, then raises it. Only a
leader cancelled that way in the middle of its commit cannot finish it: that batch's writes fail
with a ``StoreError`` saying their outcome is unknown, rather than being reported committed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import anyio
import msgspec

from jobwarden.errors import StoreError

Op = TypeVar("Op")


class StoreStatistics(msgspec.Struct, frozen=True):
    """The write path's counters."""

    commits: int
    writes: int


class _Batch(Generic[Op]):
    __slots__ = ("committed", "error", "ops")

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.committed = False
        self.error: BaseException | None = None


class GroupCommit(Generic[Op]):
    """Batches ops for ``await commit(ops)``, one batch at a time."""

    def __init__(self, commit: Callable[[list[Op]], Awaitable[None]]) -> None:
        self._commit = commit
        self._open: _Batch[Op] = _Batch()
        self._in_flight: anyio.Event | None = None
        self.batches = 0
        self.ops = 0

    async def write(self, op: Op) -> None:
        """Add ``op`` to the next commit and return once it is committed; raise what it raised."""
        batch = self._open
        batch.ops.append(op)
        with anyio.CancelScope(shield=True):
            try:
                await self._committed(batch)
            except BaseException:  # asyncio's own cancellation, through the shield
                await self._committed(batch)
                raise
        if batch.error is not None:
            raise batch.error

    async def _committed(self, batch: _Batch[Op]) -> None:
        """Return once ``batch`` is committed, leading its commit if nobody else does."""
        while not batch.committed:
            in_flight = self._in_flight
            if in_flight is None:
                await self._lead()
            else:
                await in_flight.wait()

    def statistics(self) -> StoreStatistics:
        """Commits and writes so far: writes / commits is how many each commit carried."""
        return StoreStatistics(commits=self.batches, writes=self.ops)

    async def drain(self) -> None:
        """Return once no commit is in flight."""
        while self._in_flight is not None:
            await self._in_flight.wait()

    async def _lead(self) -> None:
        done = self._in_flight = anyio.Event()
        batch: _Batch[Op] | None = None
        try:
            # Let the tasks the last commit woke run first: their next writes join this batch.
            await anyio.lowlevel.checkpoint()
            batch, self._open = self._open, _Batch()
            await self._commit(batch.ops)
        except Exception as exc:
            if batch is not None:
                batch.error = exc
        except BaseException:
            if batch is not None:
                batch.error = StoreError(
                    "the commit was interrupted before the store answered: its writes may or"
                    " may not be stored"
                )
            raise
        finally:
            if batch is not None:
                batch.committed = True
                self.batches += 1
                self.ops += len(batch.ops)
            self._in_flight = None
            done.set()
