"""The SQLite store, the server's default: every accepted job, result and event survives a crash.

Writes go through one connection in a writer process of the store's own (``WriterProcess``, its
child ``sqlite_child``), grouped: the writes of one event-loop turn go out as one frame, and all the
frames that arrive while a commit is in flight share the next transaction, so durability costs one
commit per batch rather than per write, and SQLite commits on another core while the event loop goes
on. The event offsets and the count of finished jobs are kept here, moved by each transaction's
reply. ``put`` and ``transition`` return once committed; ``transition_soon`` queues a transition and
reports its commit later, on the event loop (write-behind, for a job's outcome). The file is in WAL
mode, so reads run on their own connections in worker threads and never wait for the writer.
``synchronous=full`` (the default) makes each commit survive a power loss; ``normal`` survives a
crash of the process but may lose the last commits if the machine itself goes down.
"""

from __future__ import annotations

import fcntl
import os
import re
import sqlite3
import time
from collections.abc import Callable, Coroutine
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar

import anyio

from jobwarden.actors.states import JobState
from jobwarden.actors.to_the_end import to_the_end
from jobwarden.errors import StoreError
from jobwarden.ids import JOB_ID
from jobwarden.records import JobEvent, JobRecord
from jobwarden.store import sqlite_schema
from jobwarden.store.base import MAX_PAGE, EventBounds, JobPage, JobQuery, unknown_cursor
from jobwarden.store.group_commit import StoreStatistics
from jobwarden.store.sqlite_ops import Purge, Put, Transition
from jobwarden.store.sqlite_process import Transaction, WriterProcess
from jobwarden.store.stored import decode_events, decode_record
from jobwarden.store.timings import StoreTimings

T = TypeVar("T")
Synchronous = Literal["full", "normal"]

LOCK_WAIT_S = 2.0  # how long open() waits for another process to let go of the file
LOCK_POLL_S = 0.02
_pause = time.sleep  # in a worker thread: open() runs there
MIN_SQLITE = (3, 33, 0)  # batched updates are UPDATE ... FROM (VALUES ...)
_MAX_SEQ = 2**63 - 1  # SQLite's largest rowid
_SEQ = re.compile(f"[0-9]{{1,{len(str(_MAX_SEQ))}}}")  # a cursor: the last job's seq


class SqliteStore:
    """Jobs and events in one SQLite file; see the module docstring for the write path."""

    durable = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "full",
        readers: int = 4,
        max_bytes: int | None = None,
    ) -> None:
        if synchronous not in ("full", "normal"):
            raise ValueError(f"synchronous must be 'full' or 'normal', not {synchronous!r}")
        if readers < 1:
            raise ValueError("readers must be >= 1")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError("max_bytes must be >= 1 (or None)")
        self.path = Path(path)
        self._where = str(self.path)  # names the file in a read's StoreError
        self.synchronous = synchronous
        self.max_bytes = max_bytes
        self._idle_readers: list[sqlite3.Connection] = []
        self._readers = readers
        self._reader_slots = anyio.CapacityLimiter(readers)
        self.timings = StoreTimings()
        self._commits = WriterProcess(
            self.path,
            synchronous=synchronous,
            max_bytes=max_bytes,
            applied=self._applied,
            timings=self.timings,
        )
        self._first: int | None = None
        self._last = 0
        # Finished jobs in the file: counted once at open, then moved by each commit, so
        # retention knows how many exceed its cap without counting a large table per batch.
        self._finished = 0
        self._lock: int | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> None:
        """Create or migrate the file and load the event offsets; ``StoreError`` if it cannot."""
        try:
            # To its end: a thread left opening the file would spawn a writer nobody closes.
            await to_the_end(partial(anyio.to_thread.run_sync, self._open))
            await self._commits.start()
        except BaseException:
            # Cancelled after the file was opened (or the child could not open it): undo it all.
            await to_the_end(self._commits.close)
            self._close_readers()
            raise

    def _open(self) -> None:
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            needs = ".".join(map(str, MIN_SQLITE))
            raise StoreError(
                f"the SQLite job store needs SQLite {needs} or newer (for UPDATE ... FROM);"
                f" this Python's sqlite3 module has {sqlite3.sqlite_version}"
            )
        self._check_directory()
        self._lock = _lock_exclusively(self.path)
        try:
            db = self._connect()
        except sqlite3.Error as exc:
            self._unlock()
            raise StoreError(f"cannot open the job store {self.path}: {exc}") from exc
        try:
            # Before anything is written: a file that is not ours stays as it was.
            sqlite_schema.check(db, str(self.path))
            # Only a new, empty file takes it: an existing file keeps the page size it has.
            db.execute(f"PRAGMA page_size = {sqlite_schema.PAGE_SIZE}")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"{self.path}: cannot switch to WAL mode (journal mode {mode})")
            db.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
            sqlite_schema.migrate(db, str(self.path))
            first, last = db.execute(
                "SELECT min(offset), max(coalesce(max(offset), 0), (SELECT last FROM log_floor))"
                " FROM events"
            ).fetchone()
            finished = db.execute(
                f"SELECT count(*) FROM jobs WHERE state IN {sqlite_schema.TERMINAL_SQL}"
            ).fetchone()[0]
        except sqlite3.Error as exc:
            db.close()
            self._unlock()
            raise StoreError(f"the job store {self.path} is unusable: {exc}") from exc
        except BaseException:
            db.close()
            self._unlock()
            raise
        db.close()
        self._first, self._last, self._finished = first, last or 0, finished
        try:
            for _ in range(self._readers):
                reader = self._connect()
                reader.execute("PRAGMA query_only = 1")
                self._idle_readers.append(reader)
            self._commits.spawn(self._lock)
        except sqlite3.Error as exc:
            self._close_readers()
            raise StoreError(f"cannot open the job store {self.path}: {exc}") from exc
        except BaseException:
            self._close_readers()
            raise

    def _check_directory(self) -> None:
        folder = self.path.parent
        if not folder.is_dir():
            raise StoreError(f"cannot open the job store {self.path}: {folder} is not a directory")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise StoreError(
                f"cannot open the job store {self.path}: the directory {folder} is not writable"
                " (SQLite needs to create the -wal and -shm files beside the database)"
            )

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA busy_timeout = 5000")
        return db

    async def close(self) -> None:
        """Commit what is queued, stop the writer process, then close every connection."""
        await self._commits.close()
        self._close_readers()

    def _close_readers(self) -> None:
        readers, self._idle_readers = self._idle_readers, []
        for db in readers:
            db.close()
        self._unlock()

    def _unlock(self) -> None:
        # Closed only after every connection: closing a descriptor of the database file would
        # also drop SQLite's own POSIX locks on it.
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def statistics(self) -> StoreStatistics:
        """Commits and writes so far: writes / commits is how many each commit carried."""
        return self._commits.statistics()

    async def wait_failed(self) -> StoreError:
        """Return once the writer process has ended unasked (killed, crashed) or stopped because
        the file was removed or replaced, with the ``StoreError`` every write gets from then on
        (``FailsForGood``)."""
        return await self._commits.wait_failed()

    # --- writes ---------------------------------------------------------------------------------

    async def put(self, record: JobRecord, event: JobEvent) -> JobRecord:
        """Insert the job and its first event, or return the job its owner's key already names."""
        op = Put(record, event)
        await self._commits.write(op)
        earlier = _earlier_job(op, self._where)
        return record if earlier is None else earlier

    def put_then(
        self, record: JobRecord, event: JobEvent, committed: Callable[[StoreError | None], None]
    ) -> Coroutine[Any, Any, JobRecord | None]:
        """``put``, with ``committed`` called on the event loop as the commit is reported, before
        this returns or raises: with None once this job is stored, with the ``StoreError`` when
        the file refused it, not at all when its idempotency key names an earlier job. Returns
        None, or that earlier job."""
        op = Put(record, event)
        if record.idempotency_key is None:
            # The writer's own coroutine, whose result is None: one frame less per submit.
            return self._commits.write(op, committed)
        return self._put_keyed(op, committed)

    async def _put_keyed(
        self, op: Put, committed: Callable[[StoreError | None], None]
    ) -> JobRecord | None:
        await self._commits.write(op, partial(_report_new_job, op, committed))
        return _earlier_job(op, self._where)

    def transition(self, record: JobRecord, event: JobEvent) -> Coroutine[Any, Any, None]:
        """Replace the job's record and append the event, in one transaction.

        The writer's own coroutine, not one wrapping it: one frame less on each job's way.
        """
        return self._commits.write(Transition(record, event))

    def transition_soon(
        self, record: JobRecord, event: JobEvent, committed: Callable[[StoreError | None], None]
    ) -> None:
        """Queue ``transition(record, event)`` and return at once (write-behind).

        ``committed`` is called on the event loop once the write is committed (with None) or
        refused (with the ``StoreError``); a later write of the same job is committed after it.
        Raises ``StoreError`` at once when the store is closed.
        """
        self._commits.write_soon(Transition(record, event), committed)

    async def purge(
        self,
        *,
        finished_before: datetime | None,
        keep_finished: int | None,
        limit: int | None = None,
    ) -> int:
        """Delete up to ``limit`` finished jobs by age and/or count; trim the event log to match."""
        if finished_before is None and keep_finished is None:
            return 0
        # The count may lag by the batch in flight: a moment old is good enough for retention.
        excess = 0 if keep_finished is None else max(0, self._finished - keep_finished)
        op = Purge(finished_before, excess, limit)
        await self._commits.write(op)
        return op.removed

    def _applied(self, done: Transaction) -> None:
        """One transaction committed (on the event loop, before its writes are reported)."""
        self.timings.observe("commit", done.seconds)
        self._finished += done.finished
        first, last = done.first, done.last
        if first is not None and last is not None:
            self._last = max(self._last, last)
            self._first = first if self._first is None else min(self._first, first)
        if done.purged:
            self._first = done.oldest

    # --- reads ----------------------------------------------------------------------------------

    async def get(self, job_id: str) -> JobRecord | None:
        """The record with that id, or None."""
        row = await self._read(
            "get",
            lambda db: db.execute("SELECT record FROM jobs WHERE id = ?", (job_id,)).fetchone(),
        )
        return None if row is None else decode_record(row[0], self._where)

    async def list_jobs(self, query: JobQuery) -> JobPage:
        """Newest first: one backwards range read on the index of a filter given.

        ``next_cursor`` is the last job's seq in decimal; a cursor of the id form earlier
        versions gave out (a job's id) still works. Raises ``InvalidRequest`` for any other.
        """
        limit = max(1, min(query.limit, MAX_PAGE))
        sql, params = listing_sql(query, limit + 1)
        rows = await self._read("list_jobs", lambda db: db.execute(sql, params).fetchall())
        jobs = [decode_record(row[1], self._where) for row in rows[:limit]]
        more = len(rows) > limit
        return JobPage(jobs=jobs, next_cursor=str(rows[limit - 1][0]) if more else None)

    async def unfinished(self) -> list[JobRecord]:
        """Queued and running jobs, oldest first."""
        rows = await self._read(
            "unfinished",
            lambda db: db.execute(
                "SELECT record FROM jobs WHERE state IN ('queued', 'running') ORDER BY seq"
            ).fetchall(),
        )
        return [decode_record(row[0], self._where) for row in rows]

    async def read_events(
        self, after: int, limit: int, *, job_id: str | None = None, tool: str | None = None
    ) -> list[JobEvent]:
        """Up to ``limit`` events after offset ``after``, in offset order."""
        if limit < 1:
            return []
        sql = "SELECT body FROM events WHERE offset > ?"
        params: list[Any] = [after]
        if job_id is not None:
            sql += " AND job_id = ?"
            params.append(job_id)
        if tool is not None:
            sql += " AND tool = ?"
            params.append(tool)
        sql += " ORDER BY offset LIMIT ?"
        params.append(limit)
        rows = await self._read("read_events", lambda db: db.execute(sql, params).fetchall())
        return decode_events((row[0] for row in rows), self._where)

    async def event_bounds(self) -> EventBounds:
        """Kept in memory: this process is the file's only writer."""
        last = self._last
        return EventBounds(first=last + 1 if self._first is None else self._first, last=last)

    async def _read(self, operation: str, query: Callable[[sqlite3.Connection], T]) -> T:
        began = time.perf_counter()
        try:
            # The limiter admits as many threads as there are reader connections.
            return await anyio.to_thread.run_sync(self._run_read, query, limiter=self._reader_slots)
        finally:
            self.timings.observe(operation, time.perf_counter() - began)

    def _run_read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        # The limiter admits no more reads than there are connections: none idle means closed.
        readers = self._idle_readers
        if not readers:
            raise StoreError(f"the job store {self.path} is closed")
        db = readers.pop()
        try:
            return query(db)
        except sqlite3.Error as exc:
            raise StoreError(f"the job store {self.path} could not be read: {exc}") from exc
        finally:
            if readers is self._idle_readers:
                readers.append(db)
            else:  # closed meanwhile: its connections went with it
                db.close()


def _earlier_job(put: Put, where: str) -> JobRecord | None:
    """The job a committed put's idempotency key named, if it named one."""
    return None if put.existing is None else decode_record(put.existing, where)


def _report_new_job(
    put: Put, committed: Callable[[StoreError | None], None], error: StoreError | None
) -> None:
    """A keyed put's commit reaches ``committed`` unless the key named an earlier job (the op
    has its answer by the time commit callbacks run)."""
    if error is not None or put.existing is None:
        committed(error)


def _lock_exclusively(path: Path) -> int:
    """A descriptor of ``path`` holding an exclusive flock: one process writes a store file.

    flock locks are separate from the POSIX record locks SQLite itself takes, so they do not
    interfere with SQLite's locking; they do stop a second server from sharing the file, whose
    offsets and event bounds this process keeps in memory. A lock held by another process is
    waited for up to ``LOCK_WAIT_S``.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(f"cannot open the job store {path}: {exc.strerror}") from exc
    # A process killed a moment ago leaves its writer process committing what it had queued,
    # the lock held meanwhile (tens of milliseconds): a restart right away waits for that.
    waited = 0.0
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waited < LOCK_WAIT_S:
                _pause(LOCK_POLL_S)
                waited += LOCK_POLL_S
                continue
            os.close(fd)
            raise StoreError(
                f"the job store {path} is in use by another jobwarden process (for {waited:g}s);"
                " one process per file"
            ) from None
        return fd


def listing_sql(query: JobQuery, rows: int) -> tuple[str, list[Any]]:
    """The SELECT of seq and record for a listing page of ``rows`` rows, and its parameters.

    Raises ``InvalidRequest`` when the cursor is neither a seq nor a job id.
    """
    clauses: list[str] = []
    params: list[Any] = []
    for name in ("state", "tool", "plugin", "owner"):
        value = getattr(query, name)
        if value is not None:
            clauses.append(f"{name} = ?")
            params.append(value.value if isinstance(value, JobState) else value)
    if query.cursor is not None:
        clause, value = _after(query.cursor)
        clauses.append(clause)
        params.append(value)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    return f"SELECT seq, record FROM jobs{where} ORDER BY seq DESC LIMIT ?", [*params, rows]


def _after(cursor: str) -> tuple[str, object]:
    """The condition (and its parameter) for the jobs listed after ``cursor``."""
    if _SEQ.fullmatch(cursor) and int(cursor) <= _MAX_SEQ:
        return "seq < ?", int(cursor)
    if JOB_ID.fullmatch(cursor):  # the cursor of earlier versions: the last job's id
        # Ids and seqs rise together (both are handed out as a job is submitted), so the page
        # after an id cursor starts below the first job at or after that id, gone or not.
        first_at = "SELECT seq FROM jobs WHERE id >= ? ORDER BY id LIMIT 1"
        return f"seq < coalesce(({first_at}), {_MAX_SEQ})", cursor
    raise unknown_cursor(cursor)


def store_from_url(path: str, params: dict[str, str]) -> SqliteStore:
    """A store for ``sqlite:///path?synchronous=full|normal&max_bytes=N`` (options optional)."""
    unknown = set(params) - {"synchronous", "max_bytes"}
    if unknown:
        raise StoreError(f"unknown sqlite store option(s): {', '.join(sorted(unknown))}")
    synchronous = params.get("synchronous", "full").lower()
    if synchronous not in ("full", "normal"):
        raise StoreError(f"synchronous must be full or normal, not {synchronous!r}")
    max_bytes = params.get("max_bytes")
    # ASCII digits only: isdigit() would take "²", which int() refuses.
    if max_bytes is not None and not (
        re.fullmatch("[0-9]{1,18}", max_bytes) and int(max_bytes) > 0
    ):
        raise StoreError(f"max_bytes must be a positive number of bytes, not {max_bytes!r}")
    return SqliteStore(
        path,
        synchronous="full" if synchronous == "full" else "normal",
        max_bytes=None if max_bytes is None else int(max_bytes),
    )
