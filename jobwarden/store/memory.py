"""The in-memory store, the library's default: fast, bounded history, gone with the process."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator
from datetime import datetime

from jobwarden.actors.states import JobState
from jobwarden.errors import StoreError
from jobwarden.records import JobEvent, JobRecord, check_storable
from jobwarden.store.base import MAX_PAGE, EventBounds, JobPage, JobQuery, check_id_cursor
from jobwarden.store.memory_finished import FinishedJobs
from jobwarden.store.memory_index import JobIndex

DEFAULT_RETAIN_EVENTS = 10_000


class MemoryStore:
    """Records in a dict keyed by id; ids sort by creation, so sorted id lists give the order
    (``memory_index`` for listings, ``memory_finished`` for retention)."""

    durable = False

    def __init__(self, *, retain_events: int = DEFAULT_RETAIN_EVENTS) -> None:
        if retain_events < 1:
            raise ValueError("retain_events must be >= 1")
        self._records: dict[str, JobRecord] = {}
        self._index = JobIndex(self._records)
        self._keys: dict[tuple[str | None, str], str] = {}
        self._events: deque[JobEvent] = deque(maxlen=retain_events)
        self._finished = FinishedJobs()

    async def open(self) -> None:
        """Nothing to prepare."""

    async def close(self) -> None:
        """Nothing to release."""

    async def put(self, record: JobRecord, event: JobEvent) -> JobRecord:
        """Insert ``record`` unless its owner already used its idempotency key.

        Raises one of ``records.UNSTORABLE``, as the stores that write JSON do, when no JSON can
        hold the caller's values: an HTTP read of the job could not answer.
        """
        check_storable(record)
        if record.idempotency_key is not None:
            key = (record.owner, record.idempotency_key)
            existing = self._keys.get(key)
            if existing is not None and existing in self._records:
                return self._records[existing]
            self._keys[key] = record.id
        self._keep(record, self._records.get(record.id))
        self._events.append(event)
        return record

    async def get(self, job_id: str) -> JobRecord | None:
        """The record, or None."""
        return self._records.get(job_id)

    async def transition(self, record: JobRecord, event: JobEvent) -> None:
        """Replace the record and log the event; ``StoreError`` (and nothing written) when the
        store does not hold the job."""
        before = self._records.get(record.id)
        if before is None:
            raise StoreError(f"job {record.id} is not in the store")
        self._keep(record, before)
        self._events.append(event)

    def _keep(self, record: JobRecord, before: JobRecord | None) -> None:
        """Store ``record`` in place of ``before`` (None: a new job); the lists learn of a new job
        and of a changed state. ``terminal`` is a plain attribute (``in TERMINAL_STATES`` would
        hash the enum member in Python), and the listing index hears of a change only once a
        listing built lists by state."""
        self._records[record.id] = record
        terminal = record.state.terminal
        if before is None:
            index = self._index
            index.all.add(record.id)
            if index.built:
                index.added(record)
            if terminal:
                self._finished.add(record)
        elif before.state is not record.state:
            if self._index.moving:
                self._index.moved(before, record)
            if terminal and not before.state.terminal:
                self._finished.add(record)

    async def list_jobs(self, query: JobQuery) -> JobPage:
        """Newest first, filtered, ``limit`` rows after the cursor (a job id, or
        ``InvalidRequest``)."""
        check_id_cursor(query)
        limit = max(1, min(query.limit, MAX_PAGE))
        rows: list[JobRecord] = []
        ids = self._index.shortest(query)
        if ids is None:
            return JobPage(jobs=rows, next_cursor=None)
        records = self._records
        for job_id in ids.newest_first(query.cursor):
            record = records.get(job_id)
            if record is not None and _matches(record, query):
                if len(rows) == limit:
                    return JobPage(jobs=rows, next_cursor=rows[-1].id)
                rows.append(record)
        return JobPage(jobs=rows, next_cursor=None)

    async def unfinished(self) -> list[JobRecord]:
        """Queued and running jobs, oldest first."""
        stored = (self._records.get(i) for i in self._index.all.entries)
        live = (JobState.QUEUED, JobState.RUNNING)
        return [r for r in stored if r is not None and r.state in live]

    async def read_events(
        self, after: int, limit: int, *, job_id: str | None = None, tool: str | None = None
    ) -> list[JobEvent]:
        """Retained events after ``after``; offsets are contiguous here, so skip by arithmetic."""
        selected: Iterator[JobEvent] = itertools.islice(
            self._events, self._index_after(after), None
        )
        if job_id is not None:
            selected = (e for e in selected if e.subject == job_id)
        if tool is not None:
            selected = (e for e in selected if e.data.tool == tool)
        return list(itertools.islice(selected, limit))

    async def event_bounds(self) -> EventBounds:
        """First and last retained offsets."""
        if not self._events:
            return EventBounds(first=1, last=0)
        return EventBounds(first=self._events[0].offset, last=self._events[-1].offset)

    async def purge(
        self,
        *,
        finished_before: datetime | None,
        keep_finished: int | None,
        limit: int | None = None,
    ) -> int:
        """Drop up to ``limit`` finished jobs, by end time and/or beyond the newest N."""
        records = self._records
        doomed = self._finished.select(
            records, finished_before=finished_before, keep_finished=keep_finished, limit=limit
        )
        gone = [records.pop(job_id) for job_id in doomed]
        for record in gone:
            if record.idempotency_key is not None:
                self._keys.pop((record.owner, record.idempotency_key), None)
            self._index.purged(record)
        self._finished.removed(gone, records.__contains__)
        return len(doomed)

    def _index_after(self, after: int) -> int:
        """Index of the first retained event with offset > ``after`` (offsets may have gaps)."""
        events = self._events
        low, high = 0, len(events)
        while low < high:
            middle = (low + high) // 2
            if events[middle].offset <= after:
                low = middle + 1
            else:
                high = middle
        return low


def _matches(record: JobRecord, query: JobQuery) -> bool:
    return (
        (query.state is None or record.state == query.state)
        and (query.tool is None or record.tool == query.tool)
        and (query.plugin is None or record.plugin == query.plugin)
        and (query.owner is None or record.owner == query.owner)
    )
