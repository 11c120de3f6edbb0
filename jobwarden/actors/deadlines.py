"""Job deadlines enforced by one watchdog task: a heap of deadlines instead of a timer per call.

A cancel scope with a deadline schedules (and later cancels) an event-loop timer for every call;
with thousands of calls that is thousands of timers, each a few allocations. Here a running call's
scope has no deadline of its own: its deadline goes into a heap, and one task sleeps until the
earliest one, then cancels every scope that is due, marking its context as timed out.
"""

from __future__ import annotations

import heapq
import itertools
import math

import anyio

from jobwarden.plugins.context import ToolContext

COMPACT_AT = 1_024  # finished entries tolerated in the heap before it is rebuilt


class Watch:
    """One call's place in the heap; ``scope`` is None once the call finished."""

    __slots__ = ("ctx", "deadline", "scope", "seq")

    def __init__(
        self, deadline: float, seq: int, scope: anyio.CancelScope, ctx: ToolContext
    ) -> None:
        self.deadline = deadline
        self.seq = seq
        self.scope: anyio.CancelScope | None = scope
        self.ctx = ctx

    def __lt__(self, other: Watch) -> bool:
        return (self.deadline, self.seq) < (other.deadline, other.seq)


class Deadlines:
    """The heap and its watchdog; ``run`` must be running for deadlines to fire."""

    def __init__(self) -> None:
        self._heap: list[Watch] = []
        self._finished = 0
        self._seq = itertools.count()
        self._wakeup: anyio.Event | None = None
        self._sleeping_until = math.inf

    def watch(self, deadline: float, scope: anyio.CancelScope, ctx: ToolContext) -> Watch | None:
        """Cancel ``scope`` (as a timeout) at ``deadline``; None when there is no deadline."""
        if deadline == math.inf:
            return None
        entry = Watch(deadline, next(self._seq), scope, ctx)
        heapq.heappush(self._heap, entry)
        if deadline < self._sleeping_until and self._wakeup is not None:
            self._wakeup.set()
        return entry

    def done(self, entry: Watch | None) -> None:
        """The call finished: forget its deadline (lazily, compacting now and then)."""
        if entry is None or entry.scope is None:
            return
        entry.scope = None
        self._finished += 1
        if self._finished > COMPACT_AT and self._finished * 2 > len(self._heap):
            self._heap = [e for e in self._heap if e.scope is not None]
            heapq.heapify(self._heap)
            self._finished = 0

    async def run(self) -> None:
        """Fire deadlines as they come due, forever."""
        while True:
            now = anyio.current_time()
            heap = self._heap
            while heap and heap[0].deadline <= now:
                entry = heapq.heappop(heap)
                if entry.scope is None:
                    self._finished -= 1
                    continue
                entry.ctx.request_cancel(timed_out=True)
                entry.scope.cancel()
                entry.scope = None
            self._sleeping_until = heap[0].deadline if heap else math.inf
            self._wakeup = anyio.Event()
            with anyio.CancelScope(deadline=self._sleeping_until):
                await self._wakeup.wait()
