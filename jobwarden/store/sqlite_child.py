"""The SQLite store's writer process: every write SQL statement, and the child that runs them.

Standard library only, and no jobwarden import: the store starts this file by its path
(``python -I -S sqlite_child.py PATH SYNCHRONOUS MAX_BYTES LOCK_FD``), so the child starts in a
few milliseconds and holds nothing but the connection. The event loop's side is
``sqlite_process.WriterProcess``; in-process callers (benchmarks, tests) use ``apply`` through
``sqlite_ops.apply_batch``.

The child reads length-prefixed marshal frames (each a list of op tuples, see below) on its standard
input. After each wait it takes every complete frame already there and commits them all as one
transaction, then writes one reply (a marshal frame on its original standard output) for that
transaction: ``(frames, first, last, finished, purged, oldest, results, seconds, error)`` -- how
many frames it covered, the lowest and highest event offset written (None without events), how much
the number of finished jobs moved, whether it purged and the oldest event offset left then, each
op's result as ``(frame, index, value)`` (a keyed put's existing record, a purge's removed count,
``UNKNOWN_JOB`` for a transition of a job the file does not hold, a purge's error message (a str)
for one that failed alone: either writes nothing, and the others commit), how long the
transaction took, and the error message when it failed (then none of those frames is committed
and the other fields are empty). Its first reply, with ``frames`` 0, says it is
ready (or, with an error, why it could not open the file). Before each reply it checks that its
path still names the file it holds open: once the file was removed or replaced, what it commits
goes to a file no later start opens, so it acknowledges nothing more. It replies once more with
``frames`` 0 and why, instead of that transaction's reply, and exits: that transaction and every
later one are failed by the parent. On end of input it commits the complete
frames it has and exits, so a parent that dies leaves no orphan; it ignores SIGINT and SIGTERM (a
terminal's Ctrl-C or a service manager reaches the whole process group) and leaves the parent to
decide when the writes end. It also keeps the parent's ``flock`` descriptor open until it exits, so
no second process opens the file while it may still commit (a lock the file's removal makes
useless: the check above stops the writes then).

Op tuples, flat (one object each to build, marshal and read back): ``(PUT, ends, idempotency,
*job_row, *event_row)`` with the job's row ``(seq, id, tool, plugin, state, owner, idempotency,
record, finished_at)``; ``(TRANSITION, ends, *job_row, *event_row)`` with the job's row ``(state,
record, finished_at, id)``; the event's row is ``(offset, job_id, tool, body)``; and ``(PURGE,
finished_before, excess, limit, terminal_states)``. Rows go in as
multi-row statements of exactly as many rows as there are (up to ``ROWS_PER_STATEMENT``), one
statement per size kept in the connection's statement cache: Python's sqlite3 steps once per
statement rather than once per row. A job changed twice in one transaction (running, then
finished) is updated once, to its last record; every event is kept.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import marshal
import os
import select
import signal
import sqlite3
import struct
import sys
import time
from collections.abc import Sequence
from typing import Any

PUT, TRANSITION, PURGE = 0, 1, 2
UNKNOWN_JOB = "unknown job"  # a transition's result when its job is not in the file
ROWS_PER_STATEMENT = 64  # 64 job rows are 576 parameters: under the oldest SQLite's 999
# One statement per size and table, and a few more: none is ever prepared twice.
CACHED_STATEMENTS = 3 * ROWS_PER_STATEMENT + 32
HEADER = struct.Struct("<I")  # a frame's length, before its marshal bytes
READ_SIZE = 1 << 20

_JOB_COLUMNS = "seq, id, tool, plugin, state, owner, idempotency, record, finished_at"
INSERT_KEYED_JOB = (
    f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (idempotency) WHERE idempotency IS NOT NULL DO NOTHING"
)
KEYED_RECORD = "SELECT record FROM jobs WHERE idempotency = ?"
JOB_EXISTS = "SELECT 1 FROM jobs WHERE id = ?"
# OR ROLLBACK: a failing multi-row statement ends the whole transaction (``apply`` rolls back
# on any error anyway), so SQLite keeps no statement journal to undo that statement alone: without
# it, each of these statements wrote every page it changed to a temporary file first.
INSERT_JOBS = f"INSERT OR ROLLBACK INTO jobs ({_JOB_COLUMNS}) VALUES {{rows}}"
UPDATE_JOBS = (
    "UPDATE OR ROLLBACK jobs SET state = v.column1, record = v.column2, finished_at = v.column3"
    " FROM (VALUES {rows}) AS v WHERE jobs.id = v.column4"
)
INSERT_EVENTS = "INSERT OR ROLLBACK INTO events (offset, job_id, tool, body) VALUES {rows}"

# Retention's reads, each one index range (tests check the plans). Only finished jobs have a
# finished_at, so the time query needs no state condition (which would make SQLite pick
# jobs_state and sort).
OLDEST_IN_STATE = "SELECT seq FROM jobs WHERE state = ? ORDER BY seq LIMIT ?"
ENDED_BEFORE = "SELECT seq FROM jobs WHERE finished_at < ? ORDER BY finished_at LIMIT ?"

Row = Sequence[Any]
Op = tuple[Any, ...]
Result = tuple[int, object]
"""An op's index in its transaction and its result."""


class Applied:
    """What one committed transaction changed (see the module docstring)."""

    __slots__ = ("finished", "first", "last", "oldest", "purged", "results")

    def __init__(self) -> None:
        self.first: int | None = None
        self.last: int | None = None
        self.finished = 0
        self.purged = False
        self.oldest: int | None = None
        self.results: list[Result] = []


_statements: dict[tuple[str, int, int], str] = {}


def _statement(template: str, width: int, rows: int) -> str:
    key = (template, width, rows)
    sql = _statements.get(key)
    if sql is None:
        row = f"({', '.join(['?'] * width)})"
        sql = _statements[key] = template.format(rows=", ".join([row] * rows))
    return sql


def _in_statements(db: sqlite3.Connection, template: str, width: int, rows: Sequence[Row]) -> int:
    """Run ``template`` over ``rows`` of ``width`` values, up to ``ROWS_PER_STATEMENT`` at once;
    how many rows the statements changed."""
    changed = 0
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start : start + ROWS_PER_STATEMENT]
        changed += db.execute(
            _statement(template, width, len(chunk)), list(itertools.chain.from_iterable(chunk))
        ).rowcount
    return changed


def _unknown_jobs(db: sqlite3.Connection, ids: Sequence[str]) -> set[str]:
    """Which of ``ids`` name no job in the file (rare: the caller's bug, not a crash's)."""
    return {job for job in ids if db.execute(JOB_EXISTS, (job,)).fetchone() is None}


def _refuse_unknown(ops: Sequence[Op], unknown: set[str], applied: Applied) -> int:
    """Answer ``UNKNOWN_JOB`` to each transition of an ``unknown`` job; how many of them ended
    a job (each counted as finished when it was read)."""
    ended = 0
    for index, op in enumerate(ops):
        if op[0] == TRANSITION and op[5] in unknown:
            applied.results.append((index, UNKNOWN_JOB))
            ended += op[1]
    return ended


def apply(db: sqlite3.Connection, ops: Sequence[Op]) -> Applied:
    """Apply ``ops`` in one transaction and say what changed; roll back and raise if it fails."""
    applied = Applied()
    results = applied.results
    finished = 0
    events: list[Row] = []
    plain: list[Row] = []
    updates: dict[str, Row] = {}
    purges: list[tuple[int, Op]] = []
    db.execute("BEGIN IMMEDIATE")
    try:
        for index, op in enumerate(ops):
            kind = op[0]
            if kind == TRANSITION:
                # The last record of each job: UPDATE ... FROM takes an arbitrary one of
                # duplicate rows, so there are none.
                updates[op[5]] = op[2:6]
                events.append(op[6:10])
                finished += op[1]
            elif kind == PUT:
                if op[2] is None:
                    plain.append(op[3:12])
                    events.append(op[12:16])
                    finished += op[1]
                elif db.execute(INSERT_KEYED_JOB, op[3:12]).rowcount == 1:
                    events.append(op[12:16])
                    finished += op[1]
                else:
                    existing = db.execute(KEYED_RECORD, (op[2],)).fetchone()[0]
                    results.append((index, existing))
            elif kind == PURGE:
                purges.append((index, op))
            else:
                raise ValueError(f"unknown write op {kind!r}")
        _in_statements(db, INSERT_JOBS, 9, plain)
        if _in_statements(db, UPDATE_JOBS, 4, list(updates.values())) < len(updates):
            # Nothing of a transition whose job is not here is written, not even its event:
            # the other writes of the transaction commit, and the caller hears of it alone.
            unknown = _unknown_jobs(db, list(updates))
            finished -= _refuse_unknown(ops, unknown, applied)
            events = [row for row in events if row[1] not in unknown]
        _in_statements(db, INSERT_EVENTS, 4, events)
        for index, op in purges:
            # Each purge in a savepoint of its own: one that fails alone (a parameter SQLite
            # cannot bind) is undone and refused alone, and the job writes it shares the
            # transaction with still commit. Purges are rare: no job write pays for this.
            db.execute("SAVEPOINT purge")
            try:
                removed = _purge(db, *op[1:])
            except Exception as exc:
                if not db.in_transaction:
                    raise  # SQLite ended the whole transaction (disk full, I/O error)
                db.execute("ROLLBACK TO purge")
                db.execute("RELEASE purge")
                results.append((index, f"the purge failed: {exc or type(exc).__name__}"))
                continue
            db.execute("RELEASE purge")
            finished -= removed
            results.append((index, removed))
        if purges:
            applied.purged = True
            applied.oldest = db.execute("SELECT min(offset) FROM events").fetchone()[0]
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    applied.finished = finished
    if events:
        written = [row[0] for row in events]
        applied.first, applied.last = min(written), max(written)
    return applied


def _purge(
    db: sqlite3.Connection,
    finished_before: float | None,
    excess: int,
    limit: int | None,
    terminal_states: Sequence[str],
) -> int:
    """Delete up to ``limit`` finished jobs: the ``excess`` oldest, and those finished before."""
    cap = -1 if limit is None else limit
    doomed: set[int] = set()
    if excess > 0:
        count = excess if limit is None else min(excess, limit)
        oldest: list[int] = []
        for state in terminal_states:
            oldest += [row[0] for row in db.execute(OLDEST_IN_STATE, (state, count))]
        doomed.update(sorted(oldest)[:count])
    if finished_before is not None:
        doomed.update(row[0] for row in db.execute(ENDED_BEFORE, (finished_before, cap)))
    chosen = sorted(doomed) if limit is None else sorted(doomed)[:limit]
    db.executemany("DELETE FROM jobs WHERE seq = ?", [(seq,) for seq in chosen])
    # A job's rowid is its first event's offset, so every event before the oldest job left
    # belongs to a deleted job: the log is trimmed to there and no kept job loses history.
    first_left = db.execute("SELECT min(seq) FROM jobs").fetchone()[0]
    if first_left is None:
        # The log ends empty: its last offset is kept apart, or the next start would number
        # events from 1 again.
        db.execute(
            "UPDATE log_floor SET last = max(last, (SELECT coalesce(max(offset), 0) FROM events))"
        )
        db.execute("DELETE FROM events")
    else:
        db.execute("DELETE FROM events WHERE offset < ?", (first_left,))
    return len(chosen)


def bind_quickly() -> None:
    """Make this process's sqlite3 bind ``bytes`` and ``None`` parameters without a detour.

    Python's sqlite3 binds int, float, str and bytearray directly but asks every other value for
    an adaptation first, and for bytes and None both lookups fail by raising (and formatting) an
    AttributeError each: about 0.6 us per bytes and 0.3 us per None parameter, and every job is
    six JSON bodies and a few NULLs. Registered adapters are found at once instead: bytes become
    a bytearray (still a BLOB), None stays None (NULL). The registry is global to the process, so
    only the writer process (and benchmarks) call this, never a program that embeds the store.
    """
    sqlite3.register_adapter(bytes, bytearray)
    sqlite3.register_adapter(type(None), _null)


def _null(value: None) -> None:
    return value


def connect(path: str, synchronous: str, max_bytes: int | None) -> sqlite3.Connection:
    """The writer's connection to a file the store has already opened and migrated."""
    db = sqlite3.connect(path, isolation_level=None, cached_statements=CACHED_STATEMENTS)
    try:
        db.execute("PRAGMA busy_timeout = 5000")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise sqlite3.OperationalError(f"cannot switch to WAL mode (journal mode {mode})")
        db.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        if max_bytes is not None:
            # A limit of this connection only: the writer's is the one that counts.
            page = db.execute("PRAGMA page_size").fetchone()[0]
            db.execute(f"PRAGMA max_page_count = {max(1, max_bytes // page)}")
    except BaseException:
        db.close()
        raise
    return db


def _frames(buffer: bytearray) -> tuple[list[list[Op]], int]:
    """The complete frames at the start of ``buffer``, and how many bytes they take."""
    frames: list[list[Op]] = []
    size = len(buffer)
    at = 0
    with memoryview(buffer) as view:
        while size - at >= HEADER.size:
            (length,) = HEADER.unpack_from(buffer, at)
            end = at + HEADER.size + length
            if end > size:
                break
            frames.append(marshal.loads(view[at + HEADER.size : end]))
            at = end
    return frames, at


def _reply(fd: int, reply: tuple[Any, ...]) -> None:
    data = marshal.dumps(reply)
    with memoryview(HEADER.pack(len(data)) + data) as out:
        sent = 0
        while sent < len(out):
            sent += os.write(fd, out[sent:])


def _commit(db: sqlite3.Connection, frames: list[list[Op]]) -> tuple[Any, ...]:
    """Commit ``frames`` as one transaction; the reply that says how it went."""
    if len(frames) == 1:
        ops = frames[0]
        starts = [0]
    else:
        ops = []
        starts = []
        for frame in frames:
            starts.append(len(ops))
            ops += frame
    began = time.perf_counter()
    try:
        applied = apply(db, ops)
    except Exception as exc:
        return (len(frames), None, None, 0, False, None, [], 0.0, str(exc) or type(exc).__name__)
    seconds = time.perf_counter() - began
    results: list[tuple[int, int, object]] = []
    for index, value in applied.results:
        number = bisect.bisect_right(starts, index) - 1
        results.append((number, index - starts[number], value))
    return (
        len(frames),
        applied.first,
        applied.last,
        applied.finished,
        applied.purged,
        applied.oldest,
        results,
        seconds,
        None,
    )


def identity(stat: os.stat_result) -> tuple[int, int]:
    """What tells a file apart while it exists: its device and inode numbers."""
    return stat.st_dev, stat.st_ino


def _gone(path: str, held: tuple[int, int]) -> str | None:
    """Why ``path`` no longer names the file ``held`` (its ``identity``), or None if it does."""
    try:
        now = identity(os.stat(path))
    except OSError as exc:
        return f"the job store file {path} was removed or replaced while in use ({exc.strerror})"
    if now != held:
        return f"the job store file {path} was removed or replaced while in use"
    return None


def serve(
    db: sqlite3.Connection, requests: int, replies: int, path: str, held: tuple[int, int]
) -> None:
    """Commit the frames read from ``requests`` until its end, replying on ``replies``; stop for
    good, acknowledging nothing more, once ``path`` no longer names the file ``held``."""
    os.set_blocking(requests, False)
    waiting = select.poll()
    waiting.register(requests, select.POLLIN)
    buffer = bytearray()
    ended = False
    while not ended:
        waiting.poll()
        while True:  # everything there is now: one transaction for every complete frame
            try:
                chunk = os.read(requests, READ_SIZE)
            except BlockingIOError:
                break
            if not chunk:
                ended = True
                break
            buffer += chunk
        frames, used = _frames(buffer)
        if frames:
            del buffer[:used]
            reply = _commit(db, frames)
            # After the commit, just before the reply: a removal any earlier is caught before
            # its writes are acknowledged. One stat per transaction, not per write.
            gone = _gone(path, held)
            if gone is not None:
                _reply(replies, (0, None, None, 0, False, None, [], 0.0, gone))
                return
            _reply(replies, reply)


def main(argv: list[str]) -> int:
    """Open the connection, say so, and serve until the input ends (see the module docstring)."""
    path, synchronous, max_bytes, lock = argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Replies go out on a descriptor of their own: a stray print goes to stderr, not the parent.
    replies = os.dup(1)
    os.dup2(2, 1)
    bind_quickly()
    try:
        db = connect(path, synchronous, int(max_bytes) or None)
    except Exception as exc:
        reason = str(exc) or type(exc).__name__
        with contextlib.suppress(BrokenPipeError):  # the parent gave up meanwhile
            _reply(replies, (0, None, None, 0, False, None, [], 0.0, reason))
        return 1
    try:
        _reply(replies, (0, None, None, 0, False, None, [], 0.0, None))
        # The parent's locked descriptor names the file it opened and migrated.
        serve(db, 0, replies, path, identity(os.fstat(int(lock))))
    except BrokenPipeError:  # the parent is gone, or gave up before we were ready: nobody to tell
        pass
    finally:
        db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
