"""Big SQLite job files, written quickly by the store's own code: for the listing and recovery
benchmarks, which need a million (or a hundred thousand) jobs that the Supervisor would take
minutes to run.

Each job is built as the Supervisor would record it (``JobRecord``s, numbered ``JobEvent``s from
an ``EventBus``), turned into the store's own write ops (``sqlite_ops.Put`` / ``Transition``) and
applied by the store's own ``apply_batch``, only many thousands per transaction on one connection
instead of a group commit per few dozen. The schema comes from opening a ``SqliteStore`` on the new
file, so the result is exactly what the store itself would have written.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec

from jobwarden import ErrorInfo, JobEvent, JobRecord, JobState, JobStore, MemoryStore
from jobwarden.actors.event_bus import EventBus
from jobwarden.errors import OutcomeType
from jobwarden.ids import new_job_id
from jobwarden.store.sqlite import SqliteStore
from jobwarden.store.sqlite_ops import Put, Transition, WriteOp, apply_batch

SOURCE = "jobwarden://bench"
TOOL, PLUGIN = "builtin.echo", "builtin"
OWNERS = tuple(f"principal-{n:02d}" for n in range(100))
# How finished jobs end, by weight: mostly succeeded, a minority failed or cancelled.
ENDINGS = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)
WEIGHTS = (90, 7, 3)
BATCH_JOBS = 20_000

Step = tuple[JobRecord, JobEvent]
"""One stored change: the job's record after it, and the event describing it."""


def finished_jobs(count: int, *, seed: int = 4) -> Iterator[tuple[Step, Step, Step]]:
    """``count`` echo jobs, oldest first, each queued -> running -> its ending, owners spread."""
    rng = random.Random(seed)
    bus = EventBus(MemoryStore(), source=SOURCE)
    began = datetime.now(UTC) - timedelta(seconds=count)
    for index in range(count):
        created = began + timedelta(seconds=index)
        queued = JobRecord(
            id=new_job_id(),
            tool=TOOL,
            plugin=PLUGIN,
            state=JobState.QUEUED,
            input={"text": f"hello {index}"},
            created_at=created,
            owner=rng.choice(OWNERS),
        )
        running = msgspec.structs.replace(queued, state=JobState.RUNNING, started_at=created)
        ending = rng.choices(ENDINGS, WEIGHTS)[0]
        finished = created + timedelta(milliseconds=2)
        final = msgspec.structs.replace(
            running,
            state=ending,
            finished_at=finished,
            result={"text": f"hello {index}"} if ending is JobState.SUCCEEDED else None,
            error=None if ending is JobState.SUCCEEDED else _error(queued, ending, finished),
        )
        yield (
            (queued, bus.event(queued, "queued", at=created)),
            (running, bus.event(running, "running", at=created)),
            (final, bus.event(final, ending.value, at=finished)),
        )


def queued_jobs(count: int) -> Iterator[Step]:
    """``count`` echo jobs, oldest first, each just submitted."""
    bus = EventBus(MemoryStore(), source=SOURCE)
    for index in range(count):
        record = JobRecord(
            id=new_job_id(),
            tool=TOOL,
            plugin=PLUGIN,
            state=JobState.QUEUED,
            input={"text": f"hello {index}"},
            created_at=datetime.now(UTC),
        )
        yield record, bus.event(record, "queued", at=record.created_at)


def _error(record: JobRecord, ending: JobState, at: datetime) -> ErrorInfo:
    outcome = OutcomeType.PLUGIN_ERROR if ending is JobState.FAILED else OutcomeType.CANCELLED
    return ErrorInfo(
        type=outcome,
        message="failure requested" if ending is JobState.FAILED else "cancelled by its owner",
        details={"attempt": record.attempt},
        plugin=PLUGIN,
        tool=TOOL,
        job_id=record.id,
        timestamp=at,
    )


async def create(path: Path) -> None:
    """A new file with the store's current schema (in WAL mode), closed again."""
    store = SqliteStore(path)
    await store.open()
    await store.close()


async def write(path: Path, jobs: Iterable[Sequence[Step]], mirror: JobStore | None = None) -> None:
    """Append each job's steps (a put, then transitions) to the closed file at ``path``.

    ``mirror`` gets the same puts and transitions, so a reference store holds the same jobs.
    """
    db = sqlite3.connect(path, isolation_level=None)
    # Durability of the fill itself does not matter (a crash aborts the benchmark): one sync at
    # the end is enough, and the file format is the same.
    db.execute("PRAGMA synchronous = OFF")
    try:
        ops: list[WriteOp] = []
        for count, steps in enumerate(jobs, 1):
            (record, event), *changes = steps
            ops.append(Put(record, event))
            ops.extend(Transition(*change) for change in changes)
            if mirror is not None:
                await mirror.put(record, event)
                for change in changes:
                    await mirror.transition(*change)
            if count % BATCH_JOBS == 0:
                apply_batch(db, ops)
                ops = []
        if ops:
            apply_batch(db, ops)
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()


def fresh_copy(source: Path) -> Path:
    """A copy of the closed file (its WAL checkpointed into it) beside it, replacing the last."""
    target = source.with_name(f"copy-{source.name}")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(source, target)
    return target
