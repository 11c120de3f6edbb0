"""One subscriber's view of the event stream: replay from the store, then live, bounded."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import anyio

from jobwarden.errors import SubscriberOverflow
from jobwarden.records import JobEvent, StreamEvent
from jobwarden.store.base import JobStore

if TYPE_CHECKING:
    from collections.abc import Callable

REPLAY_PAGE = 256


class Subscription:
    """An async iterator of events matching a job and/or tool filter, after offset ``since``.

    It is registered with the bus before reading history, so nothing committed in between is
    missed; anything seen twice is recognised by its offset and skipped. Live events wait in a
    buffer of ``capacity``; overflowing it while live drops the subscriber, which then raises
    ``SubscriberOverflow`` after yielding what it had, naming the offset to resume from.
    """

    __slots__ = (
        "_buffer",
        "_capacity",
        "_closed",
        "_ends_after_replay",
        "_lost_live",
        "_on_drop",
        "_overflowed",
        "_pending_reset",
        "_replaying",
        "_store",
        "_wakeup",
        "job_id",
        "last_offset",
        "tool",
    )

    def __init__(
        self,
        store: JobStore,
        *,
        since: int,
        capacity: int,
        job_id: str | None,
        tool: str | None,
        reset: StreamEvent | None,
        ends_after_replay: bool,
        on_drop: Callable[[Subscription], None],
    ) -> None:
        self._store = store
        self._capacity = capacity
        self._buffer: deque[JobEvent] = deque()
        self._wakeup: anyio.Event | None = None
        self._replaying = True
        self._lost_live = False
        self._overflowed = False
        self._closed = False
        self._pending_reset = reset
        self._ends_after_replay = ends_after_replay
        self._on_drop = on_drop
        self.job_id = job_id
        self.tool = tool
        self.last_offset = since

    def offer(self, event: JobEvent) -> None:
        """Called by the bus for every delivered event, in offset order. Never blocks."""
        if (self.job_id is not None and event.subject != self.job_id) or (
            self.tool is not None and event.data.tool != self.tool
        ):
            return
        if len(self._buffer) >= self._capacity:
            if self._replaying:
                # The store still has these: drop the buffer and replay further instead.
                self._buffer.clear()
                self._lost_live = True
                return
            self._overflowed = True
            self._on_drop(self)
        else:
            self._buffer.append(event)
        if self._wakeup is not None:
            self._wakeup.set()

    def close(self) -> None:
        """End the iteration once the buffer is drained."""
        self._closed = True
        if self._wakeup is not None:
            self._wakeup.set()

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[StreamEvent]:
        if self._pending_reset is not None:
            reset, self._pending_reset = self._pending_reset, None
            yield reset
        async for event in self._replay():
            yield event
            if self._finished_by(event):
                return
        if self._ends_after_replay:
            return
        while True:
            while not self._buffer:
                if self._overflowed:
                    raise SubscriberOverflow(
                        f"subscriber fell behind ({self._capacity} events buffered); "
                        f"resume with since={self.last_offset}",
                        last_offset=self.last_offset,
                    )
                if self._closed:
                    return
                self._wakeup = anyio.Event()
                await self._wakeup.wait()
                self._wakeup = None
            event = self._buffer.popleft()
            if event.offset <= self.last_offset:
                continue
            self.last_offset = event.offset
            yield event
            if self._finished_by(event):
                return

    async def _replay(self) -> AsyncIterator[JobEvent]:
        while True:
            self._lost_live = False
            page = await self._store.read_events(
                self.last_offset, REPLAY_PAGE, job_id=self.job_id, tool=self.tool
            )
            if not page:
                if self._lost_live:
                    continue
                self._replaying = False
                return
            for event in page:
                self.last_offset = event.offset
                yield event

    def _finished_by(self, event: JobEvent) -> bool:
        return self.job_id is not None and event.data.state.terminal
