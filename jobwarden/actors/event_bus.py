"""The event bus: numbers every job event, delivers committed events in offset order, fans out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from jobwarden.actors.states import JobState
from jobwarden.actors.subscription import Subscription
from jobwarden.records import (
    EVENT_TYPE_PREFIX,
    EventData,
    JobEvent,
    JobRecord,
)
from jobwarden.store.base import JobStore

DEFAULT_SUBSCRIBER_BUFFER = 10_000


class EventBus:
    """Assigns the global offsets and hands each committed event to every matching subscriber.

    Events are built (and numbered) before they are written, and delivered only after the store
    committed them. Commits may finish out of order, so delivery waits for any earlier offset:
    subscribers always see offsets in increasing order. Publishing never blocks.
    """

    def __init__(
        self, store: JobStore, *, source: str, subscriber_buffer: int = DEFAULT_SUBSCRIBER_BUFFER
    ) -> None:
        if subscriber_buffer < 1:
            raise ValueError("subscriber_buffer must be >= 1")
        self._store = store
        self._source = source
        self._buffer = subscriber_buffer
        self._next = 1
        self._deliver_next = 1
        self._held: dict[int, JobEvent | None] = {}
        self._subscribers: tuple[Subscription, ...] = ()
        self._closed = False

    async def start(self) -> None:
        """Continue numbering after the newest event the store holds."""
        bounds = await self._store.event_bounds()
        self._next = self._deliver_next = bounds.last + 1

    def event(
        self,
        record: JobRecord,
        kind: str,
        *,
        message: str | None = None,
        at: datetime | None = None,
    ) -> JobEvent:
        """A new, numbered event of type ``jobwarden.job.<kind>`` describing ``record``.

        ``at`` is the event's time when the change already has a timestamp (default: now).
        """
        offset = self._next
        self._next = offset + 1
        job_id = record.id
        # Positional, in the order of the fields (named in the comments): a third less work than
        # keywords, for three events per job.
        return JobEvent(
            str(offset),  # id
            self._source,  # source
            EVENT_TYPE_PREFIX + kind,  # type
            job_id,  # subject
            at or datetime.now(UTC),  # time
            EventData(
                job_id,  # job_id
                record.tool,  # tool
                record.state,  # state
                record.attempt,  # attempt
                record.progress,  # progress
                message,  # message
                record.result,  # result
                record.error,  # error
                record.owner,  # owner
            ),  # data
        )

    def deliver(self, event: JobEvent) -> None:
        """Fan out a committed event, after every earlier one."""
        offset = int(event.id)  # ``event.offset`` without the property's call: once per event
        if offset == self._deliver_next and not self._held:
            # The usual case, each event committed in turn: nothing is held back to follow it.
            for sub in self._subscribers:
                sub.offer(event)
            self._deliver_next = offset + 1
            return
        self._settle(offset, event)

    def abandon(self, event: JobEvent) -> None:
        """The event was never committed: let later ones through without it."""
        self._settle(int(event.id), None)

    def _settle(self, offset: int, event: JobEvent | None) -> None:
        if offset != self._deliver_next:
            self._held[offset] = event
            return
        self._fan_out(offset, event)
        offset += 1
        held = self._held
        while held and offset in held:
            self._fan_out(offset, held.pop(offset))
            offset += 1
        self._deliver_next = offset

    def publish(self, event: JobEvent) -> None:
        """Fan out an event a cluster node read from the shared log (already in offset order)."""
        for sub in self._subscribers:
            sub.offer(event)

    def _fan_out(self, offset: int, event: JobEvent | None) -> None:
        if event is None:
            # Never committed: no subscriber is to take the missing offset for a purged one.
            for sub in self._subscribers:
                sub.skip(offset)
            return
        for sub in self._subscribers:
            sub.offer(event)

    @property
    def subscriber_count(self) -> int:
        """How many subscribers are attached."""
        return len(self._subscribers)

    @asynccontextmanager
    async def subscribe(
        self,
        *,
        job_id: str | None = None,
        tool: str | None = None,
        since: int | None = None,
        owner: str | None = None,
        state: JobState | None = None,
        buffer: int | None = None,
        ends_after_replay: bool = False,
    ) -> AsyncIterator[Subscription]:
        """Events after ``since`` (None: only new ones), then live ones, filtered.

        A ``since`` past the newest event (offsets of another store, a client's typo) means from
        now on: taken as it is, every event up to it would be dropped as already seen, a job's
        terminal one too, and its stream would never end. The newest event is the newest stored
        or delivered (a purge may have emptied the store), never one numbered but still being
        committed: that one reaches this subscriber live, after its commit.
        """
        newest = (await self._store.event_bounds()).last
        since = newest if since is None else min(since, max(newest, self._deliver_next - 1))
        sub = Subscription(
            self._store,
            source=self._source,
            since=since,
            capacity=self._buffer if buffer is None else buffer,
            job_id=job_id,
            tool=tool,
            owner=owner,
            state=state,
            ends_after_replay=ends_after_replay,
            on_drop=self._detach,
        )
        if self._closed:
            sub.close()  # nothing more will come: it replays what is stored, then ends
        else:
            self._subscribers = (*self._subscribers, sub)
        try:
            yield sub
        finally:
            self._detach(sub)

    def _detach(self, sub: Subscription) -> None:
        # A fresh tuple, so a fan-out loop in progress keeps iterating the one it started with.
        self._subscribers = tuple(s for s in self._subscribers if s is not sub)

    def close(self) -> None:
        """End every subscription (after each drains what it holds)."""
        self._closed = True
        subscribers, self._subscribers = self._subscribers, ()
        for sub in subscribers:
            sub.close()
