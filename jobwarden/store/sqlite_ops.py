"""The SQLite store's writes: each op is encoded on the caller's side, applied in a batch by the
writer thread, and the batch commits as one transaction (or rolls back as one).

Rows go in as multi-row statements of ``ROWS_PER_STATEMENT`` rows each (the last one padded with
rows of NULLs, which the statement skips), rather than one step per row: Python's sqlite3
releases and retakes the GIL around every step, and a writer thread that must retake it hundreds
of times per batch while the event loop is busy waits for it each time. One fixed statement per
table also stays in the connection's statement cache. A job changed twice in one batch (running,
then finished) is updated once, to its last record; every event is kept.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

import msgspec

from jobwarden.actors.states import TERMINAL_STATES
from jobwarden.records import JobEvent, JobRecord

_encode = msgspec.json.Encoder().encode

ROWS_PER_STATEMENT = 64  # 64 job rows are 576 parameters: under the oldest SQLite's 999
_JOB_COLUMNS = "seq, id, tool, plugin, state, owner, idempotency, record, finished_at"
_INSERT_KEYED_JOB = (
    f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (idempotency) WHERE idempotency IS NOT NULL DO NOTHING"
)


def _rows(width: int) -> str:
    row = f"({', '.join(['?'] * width)})"
    return ", ".join([row] * ROWS_PER_STATEMENT)


# Padding rows are all NULL: an id (column2 of a job row, column4 of an update) is never NULL.
_INSERT_JOBS = (
    f"INSERT INTO jobs ({_JOB_COLUMNS}) SELECT * FROM (VALUES {_rows(9)}) WHERE column2 IS NOT NULL"
)
_UPDATE_JOBS = (
    "UPDATE jobs SET state = v.column1, record = v.column2, finished_at = v.column3"
    f" FROM (VALUES {_rows(4)}) AS v WHERE jobs.id = v.column4"
)
_INSERT_EVENTS = (
    "INSERT INTO events (offset, job_id, tool, body)"
    f" SELECT * FROM (VALUES {_rows(4)}) WHERE column1 IS NOT NULL"
)

# Retention's reads, each one index range (tests check the plans). Only finished jobs have a
# finished_at, so the time query needs no state condition (which would make SQLite pick
# jobs_state and sort).
OLDEST_IN_STATE = "SELECT seq FROM jobs WHERE state = ? ORDER BY seq LIMIT ?"
ENDED_BEFORE = "SELECT seq FROM jobs WHERE finished_at < ? ORDER BY finished_at LIMIT ?"

EventRow = tuple[int, str, str, bytes]


class Put:
    """A new job and its first event; ``existing`` is set when the owner's key was taken."""

    __slots__ = ("ends", "event_row", "existing", "idempotency", "job_row")

    def __init__(self, record: JobRecord, event: JobEvent) -> None:
        key = record.idempotency_key
        state = record.state
        self.ends = ends = state.terminal
        self.idempotency = None if key is None else _encode([record.owner, key]).decode()
        finished = record.finished_at
        offset = int(event.id)  # ``event.offset`` without the property's call
        self.job_row = (
            offset,
            record.id,
            record.tool,
            record.plugin,
            state._value_,  # ``value`` is a Python-level property of Enum members on 3.11
            record.owner,
            self.idempotency,
            _encode(record),
            finished.timestamp() if ends and finished is not None else None,
        )
        self.event_row = (offset, event.subject, event.data.tool, _encode(event))
        self.existing: bytes | None = None


class Transition:
    """A job's new record and the event describing the change."""

    __slots__ = ("ends", "event_row", "job_row")

    def __init__(self, record: JobRecord, event: JobEvent) -> None:
        # A job reaches a terminal state once, so each such write adds one finished job.
        state = record.state
        self.ends = ends = state.terminal
        finished = record.finished_at
        self.job_row = (
            state._value_,
            _encode(record),
            finished.timestamp() if ends and finished is not None else None,
            record.id,
        )
        self.event_row = (int(event.id), event.subject, event.data.tool, _encode(event))


class Purge:
    """Delete up to ``limit`` finished jobs: the ``excess`` oldest, and those finished before."""

    __slots__ = ("excess", "finished_before", "limit", "removed")

    def __init__(self, finished_before: datetime | None, excess: int, limit: int | None) -> None:
        self.finished_before = finished_before
        self.excess = excess
        self.limit = limit
        self.removed = 0


WriteOp = Put | Transition | Purge


class Applied(NamedTuple):
    """What a committed batch changed: its lowest and highest event offset (None without
    events), and by how much the number of finished jobs moved."""

    first: int | None
    last: int | None
    finished: int


def apply_batch(db: sqlite3.Connection, ops: list[WriteOp]) -> Applied:
    """Apply ``ops`` in one transaction and say what changed."""
    finished = 0
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
                    finished += op.ends
                elif db.execute(_INSERT_KEYED_JOB, op.job_row).rowcount == 1:
                    events.append(op.event_row)
                    finished += op.ends
                else:
                    op.existing = db.execute(
                        "SELECT record FROM jobs WHERE idempotency = ?", (op.idempotency,)
                    ).fetchone()[0]
            elif type(op) is Transition:
                updates.append(op.job_row)
                events.append(op.event_row)
                finished += op.ends
            elif type(op) is Purge:
                purges.append(op)
        _in_slices(db, _INSERT_JOBS, 9, plain)
        # The last record of each job: UPDATE ... FROM takes an arbitrary one of duplicate rows.
        _in_slices(db, _UPDATE_JOBS, 4, list({row[3]: row for row in updates}.values()))
        _in_slices(db, _INSERT_EVENTS, 4, events)
        for purge in purges:
            purge.removed = _purge(db, purge)
            finished -= purge.removed
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    if not events:
        return Applied(None, None, finished)
    written = [row[0] for row in events]
    return Applied(min(written), max(written), finished)


def _in_slices(
    db: sqlite3.Connection, sql: str, width: int, rows: Sequence[tuple[object, ...]]
) -> None:
    """Run ``sql`` (taking ``ROWS_PER_STATEMENT`` rows of ``width`` values) over ``rows``."""
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start : start + ROWS_PER_STATEMENT]
        params = [value for row in chunk for value in row]
        params += [None] * (width * (ROWS_PER_STATEMENT - len(chunk)))
        db.execute(sql, params)


def _purge(db: sqlite3.Connection, op: Purge) -> int:
    cap = -1 if op.limit is None else op.limit
    doomed: set[int] = set()
    if op.excess > 0:
        count = op.excess if op.limit is None else min(op.excess, op.limit)
        oldest: list[int] = []
        for state in TERMINAL_STATES:
            oldest += [row[0] for row in db.execute(OLDEST_IN_STATE, (state, count))]
        doomed.update(sorted(oldest)[:count])
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
