"""What a store shared by several supervisor nodes adds to ``JobStore``: a work queue with leases,
writes that are compare-and-set, a log every node follows, and requests between nodes.

A store offers it as its ``shared`` attribute (the Redis store does; memory and SQLite have none).
A supervisor given such a store becomes one node of a cluster: it takes jobs from the queue instead
of running what it admitted itself, and delivers events to its subscribers from the followed log,
so every node sees every node's events in offset order.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

import msgspec

from jobwarden.records import JobEvent, JobRecord


class Verdict(enum.Enum):
    """What a compare-and-set write did."""

    DONE = "done"  # written (or found written already: a retried write)
    STALE = "stale"  # the stored record moved on without this node: nothing written
    BUSY = "busy"  # the job would start, but its tool is at its cap on the cluster


class Delivery(msgspec.Struct, frozen=True):
    """A job handed to this node by the queue: ``entry`` is its queue entry (a lease held until
    settled), ``deliveries`` how many times it was handed to a node so far, ``record`` None when
    the job is gone (purged)."""

    entry: str
    job_id: str
    record: JobRecord | None
    deliveries: int


class Followed(msgspec.Struct, frozen=True):
    """What the followed log brought: events in offset order, jobs someone asked to cancel, and
    the offset of the last entry read (None when it brought no event), which is past the last
    event when entries after it could not be read and were skipped."""

    events: list[JobEvent]
    cancels: list[str]
    through: int | None = None


class Overdue(msgspec.Struct, frozen=True):
    """Queued jobs whose time to start ran out, and when the next one's runs out (None: no other
    queued job has a limit)."""

    records: list[JobRecord]
    next: datetime | None


class SharedStore(Protocol):
    """The cluster side of a store; every call may raise ``StoreError``."""

    node: str
    lease_s: float
    max_deliveries: int

    async def enqueue(
        self,
        record: JobRecord,
        event: JobEvent,
        *,
        max_queued: int,
        start_by: datetime | None = None,
    ) -> JobRecord:
        """``put`` plus an entry in the work queue (when the record is queued); ``start_by``:
        when the job runs out of time to start (its tool's queue or total timeout), so that
        ``overdue`` finds it then, whether or not a node took it.

        Raises ``Overloaded`` when ``max_queued`` entries wait already.
        """

    async def overdue(self, now: datetime, count: int, *, skip: int = 0) -> Overdue:
        """Up to ``count`` queued jobs whose ``start_by`` is not after ``now``, past the ``skip``
        that come first (earliest first)."""

    async def change(
        self,
        prior: JobRecord,
        record: JobRecord,
        event: JobEvent,
        *,
        cap: int | None = None,
        dead_letter: int | None = None,
        start_by: datetime | None = None,
    ) -> Verdict:
        """Replace the job's record and append the event, if the stored record still has the
        state and attempt of ``prior``; ``cap``: the tool's concurrency cap, when this starts it;
        ``dead_letter``: the job is given up on after that many deliveries, and the same atomic
        write notes it for operators (a note is never lost, nor made for a job not failed);
        ``start_by``: when a job this queues again runs out of time to start (see ``enqueue``).

        Rides out a lost connection for a while (the write is idempotent) before failing.
        """

    async def take(self, count: int, *, block_s: float) -> list[Delivery]:
        """Up to ``count`` jobs from the queue, waiting up to ``block_s`` for the first."""

    async def reclaim(self, count: int) -> list[Delivery]:
        """Up to ``count`` jobs whose lease expired, now leased to this node."""

    async def retake(self) -> list[Delivery]:
        """Every job leased to this node now, with its stored record. A take or reclaim that
        failed may still have leased jobs to this node (only its reply was lost): this finds them
        without waiting for their leases to run out."""

    async def renew(self, entries: Sequence[str]) -> list[str]:
        """Renew this node's leases on ``entries``; returns those it no longer holds."""

    async def settle(self, entries: Sequence[str]) -> None:
        """The jobs of ``entries`` need no more work: drop them from the queue."""

    async def hand_back(self, entries: Sequence[tuple[str, str]]) -> None:
        """(entry, job id) pairs this node took but will not run: queue them again, at once."""

    async def retire(self) -> None:
        """At a clean stop, after the last hand-back and settle: leave the work queue's consumer
        group, unless this node still holds a lease (its job must stay to be taken over)."""

    async def request_cancel(self, job_id: str) -> None:
        """Ask every node to cancel the job if it runs it."""

    async def follow(self, after: int, *, block_s: float) -> Followed:
        """Events after offset ``after`` and cancel requests not yet seen, waiting up to
        ``block_s`` for something to arrive."""
