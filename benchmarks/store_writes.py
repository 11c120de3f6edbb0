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
time per job, and the file's size per job once checkpointed. With ``--callgrind``, instead, the
instructions SQLite executes per job (inside ``sqlite3_step``), counted by valgrind's callgrind in
a child process per candidate: exact and repeatable, where CPU time on two shared cores is not.

    .venv/bin/python -m benchmarks.store_writes [--jobs 50000] [--group 64] [--baseline 2]
        [--rounds 5] [--synchronous full|normal]
    .venv/bin/python -m benchmarks.store_writes --callgrind --jobs 2000
"""

from __future__ import annotations

import argparse
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import msgspec

from benchmarks import harness, store_fill
from jobwarden.store import sqlite_child, sqlite_schema
from jobwarden.store.sqlite_ops import Put, Transition, WriteOp, apply_batch

DESCRIPTION = "CPU per job of the SQLite store's writes (apply_batch), newest schema vs an older."
GROUP = 64
NEWEST = f"schema v{sqlite_schema.LATEST}"
FLOOR = "floor: tables alone"
KEPT_BY_FLOOR = {"jobs_id", "jobs_idempotency"}
OWNERLESS = " (no owners)"


def batches(jobs: int, *, owned: bool, group: int = GROUP) -> list[list[WriteOp]]:
    """The write batches of ``jobs`` finished jobs, ``group`` jobs a step, pipelined: puts, then
    runs, then outcomes; the jobs belong to 100 principals, or (not ``owned``) to none, as on an
    open server."""
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
    groups = [steps[start : start + group] for start in range(0, jobs, group)]
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
        db.execute(f"PRAGMA page_size = {sqlite_schema.PAGE_SIZE}")  # as the store's new files
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
    """Apply every batch to the file at ``path``; CPU and wall time per job, bytes per job, and
    how the commits' times spread (SQLite's automatic WAL checkpoint runs inside the commit that
    takes the WAL past 1,000 pages: those few commits are the slow ones)."""
    db = sqlite3.connect(path, isolation_level=None)
    commits: list[float] = []
    try:
        db.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        cpu, began = time.process_time(), time.perf_counter()
        for ops in work:
            start = time.perf_counter()
            apply_batch(db, ops)
            commits.append(time.perf_counter() - start)
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
    commits.sort()
    slowest = commits[len(commits) - max(1, len(commits) // 20) :]
    return {
        "cpu us/job": cpu / jobs * 1e6,
        "wall us/job": wall / jobs * 1e6,
        "bytes/job": path.stat().st_size / jobs,
        "commit p50 ms": commits[len(commits) // 2] * 1e3,
        "commit p99 ms": commits[min(len(commits) - 1, len(commits) * 99 // 100)] * 1e3,
        "slowest 5% share %": 100 * sum(slowest) / sum(commits),
    }


class Setup(NamedTuple):
    """One candidate: the schema version, whether its indexes are dropped to the floor's, and
    whether its jobs belong to principals."""

    version: int
    floor: bool
    owned: bool


def setups(baseline: int) -> dict[str, Setup]:
    """Every candidate by label, the newest schema first."""
    older = f"schema v{baseline}"
    return {
        NEWEST: Setup(sqlite_schema.LATEST, floor=False, owned=True),
        older: Setup(baseline, floor=False, owned=True),
        FLOOR: Setup(sqlite_schema.LATEST, floor=True, owned=True),
        NEWEST + OWNERLESS: Setup(sqlite_schema.LATEST, floor=False, owned=False),
        older + OWNERLESS: Setup(baseline, floor=False, owned=False),
    }


def run_once(
    setup: Setup, work: list[list[WriteOp]], jobs: int, synchronous: str
) -> harness.Figures:
    """Apply ``work`` to a new file of ``setup``'s schema in a fresh directory, deleted after."""
    with tempfile.TemporaryDirectory(prefix="jobwarden-bench-") as folder:
        path = new_file(Path(folder), upto=setup.version, floor=setup.floor)
        return apply_all(path, work, jobs, synchronous)


def instructions(label: str, jobs: int, baseline: int, group: int) -> float:
    """SQLite's instructions per job (inside ``sqlite3_step``) for one candidate, counted by
    callgrind in a child process that builds the same ops and applies them once."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--collect-atstart=no",
        "--toggle-collect=sqlite3_step",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "benchmarks.store_writes",
        f"--apply={label}",
        f"--jobs={jobs}",
        f"--baseline={baseline}",
        f"--group={group}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from callgrind: {done.stderr[-500:]}")
    return int(found.group(1)) / jobs


def main(argv: Sequence[str] | None = None) -> None:
    """Build the ops, measure every schema, print the table and the ratios."""
    sqlite_child.bind_quickly()  # as the writer process binds its parameters
    p = harness.parser(DESCRIPTION, uvloop=False)
    p.add_argument("--jobs", type=int, default=50_000, help="jobs per file (50000)")
    p.add_argument(
        "--baseline", type=int, default=2, help="the older schema version compared with (2)"
    )
    p.add_argument("--synchronous", choices=["full", "normal"], default="full")
    p.add_argument(
        "--group",
        type=int,
        default=GROUP,
        help=f"jobs per pipeline step ({GROUP}); store_throughput's commits carry about 30",
    )
    p.add_argument(
        "--callgrind",
        action="store_true",
        help="count SQLite's instructions per job under valgrind instead (one run each;"
        " use --jobs 2000: about a minute per candidate)",
    )
    p.add_argument("--apply", help=argparse.SUPPRESS)  # callgrind's child: one candidate, once
    args = harness.parse(p, argv)
    group: int = args.group
    if group < 1 or args.jobs < group or not 1 <= args.baseline < sqlite_schema.LATEST:
        p.error(
            f"need --group >= 1, --jobs >= --group and 1 <= --baseline < {sqlite_schema.LATEST}"
        )
    jobs: int = args.jobs
    synchronous: str = args.synchronous
    baseline = f"schema v{args.baseline}"
    candidates = setups(args.baseline)
    if args.apply is not None:
        setup = candidates[args.apply]
        run_once(setup, batches(jobs, owned=setup.owned, group=group), jobs, synchronous)
        return
    if args.callgrind:
        if shutil.which("valgrind") is None:
            p.error("--callgrind needs valgrind (apt-get install -y valgrind)")
        report = harness.Report(
            "store_writes", {"jobs": jobs, "baseline": baseline, "counted": "callgrind"}
        )
        count: dict[str, float] = {}
        for label in candidates:
            if not args.json:
                print(f"  callgrind: {label}", file=sys.stderr, flush=True)
            counted = instructions(label, jobs, args.baseline, group)
            count[label] = report.add(label, "SQLite", "instructions/job", [counted])
        _compare(report, count, baseline, "instructions/job")
        report.note(
            "instructions executed inside sqlite3_step (SQLite's own work, its system calls'"
            " kernel side not counted), by valgrind --tool=callgrind --toggle-collect=sqlite3_step"
            " in a child process per candidate: they repeat exactly from run to run"
        )
        harness.emit(report, as_json=args.json)
        return
    work = {owned: batches(jobs, owned=owned, group=group) for owned in (True, False)}
    small = {owned: batches(group * 4, owned=owned, group=group) for owned in (True, False)}

    def candidate(setup: Setup, count: int) -> Callable[[], harness.Figures]:
        ops = (work if count == jobs else small)[setup.owned]
        return lambda: run_once(setup, ops, count, synchronous)

    samples = harness.interleave(
        {label: candidate(setup, jobs) for label, setup in candidates.items()},
        args.rounds,
        quiet=args.json,
        warmup={label: candidate(setup, group * 4) for label, setup in candidates.items()},
    )

    report = harness.Report(
        "store_writes",
        {
            "jobs": jobs,
            "group": group,
            "rounds": args.rounds,
            "synchronous": synchronous,
            "baseline": baseline,
        },
    )
    cpu: dict[str, float] = {}
    for label, figures in samples.items():
        cpu[label] = report.add(label, "CPU", "us/job", figures["cpu us/job"])
        report.add(label, "wall", "us/job", figures["wall us/job"])
        report.add(label, "file", "bytes/job", figures["bytes/job"])
        report.add(label, "commit p50", "ms", figures["commit p50 ms"])
        report.add(label, "commit p99", "ms", figures["commit p99 ms"])
        report.add(label, "slowest 5% of commits", "% of time", figures["slowest 5% share %"])
    report.note(
        f"each batch: {group} puts, the running transitions of the {group} jobs before, the"
        f" outcomes of the {group} before those ({3 * group} events), applied by"
        f" sqlite_ops.apply_batch on one connection, synchronous={synchronous}, WAL; ops encoded"
        " beforehand (callers encode them); every file holds every job finished and 3 events each"
    )
    _compare(report, cpu, baseline, "us/job of CPU")
    report.note(
        "CPU = process time (user + system) of this thread, fsyncs' waits excluded; wall includes"
        " them; two shared cores, load from other work varies: read the ratio"
    )
    harness.emit(report, as_json=args.json)


def _compare(report: harness.Report, cost: dict[str, float], baseline: str, unit: str) -> None:
    """The notes comparing the newest schema's cost per job with the older one's and the floor's."""
    report.note(
        f"{NEWEST} costs {cost[NEWEST] / cost[baseline]:.2f}x {baseline}'s"
        f" ({harness.fmt(cost[NEWEST])} vs {harness.fmt(cost[baseline])} {unit}); the tables"
        f" alone (jobs_id and the idempotency index kept) {harness.fmt(cost[FLOOR])}, so the"
        f" other indexes cost {harness.fmt(cost[NEWEST] - cost[FLOOR])} in {NEWEST} and"
        f" {harness.fmt(cost[baseline] - cost[FLOOR])} in {baseline}"
    )
    newest, older = cost[NEWEST + OWNERLESS], cost[baseline + OWNERLESS]
    report.note(
        f"no owners (an open server's jobs; {NEWEST}'s owner indexes are partial and hold none):"
        f" {NEWEST} costs {newest / older:.2f}x {baseline}'s ({harness.fmt(newest)} vs"
        f" {harness.fmt(older)} {unit})"
    )


if __name__ == "__main__":
    main()
