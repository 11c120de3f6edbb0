"""One subscriber's view of the event stream: replay from the store, then live, bounded."""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import anyio

from jobwarden.actors.states import JobState
from jobwarden.errors import StoreError, StoreUnavailable, SubscriberOverflow
from jobwarden.records import JobEvent, ResetData, StreamEvent, StreamReset
from jobwarden.store.base import JobStore

if TYPE_CHECKING:
    from collections.abc import Callable

REPLAY_PAGE = 256


class Subscription:
    """An async iterator of events matching a job and/or tool filter, after offset ``since``.

    It is registered with the bus before it reads any history, so an event is either in the store
    when it replays or arrives live afterwards; anything seen twice is recognised by its offset
    and skipped. Replay stops once the live buffer reaches back to where replay is. If history it
    still needed has been purged, a ``StreamReset`` says so before the events that follow the gap.
    Live events wait in a buffer of ``capacity``; overflowing it while live drops the subscriber,
    which then raises ``SubscriberOverflow`` after yielding what it had, naming the offset to
    resume from. History the store cannot read raises ``StoreUnavailable``, naming that offset.

    ``since`` is the offset it starts after, fixed at creation: the events it yields are exactly
    the matching ones after it (a reset aside), so a client told it before any event can resume
    from it. ``last_offset`` is how far it has got since.
    """

    __slots__ = (
        "_buffer",
        "_capacity",
        "_closed",
        "_done",
        "_ends_after_replay",
        "_filtered",
        "_live_from",
        "_on_drop",
        "_overflowed",
        "_page",
        "_replaying",
        "_source",
        "_store",
        "_store_tool",
        "_wakeup",
        "job_id",
        "last_offset",
        "owner",
        "since",
        "state",
        "tool",
    )

    def __init__(
        self,
        store: JobStore,
        *,
        source: str,
        since: int,
        capacity: int,
        job_id: str | None,
        tool: str | None,
        owner: str | None,
        state: JobState | None,
        ends_after_replay: bool,
        on_drop: Callable[[Subscription], None],
    ) -> None:
        self._store = store
        self._source = source
        self._capacity = capacity
        self._buffer: deque[JobEvent] = deque()
        self._wakeup: anyio.Event | None = None
        self._replaying = True
        self._live_from: int | None = None
        self._overflowed = False
        self._closed = False
        self._done = False
        self._page: deque[JobEvent] = deque()
        self._ends_after_replay = ends_after_replay
        self._on_drop = on_drop
        self.job_id = job_id
        self.tool = tool
        self.owner = owner
        self.state = state
        self.since = since
        self.last_offset = since
        # The tool filter the store and the bus apply. A job's stream applies its own as it
        # yields, as it does its state filter: a job has one tool, and a filter naming another
        # must still see the terminal event to end.
        self._store_tool = tool if job_id is None else None
        # Most streams take everything: they skip the matching, called for every live event.
        self._filtered = not (job_id is None and tool is None and owner is None and state is None)

    def offer(self, event: JobEvent) -> None:
        """Called by the bus for every delivered event, in offset order. Never blocks."""
        if self._live_from is None:
            self._live_from = event.offset
        if self._filtered and not self._matches(event):
            return
        if len(self._buffer) >= self._capacity:
            if self._replaying:
                # The store has these too: forget the buffer and let replay go further.
                self._buffer.clear()
                self._live_from = None
                return
            self._overflowed = True
            self._on_drop(self)
        else:
            self._buffer.append(event)
        self._wake()

    def skip(self, offset: int) -> None:
        """Called by the bus, in offset order, for an offset whose event was never committed: a
        stream that had nothing live yet is live from there (the offset has no event to replay,
        and the store's history starting after it is no sign of a purge)."""
        if self._live_from is None:
            self._live_from = offset

    def _matches(self, event: JobEvent) -> bool:
        return (
            (self.job_id is None or event.subject == self.job_id)
            and (self._store_tool is None or event.data.tool == self._store_tool)
            and self._visible(event)
        )

    def _visible(self, event: JobEvent) -> bool:
        """The filters the store does not apply when replaying: owner and state (a job's stream
        applies its state filter as it yields: it must see the job's terminal event to end)."""
        data = event.data
        return (self.owner is None or data.owner == self.owner) and (
            self.state is None or self.job_id is not None or data.state == self.state
        )

    def close(self) -> None:
        """End the iteration once the buffer is drained."""
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        # Set once per wait: the events that follow before the reader runs need no call at all.
        wakeup, self._wakeup = self._wakeup, None
        if wakeup is not None:
            wakeup.set()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> StreamEvent:
        """The next event: replayed from the store first, then live from the buffer."""
        while not self._done:
            event: StreamEvent | None
            if self._replaying:
                event = await self._next_replayed()
            elif self._buffer:
                event = self._take_buffered()
            else:
                event = await self._next_live()
            if event is not None:
                shown = self._yielding(event)
                if shown is not None:
                    return shown
        raise StopAsyncIteration

    async def batch(self) -> list[StreamEvent]:
        """The next event and every live one already buffered behind it; [] once it ends.

        The same events in the same order as iterating, with one await per batch instead of one
        per event: a writer that fell a few events behind catches up in one go.
        """
        batch: list[StreamEvent] = []
        buffer = self._buffer
        while not batch and not self._done:
            if self._replaying:
                replayed = await self._next_replayed()
                shown = None if replayed is None else self._yielding(replayed)
                if shown is not None:
                    batch.append(shown)
            elif buffer:
                self._drain_into(batch)
            else:
                await self._wait_live()
        return batch

    def _drain_into(self, batch: list[StreamEvent]) -> None:
        """Move the buffered events into ``batch``, skipping those replay already yielded.

        ``_take_buffered`` and ``_yielding`` event by event, unrolled: this runs for every event
        delivered to every websocket or SSE connection.
        """
        buffer = self._buffer
        last = self.last_offset
        one_job = self.job_id is not None
        state = self.state
        tool = self.tool
        while buffer:
            event = buffer.popleft()
            offset = event.offset
            if offset > last:
                last = offset
                if not one_job:
                    batch.append(event)
                    continue
                data = event.data
                if (state is None or data.state is state) and (tool is None or data.tool == tool):
                    batch.append(event)
                if data.state.terminal:
                    self._done = True
                    break
        self.last_offset = last

    def _yielding(self, event: StreamEvent) -> StreamEvent | None:
        """``event`` as handed out, or None when a job's stream filters it out by state or tool;
        a job's stream ends after its terminal event, shown or not."""
        if self.job_id is not None and isinstance(event, JobEvent):
            data = event.data
            self._done = data.state.terminal
            if (self.state is not None and data.state is not self.state) or (
                self.tool is not None and data.tool != self.tool
            ):
                return None
        return event

    async def _next_replayed(self) -> StreamEvent | None:
        """One event from the store, a reset notice, or None when there is nothing to replay."""
        if self._page:
            event = self._page.popleft()
            self.last_offset = event.offset
            return event
        if self._caught_up():
            self._end_replay()
            return None
        try:
            bounds = await self._store.event_bounds()
            if self.last_offset < bounds.first - 1 and not await self._job_history_kept():
                return self._reset(bounds.first)
            page = await self._store.read_events(
                self.last_offset, REPLAY_PAGE, job_id=self.job_id, tool=self._store_tool
            )
        except StoreError as exc:
            raise StoreUnavailable(
                f"the events after {self.last_offset} could not be read: {exc}", job_id=self.job_id
            ) from exc
        if page:
            visible = [e for e in page if self._visible(e)]
            if visible:
                self._page.extend(visible)
            else:
                self.last_offset = page[-1].offset
        else:
            # Nothing matching up to bounds.last, and whatever comes later arrives live.
            self.last_offset = max(self.last_offset, bounds.last)
            if self._live_from is None:
                self._end_replay()
        return None

    async def _job_history_kept(self) -> bool:
        """Whether a job's stream lost nothing it asked for though the log's start moved past
        ``since``: the job's first event still kept is the one that created it (the store
        purges other jobs' history, not this one's)."""
        job_id = self.job_id
        if job_id is None:
            return False
        record = await self._store.get(job_id)
        first = await self._store.read_events(self.last_offset, 1, job_id=job_id)
        return (
            record is not None
            and bool(first)
            and first[0].data.attempt == 1
            and first[0].time == record.created_at
        )

    def _end_replay(self) -> None:
        self._replaying = False
        self._done = self._ends_after_replay

    async def _next_live(self) -> JobEvent | None:
        """The next buffered live event (waiting for one), or None for a duplicate or the end."""
        while not self._buffer:
            await self._wait_live()
            if self._done:
                return None
        return self._take_buffered()

    async def _wait_live(self) -> None:
        """Wait for the next live event; once closed (nothing buffered), mark the stream done.

        Raises ``SubscriberOverflow`` once a dropped subscriber has yielded what it had.
        """
        if self._overflowed:
            raise SubscriberOverflow(
                f"subscriber fell behind ({self._capacity} events buffered); "
                f"resume with since={self.last_offset}",
                last_offset=self.last_offset,
            )
        if self._closed:
            self._done = True
            return
        wakeup = self._wakeup = anyio.Event()
        await wakeup.wait()

    def _take_buffered(self) -> JobEvent | None:
        """The oldest buffered event, or None when replay already yielded it."""
        event = self._buffer.popleft()
        offset = event.offset
        if offset <= self.last_offset:
            return None
        self.last_offset = offset
        return event

    def _caught_up(self) -> bool:
        live_from = self._live_from
        return live_from is not None and live_from <= self.last_offset + 1

    def _reset(self, first_retained: int) -> StreamReset:
        reset = StreamReset(
            id=str(first_retained - 1),
            source=self._source,
            subject=self.job_id or "*",
            time=datetime.now(UTC),
            data=ResetData(requested_since=self.last_offset, first_retained=first_retained),
        )
        self.last_offset = first_retained - 1
        return reset
