"""The store seam: what every job store (memory, sqlite, redis) provides, all of it async."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Protocol, runtime_checkable

import msgspec

from jobwarden.actors.states import JobState
from jobwarden.errors import InvalidRequest, StoreError
from jobwarden.ids import JOB_ID
from jobwarden.records import JobEvent, JobRecord

MAX_PAGE = 500


class JobQuery(msgspec.Struct, frozen=True):
    """A listing request: filters, newest first, ``limit`` rows after ``cursor``."""

    state: JobState | None = None
    tool: str | None = None
    plugin: str | None = None
    owner: str | None = None
    limit: int = 50
    cursor: str | None = None


def unknown_cursor(cursor: str) -> InvalidRequest:
    """The refusal of a listing cursor that no store of this server gives out (a 400)."""
    return InvalidRequest(f"cursor {cursor[:40]!r} is not a next_cursor this server gave out")


def check_id_cursor(query: JobQuery) -> None:
    """``InvalidRequest`` unless the query's cursor, if any, is a job id: the cursor the memory
    and Redis stores give out (the last job's id)."""
    if query.cursor is not None and not JOB_ID.fullmatch(query.cursor):
        raise unknown_cursor(query.cursor)


class JobPage(msgspec.Struct, frozen=True):
    """One page of a listing; ``next_cursor`` is None on the last page."""

    jobs: list[JobRecord]
    next_cursor: str | None


class EventBounds(msgspec.Struct, frozen=True):
    """The retained event history: offsets ``first..last``; ``first > last`` when it is empty."""

    first: int
    last: int


@runtime_checkable
class JobStore(Protocol):
    """Job records and their event log.

    Writes are atomic with respect to cancellation: once started they complete, so a job actor's
    state never diverges from what was stored. ``durable`` says whether records outlive the process.
    """

    durable: bool

    async def open(self) -> None:
        """Prepare the store for use (create schema, load offsets)."""

    async def close(self) -> None:
        """Release resources; pending writes are flushed first."""

    async def put(self, record: JobRecord, event: JobEvent) -> JobRecord:
        """Insert a new job with its first event and return it.

        When the record carries an idempotency key already used by the same owner, nothing is
        written and the existing record is returned instead. Raises one of
        ``records.UNSTORABLE``, and writes nothing, when no JSON can hold the input, owner or key
        (``records.check_storable``): the supervisor refuses that job as ``InvalidInput``.
        """

    async def get(self, job_id: str) -> JobRecord | None:
        """The record with that id, or None."""

    async def transition(self, record: JobRecord, event: JobEvent) -> None:
        """Replace a job's record and append the event describing the change, atomically.

        Raises ``StoreError``, writing neither, when the store does not hold the job.
        """

    async def list_jobs(self, query: JobQuery) -> JobPage:
        """Records matching the query, newest first."""

    async def unfinished(self) -> list[JobRecord]:
        """Every job in state queued or running, oldest first (for recovery at start)."""

    async def read_events(
        self, after: int, limit: int, *, job_id: str | None = None, tool: str | None = None
    ) -> list[JobEvent]:
        """Up to ``limit`` retained events with offset > ``after``, in offset order."""

    async def event_bounds(self) -> EventBounds:
        """The offsets of the oldest and newest retained events."""

    async def purge(
        self,
        *,
        finished_before: datetime | None,
        keep_finished: int | None,
        limit: int | None = None,
    ) -> int:
        """Delete finished jobs that ended before a time and/or beyond the newest N (in the order
        ``list_jobs`` gives: by id, or for SQLite by when they were stored, the same for the
        Supervisor's jobs).

        At most ``limit`` jobs go per call, so a caller can purge in small steps; returns how many
        went. The retained event history may start later afterwards, never inside a kept job's.
        """


@runtime_checkable
class WriteBehind(Protocol):
    """A store that can also queue a transition and report its commit later (SQLite does).

    A caller that need not wait for the commit (a ToolRunner finishing a job) queues it with
    ``transition_soon`` and moves on; ``committed`` runs on the event loop once it is committed
    (None) or refused (the ``StoreError``), so what depends on the write being durable (the
    event reaching subscribers, the job's waiters seeing it end) happens there. ``put_then``
    waits for its commit like ``put``, and its ``committed`` runs as the commit is reported,
    before the waiting task is resumed: a caller cancelled meanwhile still learns whether the
    job was stored (the supervisor then runs it).
    """

    def put_then(
        self, record: JobRecord, event: JobEvent, committed: Callable[[StoreError | None], None]
    ) -> Awaitable[JobRecord | None]:
        """``put``, calling ``committed`` first: with None once this job is stored, with the
        ``StoreError`` if it was refused, not at all when its idempotency key names an earlier
        job. Returns None, or that earlier job."""

    def transition_soon(
        self, record: JobRecord, event: JobEvent, committed: Callable[[StoreError | None], None]
    ) -> None:
        """Queue ``transition(record, event)``; raises ``StoreError`` if the store is closed."""


def write_behind(store: JobStore) -> WriteBehind | None:
    """``store`` if it writes behind (``WriteBehind``), else None (the supervisor looks it up
    once)."""
    return store if isinstance(store, WriteBehind) else None


@runtime_checkable
class FailsForGood(Protocol):
    """A store that can fail for good while open (SQLite: its writer process ended): from then
    on no write can succeed, and the supervisor stops at once with the reason rather than wait
    for a job's write to meet it (with no job running, none would)."""

    async def wait_failed(self) -> StoreError:
        """Return, once the store has failed for good, the ``StoreError`` every write now gets;
        wait forever while it works."""


def fails_for_good(store: JobStore) -> FailsForGood | None:
    """``store`` if it can fail for good (``FailsForGood``), else None."""
    return store if isinstance(store, FailsForGood) else None
