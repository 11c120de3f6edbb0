"""Store retention: what purging a big SQLite file in batches costs the writers meanwhile.

The file is built once per run by ``store_fill``: N finished ``builtin.echo`` jobs (three events
each). Each round works on a fresh copy: one task purges half of them the way the retention sweep
does (``store.purge(keep_finished=N/2, limit=batch)`` until a batch comes back short), while
another submits new jobs one at a time (``store.put`` of a queued record and its event, each
waiting for its commit) and records each put's latency. Reference, in the same run: the same
puts on a copy with nothing purging. Both print the p50 and p99 put latency; the purge side also
prints how long each batch call took.

    .venv/bin/python -m benchmarks.store_retention [--jobs 200000] [--batch 50] [--rounds 3]
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import anyio

from benchmarks import harness, store_fill
from jobwarden import JobRecord, JobState
from jobwarden.actors.event_bus import EventBus
from jobwarden.actors.retention import Retention
from jobwarden.ids import new_job_id
from jobwarden.store.base import JobQuery
from jobwarden.store.sqlite import SqliteStore

DESCRIPTION = "Put latency on a SQLite store while retention purges it, beside no purge at all."
MIN_PUTS = 500


async def _put_until(
    store: SqliteStore, bus: EventBus, done: anyio.Event, least: int = MIN_PUTS
) -> list[float]:
    """Put queued jobs one at a time until ``done`` is set and ``least`` were put."""
    latencies: list[float] = []
    while not done.is_set() or len(latencies) < least:
        record = JobRecord(
            id=new_job_id(),
            tool=store_fill.TOOL,
            plugin=store_fill.PLUGIN,
            state=JobState.QUEUED,
            input={"text": "during retention"},
            created_at=datetime.now(UTC),
        )
        event = bus.event(record, "queued", at=record.created_at)
        began = time.perf_counter()
        await store.put(record, event)
        latencies.append(time.perf_counter() - began)
    return latencies


async def purging(path: Path, jobs: int, batch: int) -> harness.Figures:
    """Purge half the finished jobs in batches while another task keeps putting new ones."""
    store = SqliteStore(path)
    await store.open()
    bus = EventBus(store, source=store_fill.SOURCE)
    await bus.start()
    done = anyio.Event()
    batches: list[float] = []
    puts: list[float] = []
    removed = 0

    async def writer() -> None:
        puts.extend(await _put_until(store, bus, done))

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer)
            began = time.perf_counter()
            while True:
                started = time.perf_counter()
                count = await store.purge(
                    finished_before=None, keep_finished=jobs // 2, limit=batch
                )
                batches.append(time.perf_counter() - started)
                removed += count
                if count < batch:
                    break
            purge_s = time.perf_counter() - began
            done.set()
        left = len((await store.list_jobs(JobQuery(state=JobState.QUEUED, limit=1))).jobs)
    finally:
        await store.close()
    if removed != jobs - jobs // 2 or left != 1:
        raise RuntimeError(f"purged {removed} of {jobs}; expected {jobs - jobs // 2}")
    return _latencies(puts) | {
        "purge s": purge_s,
        "batch p50 ms": harness.percentile(batches, 0.5) * 1e3,
        "batch p99 ms": harness.percentile(batches, 0.99) * 1e3,
        "puts": float(len(puts)),
    }


async def idle(path: Path, puts: int) -> harness.Figures:
    """The same puts on a copy with nothing purging."""
    store = SqliteStore(path)
    await store.open()
    bus = EventBus(store, source=store_fill.SOURCE)
    await bus.start()
    done = anyio.Event()
    done.set()
    try:
        latencies = await _put_until(store, bus, done, puts)
    finally:
        await store.close()
    return _latencies(latencies)


def _latencies(samples: list[float]) -> harness.Figures:
    return {
        "put p50 ms": harness.percentile(samples, 0.5) * 1e3,
        "put p99 ms": harness.percentile(samples, 0.99) * 1e3,
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Build the file, measure, print the table."""
    p = harness.parser(DESCRIPTION, rounds=3)
    p.add_argument("--jobs", type=int, default=200_000, help="finished jobs in the file (200000)")
    p.add_argument(
        "--batch",
        type=int,
        default=Retention().batch,
        help=f"jobs per purge call (the retention default, {Retention().batch})",
    )
    args = harness.parse(p, argv)
    if args.jobs < 2 or args.batch < 1:
        p.error("--jobs must be >= 2 and --batch >= 1")
    jobs: int = args.jobs
    batch: int = args.batch
    backend: str = args.backend
    uvloop: bool = args.uvloop

    with tempfile.TemporaryDirectory(prefix="jobwarden-bench-") as folder:
        original = Path(folder) / "finished.db"
        if not args.json:
            print(f"  building {jobs:,} finished jobs in {original}", file=sys.stderr)
        harness.run(store_fill.create, original, backend=backend, uvloop=uvloop)
        harness.run(
            store_fill.write,
            original,
            store_fill.finished_jobs(jobs),
            backend=backend,
            uvloop=uvloop,
        )
        puts_seen: list[float] = []

        def purge_round() -> harness.Figures:
            figures = harness.run(
                purging,
                store_fill.fresh_copy(original),
                jobs,
                batch,
                backend=backend,
                uvloop=uvloop,
            )
            puts_seen.append(figures["puts"])
            return figures

        def idle_round() -> harness.Figures:
            count = int(puts_seen[-1]) if puts_seen else MIN_PUTS
            return harness.run(
                idle, store_fill.fresh_copy(original), count, backend=backend, uvloop=uvloop
            )

        candidates: dict[str, Callable[[], harness.Figures]] = {
            "puts while purging": purge_round,
            "puts alone": idle_round,
        }
        samples = harness.interleave(candidates, args.rounds, quiet=args.json)

    report = harness.Report(
        "store_retention",
        {"jobs": jobs, "batch": batch, "rounds": args.rounds, "backend": backend},
    )
    during = report.add(
        "puts while purging", "put p99", "ms", samples["puts while purging"]["put p99 ms"]
    )
    report.add("puts while purging", "put p50", "ms", samples["puts while purging"]["put p50 ms"])
    report.add(
        "puts while purging", "purge batch p50", "ms", samples["puts while purging"]["batch p50 ms"]
    )
    worst = report.add(
        "puts while purging", "purge batch p99", "ms", samples["puts while purging"]["batch p99 ms"]
    )
    report.add("puts while purging", "purge of half", "s", samples["puts while purging"]["purge s"])
    alone = report.add("puts alone", "put p99", "ms", samples["puts alone"]["put p99 ms"])
    report.add("puts alone", "put p50", "ms", samples["puts alone"]["put p50 ms"])
    report.note(
        f"file: {jobs:,} finished echo jobs built by store_fill; each round purges"
        f" {jobs - jobs // 2:,} of them in calls of {batch} (keep_finished={jobs // 2:,}) on a"
        " fresh copy, while one task puts new jobs one at a time, each waiting for its commit"
        " (synchronous=full)"
    )
    report.note(
        f"a put's p99 while purging is {during / alone:.2f}x its p99 with nothing purging"
        f" ({harness.fmt(during)} vs {harness.fmt(alone)} ms); a purge call's p99 is"
        f" {harness.fmt(worst)} ms (one write transaction: the store keeps its count of finished"
        " jobs in memory); two shared cores, load from other work varies"
    )
    harness.emit(report, as_json=args.json)


if __name__ == "__main__":
    main()
