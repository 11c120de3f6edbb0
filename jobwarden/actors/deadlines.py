"""Deadlines kept by one watchdog task: a heap of deadlines instead of a timer per call or wait.

A cancel scope with a deadline schedules (and later cancels) an event-loop timer for every call;
with thousands of calls that is thousands of timers, each a few allocations. Here a running call's
scope has no deadline of its own: its deadline goes into a heap, and one task sleeps until the
earliest one, then cancels every scope that is due, marking its context as timed out. A timed
wait for a job is an alarm in the same heap: it sets an event instead of cancelling a scope; and
a delayed action (a retry's backoff, a queue timeout) is a callback run when it comes due.

The heap holds only ``(deadline, key)`` pairs; what to do at the deadline sits in a dict under the
key and is dropped the moment the call or wait finishes, so a finished job's objects are freed at
once instead of lingering in the heap until the cyclic gc or a compaction finds them. A watched
call's scope and context sit in two dicts under the same key rather than in a tuple in one: a
tuple per call would be one more gc-tracked object for every running job, and with thousands of
calls in flight each of them makes the cyclic gc's full collections come sooner.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable

import anyio

from jobwarden.plugins.context import ToolContext

COMPACT_AT = 1_024  # stale heap entries tolerated before the heap is rebuilt

_Action = anyio.CancelScope | anyio.Event | Callable[[], None]


class Deadlines:
    """The heap and its watchdog; ``run`` must be running for deadlines to fire."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int]] = []
        self._pending: dict[int, _Action] = {}
        self._contexts: dict[int, ToolContext] = {}  # a watched scope's call, under its key
        self._keys = itertools.count()
        self._wakeup: anyio.Event | None = None
        self._sleeping_until = math.inf
        self.closed = False

    def watch(self, deadline: float, scope: anyio.CancelScope, ctx: ToolContext) -> int | None:
        """Cancel ``scope`` (as a timeout) at ``deadline``; None when there is no deadline."""
        if deadline == math.inf:
            return None
        key = self._add(deadline, scope)
        self._contexts[key] = ctx
        return key

    def alarm(self, deadline: float, event: anyio.Event) -> int | None:
        """Set ``event`` at ``deadline``; None when there is no deadline."""
        if deadline == math.inf:
            return None
        return self._add(deadline, event)

    def later(self, deadline: float, callback: Callable[[], None]) -> int:
        """Call ``callback`` (quick, synchronous) at ``deadline``, from the watchdog's task."""
        return self._add(deadline, callback)

    def done(self, key: int | None) -> None:
        """The call or wait finished: forget its deadline (the heap is compacted now and then)."""
        if key is None or self._pending.pop(key, None) is None:
            return
        self._contexts.pop(key, None)
        stale = len(self._heap) - len(self._pending)
        if stale > COMPACT_AT and stale * 2 > len(self._heap):
            pending = self._pending
            self._heap = [entry for entry in self._heap if entry[1] in pending]
            heapq.heapify(self._heap)

    def close(self) -> None:
        """The watchdog has stopped for good: ring every alarm now, so each waiter can see that.

        Scopes are left alone: their calls ended with the watchdog's task group; callbacks are
        dropped: what they would have done belongs to a runtime that has stopped.
        """
        self.closed = True
        pending, self._pending = self._pending, {}
        self._contexts = {}
        self._heap = []
        for action in pending.values():
            if isinstance(action, anyio.Event):
                action.set()

    def _add(self, deadline: float, action: _Action) -> int:
        key = next(self._keys)
        self._pending[key] = action
        heapq.heappush(self._heap, (deadline, key))
        if deadline < self._sleeping_until and self._wakeup is not None:
            self._wakeup.set()
        return key

    async def run(self) -> None:
        """Fire deadlines as they come due, forever."""
        pending = self._pending
        contexts = self._contexts
        while True:
            now = anyio.current_time()
            heap = self._heap
            while heap and heap[0][0] <= now:
                key = heapq.heappop(heap)[1]
                action = pending.pop(key, None)
                if isinstance(action, anyio.Event):
                    action.set()
                elif isinstance(action, anyio.CancelScope):
                    contexts.pop(key).request_cancel(timed_out=True)
                    action.cancel()
                elif action is not None:
                    action()
            self._sleeping_until = heap[0][0] if heap else math.inf
            self._wakeup = anyio.Event()
            with anyio.CancelScope(deadline=self._sleeping_until):
                await self._wakeup.wait()
