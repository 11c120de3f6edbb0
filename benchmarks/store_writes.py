"""Store writes: what SQLite itself spends per job on the store's writes, schema against schema.

No event loop, no writer thread, no group commit: the store's own write ops (``sqlite_ops.Put`` and
``Transition``, encoded beforehand as callers do) go straight to its ``apply_batch`` on one
connection to a new file, in the batches a busy store's writer gets. Each batch holds 64 new jobs,
the running transitions of the 64 before them and the outcomes of the 64 before those (192 events),
so every job is inserted once and updated twice, in three different transactions. The jobs
belong to 100 principals, as on a server with API keys. Candidates, each on a file of its own in a
fresh directory, the same ops in the same batches:

- the newest schema (the one a ``SqliteStore`` creates today);
- a reference: an older schema version (``--baseline``, default 2), the same ``apply_batch``;
- a floor: the newest schema with every index dropped but ``jobs_id`` (updates find their row
  through it) and the idempotency index (inserts name it): the tables alone;
- the newest and the older schema again with jobs of no owner, as on an open server (and in
  ``store_throughput``).

Figures: CPU per job of the process (all in this thread: ``apply_batch`` and SQLite), the wall
time per job, and the file's size per job once checkpointed.

    .venv/bin/python -m benchmarks.store_writes [--jobs 50000] [--baseline 2] [--rounds 5]
        [--synchronous full|normal]
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec

from benchmarks import harness, store_fill
from jobwarden.store import sqlite_schema
from jobwarden.store.sqlite_ops import Put, Transition, WriteOp, apply_batch

DESCRIPTION = "CPU per job of the SQLite store's writes (apply_batch), newest schema vs an older."
GROUP = 64
NEWEST = f"schema v{sqlite_schema.LATEST}"
FLOOR = "floor: tables alone"
KEPT_BY_FLOOR = {"jobs_id", "jobs_idempotency"}


def batches(jobs: int, *, owned: bool) -> list[list[WriteOp]]:
    """The write batches of ``jobs`` finished jobs, pipelined: puts, then runs, then outcomes;
    the jobs belong to 100 principals, or (not ``owned``) to none, as on an open server."""
    steps = list(store_fill.finished_jobs(jobs))
    if not owned:
        steps = [
            (
                (msgspec.structs.replace(queued, owner=None), queued_event),
                (msgspec.structs.replace(running, owner=None), running_event),
                (msgspec.structs.replace(final, owner=None), final_event),
            )
            for (queued, queued_event), (running, running_event), (final, final_event) in steps
        ]
    groups = [steps[start : start + GROUP] for start in range(0, jobs, GROUP)]
    made: list[list[WriteOp]] = []
    for index in range(len(groups) + 2):
        ops: list[WriteOp] = []
        if index < len(groups):
            ops += [Put(*queued) for queued, _, _ in groups[index]]
        if 0 <= index - 1 < len(groups):
            ops += [Transition(*running) for _, running, _ in groups[index - 1]]
        if 0 <= index - 2 < len(groups):
            ops += [Transition(*final) for _, _, final in groups[index - 2]]
        made.append(ops)
    return made


def new_file(folder: Path, *, upto: int, floor: bool) -> Path:
    """A file at schema version ``upto`` (its indexes dropped to the floor's if ``floor``)."""
    path = folder / "jobs.db"
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        sqlite_schema.migrate(db, str(path), upto=upto)
        if floor:
            indexes = db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            ).fetchall()
            for (index,) in indexes:
                if index not in KEPT_BY_FLOOR:
                    db.execute(f"DROP INDEX {index}")
    finally:
        db.close()
    return path


def apply_all(
    path: Path, work: list[list[WriteOp]], jobs: int, synchronous: str
) -> harness.Figures:
    """Apply every batch to the file at ``path``; CPU and wall time per job, bytes per job."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        cpu, began = time.process_time(), time.perf_counter()
        for ops in work:
            apply_batch(db, ops)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - began
        states = dict(db.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())
        events = db.execute("SELECT count(*) FROM events").fetchone()[0]
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    if sum(states.values()) != jobs or "queued" in states or "running" in states:
        raise RuntimeError(f"{path}: jobs by state {states}; expected {jobs} finished")
    if events != 3 * jobs:
        raise RuntimeError(f"{path}: {events} events; expected {3 * jobs}")
    return {
        "cpu us/job": cpu / jobs * 1e6,
        "wall us/job": wall / jobs * 1e6,
        "bytes/job": path.stat().st_size / jobs,
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Build the ops, measure every schema, print the table and the ratios."""
    p = harness.parser(DESCRIPTION, uvloop=False)
    p.add_argument("--jobs", type=int, default=50_000, help="jobs per file (50000)")
    p.add_argument(
        "--baseline", type=int, default=2, help="the older schema version compared with (2)"
    )
    p.add_argument("--synchronous", choices=["full", "normal"], default="full")
    args = harness.parse(p, argv)
    if args.jobs < GROUP or not 1 <= args.baseline < sqlite_schema.LATEST:
        p.error(f"need --jobs >= {GROUP} and 1 <= --baseline < {sqlite_schema.LATEST}")
    jobs: int = args.jobs
    synchronous: str = args.synchronous
    baseline = f"schema v{args.baseline}"
    ownerless = " (no owners)"
    # label -> (schema version, dropped to the floor, jobs owned by principals)
    setups = {
        NEWEST: (sqlite_schema.LATEST, False, True),
        baseline: (args.baseline, False, True),
        FLOOR: (sqlite_schema.LATEST, True, True),
        NEWEST + ownerless: (sqlite_schema.LATEST, False, False),
        baseline + ownerless: (args.baseline, False, False),
    }
    work = {owned: batches(jobs, owned=owned) for owned in (True, False)}
    small = {owned: batches(GROUP * 4, owned=owned) for owned in (True, False)}

    with tempfile.TemporaryDirectory(prefix="jobwarden-bench-") as name:
        folder = Path(name)

        def candidate(label: str, count: int) -> Callable[[], harness.Figures]:
            upto, floor, owned = setups[label]
            ops = (work if count == jobs else small)[owned]

            def measure() -> harness.Figures:
                path = new_file(folder, upto=upto, floor=floor)
                try:
                    return apply_all(path, ops, count, synchronous)
                finally:
                    for leftover in folder.iterdir():
                        leftover.unlink()

            return measure

        candidates = {label: candidate(label, jobs) for label in setups}
        warmup = {label: candidate(label, GROUP * 4) for label in setups}
        samples = harness.interleave(candidates, args.rounds, quiet=args.json, warmup=warmup)

    report = harness.Report(
        "store_writes",
        {"jobs": jobs, "rounds": args.rounds, "synchronous": synchronous, "baseline": baseline},
    )
    cpu: dict[str, float] = {}
    for label, figures in samples.items():
        cpu[label] = report.add(label, "CPU", "us/job", figures["cpu us/job"])
        report.add(label, "wall", "us/job", figures["wall us/job"])
        report.add(label, "file", "bytes/job", figures["bytes/job"])
    report.note(
        f"each batch: {GROUP} puts, the running transitions of the {GROUP} jobs before, the"
        f" outcomes of the {GROUP} before those ({3 * GROUP} events), applied by"
        f" sqlite_ops.apply_batch on one connection, synchronous={synchronous}, WAL; ops encoded"
        " beforehand (callers encode them); every file holds every job finished and 3 events each"
    )
    report.note(
        f"{NEWEST} costs {cpu[NEWEST] / cpu[baseline]:.2f}x the CPU of {baseline}"
        f" ({harness.fmt(cpu[NEWEST])} vs {harness.fmt(cpu[baseline])} us/job); the tables alone"
        f" (jobs_id and the idempotency index kept) {harness.fmt(cpu[FLOOR])} us/job, so the"
        f" other indexes cost {harness.fmt(cpu[NEWEST] - cpu[FLOOR])} us/job in {NEWEST} and"
        f" {harness.fmt(cpu[baseline] - cpu[FLOOR])} in {baseline}"
    )
    report.note(
        f"no owners (an open server's jobs: the owner indexes are partial, so hold none of them"
        f" in {NEWEST}): {NEWEST} costs"
        f" {cpu[NEWEST + ownerless] / cpu[baseline + ownerless]:.2f}x the CPU of {baseline}"
        f" ({harness.fmt(cpu[NEWEST + ownerless])} vs {harness.fmt(cpu[baseline + ownerless])}"
        " us/job)"
    )
    report.note(
        "CPU = process time (user + system) of this thread, fsyncs' waits excluded; wall includes"
        " them; two shared cores, load from other work varies: read the ratio"
    )
    harness.emit(report, as_json=args.json)


if __name__ == "__main__":
    main()
