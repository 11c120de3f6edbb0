"""The SQLite store's writes: each op is encoded on the caller's side, applied in a batch by the
writer thread, and the batch commits as one transaction (or rolls back as one).

Rows go in as multi-row statements, a power-of-two slice of rows each, rather than one step per
row: Python's sqlite3 releases and retakes the GIL around every step, and a writer thread that
must retake it hundreds of times per batch while the event loop is busy waits for it each time.
A job changed twice in one batch (running, then finished) is updated once, to its last record;
every event is kept.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import cache

import msgspec

from jobwarden.actors.states import TERMINAL_STATES
from jobwarden.records import JobEvent, JobRecord

_encode = msgspec.json.Encoder().encode

_INSERT_JOBS = (
    "INSERT INTO jobs (seq, id, tool, plugin, state, owner, idempotency, record, finished_at)"
    " VALUES "
)
_JOB_VALUES = "(?, ?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_KEYED_JOB = (
    _INSERT_JOBS
    + _JOB_VALUES
    + " ON CONFLICT (idempotency) WHERE idempotency IS NOT NULL DO NOTHING"
)
_UPDATE_JOBS = (
    "UPDATE jobs SET state = v.column1, record = v.column2, finished_at = v.column3"
    " FROM (VALUES {}) AS v WHERE jobs.id = v.column4"
)
_UPDATE_VALUES = "(?, ?, ?, ?)"
_INSERT_EVENTS = "INSERT INTO events (offset, job_id, tool, body) VALUES "
_EVENT_VALUES = "(?, ?, ?, ?)"
ROWS_PER_STATEMENT = 64  # a power of two; 64 job rows are 576 parameters

# Retention's reads, each one index range (tests check the plans). Only finished jobs have a
# finished_at, so the time query needs no state condition (which would make SQLite pick
# jobs_state and sort).
OLDEST_IN_STATE = "SELECT id, seq FROM jobs WHERE state = ? ORDER BY id LIMIT ?"
ENDED_BEFORE = "SELECT seq FROM jobs WHERE finished_at < ? ORDER BY finished_at LIMIT ?"

EventRow = tuple[int, str, str, bytes]


class Put:
    """A new job and its first event; ``existing`` is set when the owner's key was taken."""

    __slots__ = ("event_row", "existing", "idempotency", "job_row")

    def __init__(self, record: JobRecord, event: JobEvent) -> None:
        key = record.idempotency_key
        self.idempotency = None if key is None else _encode([record.owner, key]).decode()
        self.job_row = (
            event.offset,
            record.id,
            record.tool,
            record.plugin,
            record.state.value,
            record.owner,
            self.idempotency,
            _encode(record),
            _finished_at(record),
        )
        self.event_row = _event_row(event)
        self.existing: bytes | None = None


class Transition:
    """A job's new record and the event describing the change."""

    __slots__ = ("event_row", "job_row")

    def __init__(self, record: JobRecord, event: JobEvent) -> None:
        self.job_row = (record.state.value, _encode(record), _finished_at(record), record.id)
        self.event_row = _event_row(event)


class Purge:
    """Delete up to ``limit`` finished jobs: the ``excess`` oldest, and those finished before."""

    __slots__ = ("excess", "finished_before", "limit", "removed")

    def __init__(self, finished_before: datetime | None, excess: int, limit: int | None) -> None:
        self.finished_before = finished_before
        self.excess = excess
        self.limit = limit
        self.removed = 0


WriteOp = Put | Transition | Purge


def apply_batch(db: sqlite3.Connection, ops: list[WriteOp]) -> tuple[int | None, int | None]:
    """Apply ``ops`` in one transaction; return the lowest and highest event offset written."""
    events: list[EventRow] = []
    plain: list[tuple[object, ...]] = []
    updates: list[tuple[object, ...]] = []
    purges: list[Purge] = []
    db.execute("BEGIN IMMEDIATE")
    try:
        for op in ops:
            if type(op) is Put:
                op.existing = None
                if op.idempotency is None:
                    plain.append(op.job_row)
                    events.append(op.event_row)
                elif db.execute(_INSERT_KEYED_JOB, op.job_row).rowcount == 1:
                    events.append(op.event_row)
                else:
                    op.existing = db.execute(
                        "SELECT record FROM jobs WHERE idempotency = ?", (op.idempotency,)
                    ).fetchone()[0]
            elif type(op) is Transition:
                updates.append(op.job_row)
                events.append(op.event_row)
            elif type(op) is Purge:
                purges.append(op)
        _in_slices(db, _insert_jobs_sql, plain)
        # The last record of each job: UPDATE ... FROM takes an arbitrary one of duplicate rows.
        latest = list({row[3]: row for row in updates}.values())
        _in_slices(db, _update_sql, latest)
        _in_slices(db, _insert_events_sql, events)
        for purge in purges:
            purge.removed = _purge(db, purge)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    if not events:
        return None, None
    written = [row[0] for row in events]
    return min(written), max(written)


@cache
def _insert_jobs_sql(rows: int) -> str:
    return _INSERT_JOBS + ", ".join([_JOB_VALUES] * rows)


@cache
def _insert_events_sql(rows: int) -> str:
    return _INSERT_EVENTS + ", ".join([_EVENT_VALUES] * rows)


@cache
def _update_sql(rows: int) -> str:
    return _UPDATE_JOBS.format(", ".join([_UPDATE_VALUES] * rows))


def _in_slices(
    db: sqlite3.Connection, sql: Callable[[int], str], rows: Sequence[tuple[object, ...]]
) -> None:
    """Run ``sql(n)`` (a statement taking n rows) over ``rows``, in power-of-two slices."""
    start, left, size = 0, len(rows), ROWS_PER_STATEMENT
    while left:
        while size > left:
            size //= 2
        db.execute(sql(size), [value for row in rows[start : start + size] for value in row])
        start += size
        left -= size


def _purge(db: sqlite3.Connection, op: Purge) -> int:
    cap = -1 if op.limit is None else op.limit
    doomed: set[int] = set()
    if op.excess > 0:
        count = op.excess if op.limit is None else min(op.excess, op.limit)
        oldest: list[tuple[str, int]] = []
        for state in TERMINAL_STATES:
            oldest += db.execute(OLDEST_IN_STATE, (state, count)).fetchall()
        doomed.update(seq for _, seq in sorted(oldest)[:count])
    if op.finished_before is not None:
        doomed.update(
            row[0] for row in db.execute(ENDED_BEFORE, (op.finished_before.timestamp(), cap))
        )
    chosen = sorted(doomed) if op.limit is None else sorted(doomed)[: op.limit]
    db.executemany("DELETE FROM jobs WHERE seq = ?", [(seq,) for seq in chosen])
    # A job's rowid is its first event's offset, so every event before the oldest job left
    # belongs to a deleted job: the log is trimmed to there and no kept job loses history.
    oldest = db.execute("SELECT min(seq) FROM jobs").fetchone()[0]
    if oldest is None:
        db.execute("DELETE FROM events")
    else:
        db.execute("DELETE FROM events WHERE offset < ?", (oldest,))
    return len(chosen)


def _finished_at(record: JobRecord) -> float | None:
    finished = record.finished_at
    return finished.timestamp() if finished is not None and record.state.terminal else None


def _event_row(event: JobEvent) -> EventRow:
    return (event.offset, event.subject, event.data.tool, _encode(event))
