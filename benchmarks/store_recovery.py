"""Store recovery: a Supervisor restarting on a SQLite file that holds 100k queued jobs.

The file is built once per run by ``store_fill`` (the store's own ``Put`` ops and
``apply_batch``): N ``builtin.echo`` jobs, each queued with its queued event, as a server that
died with a full queue leaves them. Each round copies it, then times
``async with Supervisor(store=SqliteStore(copy), plugins=[builtin])`` until it is accepting
(``sup.recovered.requeued`` must be N), and then until every recovered job has run and its two
events (running, succeeded) reached a subscriber; the closed file must then hold N succeeded
jobs. Reference, the floor of reading the jobs back: opening a ``SqliteStore`` on a copy and
calling ``store.unfinished()``.

    .venv/bin/python -m benchmarks.store_recovery [--jobs 100000] [--rounds 5]
        [--backend trio] [--uvloop]
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio
from anyio.abc import TaskStatus

from benchmarks import harness, store_fill
from jobwarden import JobState, Supervisor, builtin
from jobwarden.actors.recovery import Recovered
from jobwarden.store.sqlite import SqliteStore

DESCRIPTION = "Seconds until a Supervisor restarted on N queued jobs (SQLite) is accepting."
TARGET_S = 5.0


async def _count_events(
    sup: Supervisor, since: int, expected: int, seen: list[int], *, task_status: TaskStatus[None]
) -> None:
    async with sup.subscribe(since=since) as events:
        task_status.started()
        async for _ in events:
            seen[0] += 1
            if seen[0] == expected:
                return


async def restart(path: Path, jobs: int) -> harness.Figures:
    """Seconds until accepting, and until every recovered job ran; every outcome checked."""
    seen = [0]
    began = time.perf_counter()
    async with Supervisor(
        store=SqliteStore(path), plugins=[builtin], subscriber_buffer=2 * jobs
    ) as sup:
        accepting = time.perf_counter() - began
        if sup.recovered != Recovered(requeued=jobs) or not sup.statistics().accepting:
            raise RuntimeError(f"expected {jobs} jobs requeued: {sup.recovered}")
        # The file's events are the N queued ones: everything after offset N is new.
        async with anyio.create_task_group() as tg:
            await tg.start(_count_events, sup, jobs, 2 * jobs, seen)
        ran = time.perf_counter() - began
        stats = sup.statistics()
    metrics = sup.registry.metrics(store_fill.TOOL)
    if (metrics.successes, stats.queued, stats.running) != (jobs, 0, 0):
        raise RuntimeError(f"not every recovered job succeeded: {metrics}, {stats}")
    return {"accepting s": accepting, "all ran s": ran}


async def read_back(path: Path, jobs: int) -> harness.Figures:
    """Seconds to open the store on the file and read its unfinished jobs."""
    began = time.perf_counter()
    store = SqliteStore(path)
    await store.open()
    try:
        found = await store.unfinished()
        elapsed = time.perf_counter() - began
    finally:
        await store.close()
    if len(found) != jobs or any(record.state is not JobState.QUEUED for record in found):
        raise RuntimeError(f"{len(found)} unfinished jobs read back; expected {jobs} queued")
    return {"read s": elapsed}


def _check_file(path: Path, jobs: int) -> None:
    db = sqlite3.connect(path)
    try:
        states = dict(db.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())
    finally:
        db.close()
    if states != {"succeeded": jobs}:
        raise RuntimeError(f"{path}: jobs by state {states}; expected {jobs} succeeded")


def main(argv: Sequence[str] | None = None) -> None:
    """Build the file, measure, print the table and the verdict."""
    p = harness.parser(DESCRIPTION)
    p.add_argument("--jobs", type=int, default=100_000, help="queued jobs in the file (100000)")
    args = harness.parse(p, argv)
    if args.jobs < 1:
        p.error("--jobs must be >= 1")
    jobs: int = args.jobs
    backend: str = args.backend
    uvloop: bool = args.uvloop

    def build(path: Path, count: int) -> None:
        harness.run(store_fill.create, path, backend=backend, uvloop=uvloop)
        steps = ((step,) for step in store_fill.queued_jobs(count))
        harness.run(store_fill.write, path, steps, backend=backend, uvloop=uvloop)

    def restarted(source: Path, count: int) -> Callable[[], harness.Figures]:
        def measure() -> harness.Figures:
            path = store_fill.fresh_copy(source)
            figures = harness.run(restart, path, count, backend=backend, uvloop=uvloop)
            _check_file(path, count)
            return figures

        return measure

    def read(source: Path, count: int) -> Callable[[], harness.Figures]:
        return lambda: harness.run(
            read_back, store_fill.fresh_copy(source), count, backend=backend, uvloop=uvloop
        )

    with tempfile.TemporaryDirectory(prefix="jobwarden-bench-") as folder:
        original, small = Path(folder) / "queued.db", Path(folder) / "small.db"
        if not args.json:
            print(f"  building {jobs:,} queued jobs in {original}", file=sys.stderr)
        began = time.perf_counter()
        build(original, jobs)
        built = time.perf_counter() - began
        megabytes = original.stat().st_size / 1e6
        few = min(jobs, 1_000)
        build(small, few)
        candidates = {
            "Supervisor restart": restarted(original, jobs),
            "store.unfinished() alone": read(original, jobs),
        }
        warmup = {
            "Supervisor restart": restarted(small, few),
            "store.unfinished() alone": read(small, few),
        }
        samples = harness.interleave(candidates, args.rounds, quiet=args.json, warmup=warmup)

    loop = "uvloop" if uvloop else backend
    report = harness.Report(
        "store_recovery",
        {"jobs": jobs, "rounds": args.rounds, "backend": backend, "loop": loop},
    )
    restart_s = report.add(
        "Supervisor restart", "until accepting", "s", samples["Supervisor restart"]["accepting s"]
    )
    report.add(
        "Supervisor restart", "until all ran", "s", samples["Supervisor restart"]["all ran s"]
    )
    floor_s = report.add(
        "store.unfinished() alone",
        "open + read back",
        "s",
        samples["store.unfinished() alone"]["read s"],
    )
    report.note(
        f"the file: {jobs:,} queued echo jobs and their queued events, {megabytes:,.0f} MB,"
        f" built with the store's own Put ops in {built:.1f} s (store_fill.py); each round"
        " restarts on a fresh copy of it"
    )
    report.note(
        "until accepting: from creating the Supervisor to the end of `async with ...` entry"
        " (store open, schema check, reading and decoding the unfinished jobs, validating each"
        " input, an actor per job, 64 runners started); until all ran (not a target): every"
        " recovered job succeeded and its running and succeeded events reached a subscriber"
    )
    report.note(
        f"the restart takes {restart_s / floor_s:.2f}x the floor of reading the jobs back"
        f" ({harness.fmt(floor_s)} s); two shared cores, load from other work varied during"
        " the run"
    )
    report.check(
        f"restart recovery of {jobs:,} queued jobs",
        f"accepting after {harness.fmt(restart_s)} s, sup.recovered.requeued = {jobs:,}",
        restart_s,
        "<=",
        TARGET_S,
        " s",
    )
    harness.emit(report, as_json=args.json)


if __name__ == "__main__":
    main()
