"""The SQLite store's write ops, encoded on the caller's side: each becomes a plain tuple
(``wire``) that marshal can carry to the writer process, and takes back its result there.

The SQL that applies them lives in one place, the writer process's own module
(``sqlite_child``); ``apply_batch`` runs that same code in this process, on a connection of the
caller's (benchmarks, tests, tools that fill a file without an event loop).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any, NamedTuple

import msgspec

from jobwarden.actors.states import TERMINAL_STATES
from jobwarden.errors import StoreError
from jobwarden.records import JobEvent, JobRecord
from jobwarden.store import sqlite_child
from jobwarden.store.sqlite_child import PURGE, PUT, TRANSITION, UNKNOWN_JOB

_encode = msgspec.json.Encoder().encode
_TERMINAL = tuple(sorted(state.value for state in TERMINAL_STATES))


class Put:
    """A new job and its first event; ``existing`` is set when the owner's key was taken.

    ``wire`` is one flat tuple (see ``sqlite_child``): the job's row and the event's row are
    slices of it, one object per write for the cyclic gc and marshal rather than three.
    """

    __slots__ = ("existing", "wire")
    series = "put"  # its latency's histogram in ``StoreTimings``

    def __init__(self, record: JobRecord, event: JobEvent) -> None:
        key = record.idempotency_key
        state = record.state
        ends = state.terminal
        idempotency = None if key is None else _encode([record.owner, key]).decode()
        finished = record.finished_at
        offset = int(event.id)  # ``event.offset`` without the property's call
        self.existing: bytes | None = None
        self.wire = (
            PUT,
            ends,
            idempotency,
            offset,  # the job's row: seq ...
            record.id,
            record.tool,
            record.plugin,
            state._value_,  # ``value`` is a Python-level property of Enum members on 3.11
            record.owner,
            idempotency,
            _encode(record),
            finished.timestamp() if ends and finished is not None else None,
            offset,  # ... the event's row
            event.subject,
            event.data.tool,
            _encode(event),
        )

    @property
    def job_row(self) -> tuple[Any, ...]:
        """The job's row: ``(seq, id, tool, plugin, state, owner, idempotency, record,
        finished_at)``."""
        return self.wire[3:12]

    @property
    def event_row(self) -> tuple[Any, ...]:
        """The event's row: ``(offset, job_id, tool, body)``."""
        return self.wire[12:16]

    def answer(self, existing: object) -> str | None:
        """The writer's result: the record already stored under the owner's key."""
        assert isinstance(existing, bytes)
        self.existing = existing
        return None


class Transition:
    """A job's new record and the event describing the change, as one flat ``wire`` tuple."""

    __slots__ = ("wire",)
    series = "transition"

    def __init__(self, record: JobRecord, event: JobEvent) -> None:
        # A job reaches a terminal state once, so each such write adds one finished job.
        state = record.state
        ends = state.terminal
        finished = record.finished_at
        self.wire = (
            TRANSITION,
            ends,
            state._value_,  # the job's new row: state ...
            _encode(record),
            finished.timestamp() if ends and finished is not None else None,
            record.id,
            int(event.id),  # ... the event's row
            event.subject,
            event.data.tool,
            _encode(event),
        )

    def answer(self, value: object) -> str | None:
        """The writer's only result for a transition, ``UNKNOWN_JOB``: why it was refused."""
        assert value == UNKNOWN_JOB
        return f"job {self.wire[5]} is not in the store"


class Purge:
    """Delete up to ``limit`` finished jobs: the ``excess`` oldest, and those finished before."""

    __slots__ = ("excess", "finished_before", "limit", "removed", "wire")
    series = "purge"

    def __init__(self, finished_before: datetime | None, excess: int, limit: int | None) -> None:
        self.finished_before = finished_before
        self.excess = excess
        self.limit = limit
        self.removed = 0
        before = None if finished_before is None else finished_before.timestamp()
        self.wire = (PURGE, before, excess, limit, _TERMINAL)

    def answer(self, removed: object) -> str | None:
        """The writer's result: how many jobs the purge deleted, or why it failed (undone, the
        transaction's other writes committed)."""
        if isinstance(removed, str):
            return removed
        assert isinstance(removed, int)
        self.removed = removed
        return None


WriteOp = Put | Transition | Purge


class Applied(NamedTuple):
    """What a committed batch changed: its lowest and highest event offset (None without
    events), and by how much the number of finished jobs moved."""

    first: int | None
    last: int | None
    finished: int


def apply_batch(db: sqlite3.Connection, ops: list[WriteOp]) -> Applied:
    """Apply ``ops`` in one transaction on ``db`` (in this process) and say what changed.

    Raises ``StoreError`` after the commit when the file refused some of them (a transition of
    a job it does not hold): those wrote nothing, the others are committed.
    """
    for op in ops:
        if type(op) is Put:
            op.existing = None
    applied = sqlite_child.apply(db, [op.wire for op in ops])
    refused = [ops[index].answer(value) for index, value in applied.results]
    reasons = [reason for reason in refused if reason is not None]
    if reasons:
        raise StoreError(f"the file refused {len(reasons)} write(s): {'; '.join(reasons)}")
    return Applied(applied.first, applied.last, applied.finished)
